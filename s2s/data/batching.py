"""Token-budget batching: batches of similar-length examples, shared equally among DDP ranks.

Batches hold as many examples as fit a token budget (counting padding) rather than a fixed number,
as in fairseq's ``max_tokens``; sorting by length first keeps padding small.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


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
        return iter(self._global_batches()[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(self._slices) // self.num_replicas
