"""Token-budget batching: batches of similar-length examples, shared equally among DDP ranks, and
the DataLoader over them that resumes in the middle of an epoch.

Batches hold as many examples as fit a token budget (counting padding) rather than a fixed number,
as in fairseq's ``max_tokens``; sorting by length first keeps padding small.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from s2s.tokenizer import PAD_ID


def pad(seqs: Sequence[Sequence[int]], value: int = PAD_ID) -> Tensor:
    """(B, longest) ids of ``seqs``, filled with ``value`` after each one's end."""
    tensors = [torch.tensor(seq, dtype=torch.long) for seq in seqs]
    return pad_sequence(tensors, batch_first=True, padding_value=value)


class TokenBatchSampler(Sampler[list[int]]):
    """Batches of example indices whose padded cost ``len(batch) * max(lengths)`` is at most
    ``max_tokens``; an example longer than ``max_tokens`` forms a batch of its own.

    With ``shuffle`` (training), examples are sorted by length with ties broken at random, cut into
    batches and the batch order is shuffled, all seeded by ``(seed, epoch)``; without it
    (evaluation), batches come in length order, the same every time. Every rank computes the same
    global batches and takes every ``num_replicas``-th; the largest batches are split in two until
    their number divides ``num_replicas``, so all ranks get the same number of batches and every
    example is seen exactly once.

    The batch boundaries depend only on the sorted lengths, so they (and ``len``) are fixed at
    construction; an epoch only changes which of equally long examples fill them and their order.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start = 0  # batches of the epoch the next iteration skips (resuming mid-epoch)
        self._slices = self._split_for_replicas(self._cut(sorted(self.lengths)))

    def _cut(self, sorted_lengths: list[int]) -> list[tuple[int, int]]:
        """Greedy ``[start, end)`` ranges of the ascending lengths under the token budget."""
        slices: list[tuple[int, int]] = []
        start = 0
        for end, length in enumerate(sorted_lengths):
            # Ascending order: the new example is the longest, so it sets the padded width.
            if end > start and (end - start + 1) * length > self.max_tokens:
                slices.append((start, end))
                start = end
        if sorted_lengths:
            slices.append((start, len(sorted_lengths)))
        return slices

    def _split_for_replicas(self, slices: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Split the largest batches in two until their number is a multiple of ``num_replicas``."""
        n = len(self.lengths)
        if 0 < n < self.num_replicas:
            raise ValueError(
                f"{n} examples are fewer than the {self.num_replicas} replicas: "
                "every replica needs at least one example"
            )
        while len(slices) % self.num_replicas:
            i = max(range(len(slices)), key=lambda j: slices[j][1] - slices[j][0])
            start, end = slices[i]
            if end - start < 2:
                raise ValueError(
                    f"cannot share {n} examples equally among {self.num_replicas} replicas: each "
                    f"is alone in its batch under max_tokens={self.max_tokens}, and "
                    f"{len(slices)} batches do not divide evenly; increase max_tokens"
                )
            mid = (start + end) // 2
            slices[i : i + 1] = [(start, mid), (mid, end)]
        return slices

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffled order of ``epoch`` (no effect without ``shuffle``)."""
        self.epoch = epoch

    @property
    def sampler(self) -> TokenBatchSampler:
        """Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``, never on the
        batch sampler itself (``lightning.fabric.utilities.data._set_sampler_epoch``)."""
        return self

    def _global_batches(self) -> list[list[int]]:
        """All ranks' batches, identical on every rank."""
        order = list(range(len(self.lengths)))
        if not self.shuffle:
            order.sort(key=self.lengths.__getitem__)
            return [order[start:end] for start, end in self._slices]
        # A string seed is hashed with SHA-512: the same on every rank and in every process.
        rng = random.Random(f"{self.seed}:{self.epoch}")
        rng.shuffle(order)
        order.sort(key=self.lengths.__getitem__)  # stable: equal lengths stay in random order
        batches = [order[start:end] for start, end in self._slices]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        # A generator, so the epoch is read at the first batch: when Lightning resumes a run, it
        # creates the DataLoader's iterator before it calls ``set_epoch``.
        batches = self._global_batches()[self.rank :: self.num_replicas]
        start, self.start = self.start, 0
        yield from batches[start:]

    def __len__(self) -> int:
        return len(self._slices) // self.num_replicas


class EpochBatches(Protocol):
    """What :class:`ResumableDataLoader` needs of its batch sampler (:class:`TokenBatchSampler` or
    one that draws its batches through it)."""

    epoch: int  # the epoch Lightning last set
    start: int  # batches the next iteration skips, once

    def __iter__(self) -> Iterator[list[int]]: ...


class ResumableDataLoader(DataLoader):
    """A DataLoader over token-budget batches that resumes in the middle of an epoch.

    Lightning stores the ``state_dict()`` of a training loader that has one in checkpoints, and on
    resume passes it to ``load_state_dict`` before the restarted epoch. The state is the epoch and
    how many of its batches this loader has yielded, so the restarted epoch goes on with the
    batches not yet trained on; a plain DataLoader would start the epoch again from its first
    batch (Lightning counts the batches done, not which ones).

    Starting an epoch draws nothing from torch's global generator, which dropout uses: a plain
    DataLoader draws its workers' base seed there, once more in a resumed run than in the
    uninterrupted one. Here the base seed comes from the global seed and the epoch.
    """

    batch_sampler: EpochBatches

    def __init__(self, dataset: Dataset, batch_sampler: EpochBatches, **kwargs: Any) -> None:
        super().__init__(
            dataset, batch_sampler=batch_sampler, generator=torch.Generator(), **kwargs
        )
        self._position = (batch_sampler.epoch, 0)  # (epoch, batches of it yielded)
        self._resume_at: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self._position
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (state["epoch"], state["batches"])

    def __iter__(self) -> Iterator[Any]:
        # A generator: this runs at the first batch, after Lightning's ``set_epoch``.
        epoch = self.batch_sampler.epoch
        start = self._resume_at[1] if self._resume_at and self._resume_at[0] == epoch else 0
        self._resume_at = None
        self.batch_sampler.start = start
        self._position = (epoch, start)
        self.generator.manual_seed(torch.initial_seed() + epoch)
        for n, batch in enumerate(super().__iter__(), start=start + 1):
            self._position = (epoch, n)
            yield batch


def token_loader(
    datamodule: Any,
    dataset: Dataset,
    lengths: Sequence[int],
    max_tokens: int,
    *,
    shuffle: bool,
    seed: int,
    collate_fn: Callable[[list[Any]], Any],
    num_workers: int,
) -> DataLoader:
    """A DataLoader over token-budget batches of ``dataset`` (example costs ``lengths``), this
    rank's share under ``datamodule``'s trainer. Shuffled (training) batches resume mid-epoch, as
    Lightning asks of a training loader; evaluation always runs whole."""
    num_replicas, rank = replicas(datamodule.trainer, type(datamodule).__name__)
    sampler = TokenBatchSampler(
        lengths, max_tokens, shuffle=shuffle, seed=seed, num_replicas=num_replicas, rank=rank
    )
    loader = ResumableDataLoader if shuffle else DataLoader
    return loader(dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers)


def replicas(trainer: Any, owner: str) -> tuple[int, int]:
    """``(num_replicas, rank)`` for a data module that shards its batches itself; ``(1, 0)``
    without a trainer. Lightning's distributed sampler would shard them a second time, so with
    several devices it must be off; ``owner`` names the data module in that error."""
    if trainer is None:
        return 1, 0
    if trainer.world_size > 1 and trainer._accelerator_connector.use_distributed_sampler:
        raise ValueError(
            f"{owner} shards its batches across devices itself, which Lightning's distributed "
            "sampler cannot do: set `trainer.use_distributed_sampler: false` in the config "
            "(Trainer(use_distributed_sampler=False) in Python)"
        )
    return trainer.world_size, trainer.global_rank


class LoadersBySplit:
    """Lightning's loader hooks for a data module whose ``_loader(split)`` builds the loader of
    any split ("train", "val", "test")."""

    def _loader(self, split: str) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
