"""Labelled text for many-to-one (classification) and many-to-many (tagging) models.

Each split is one file ``{data_dir}/{split}.tsv`` (or ``.tsv.gz``), UTF-8, one example a line:

- :class:`ClassificationData`: ``label<TAB>text``;
- :class:`TaggingData`: ``tags<TAB>tokens``: whitespace-separated tags and tokens, one tag per
  token (``DET NOUN VERB<TAB>the dog runs``).

Texts are cut into the shared SentencePiece subwords. A tagged token's tag belongs to its first
subword and the others are ignored (:data:`IGNORE`), as BERT does for named entities (Devlin et al.,
2019). Blank lines are skipped; a line without a tab, a tag count that differs from the token count
and, outside training, a label unseen in training are errors naming the file and line. The label set
is the sorted labels of the training split.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from s2s.data.batching import (
    LoadersBySplit,
    ResumableDataLoader,
    TokenBatchSampler,
    pad,
    replicas,
    token_loader,
)
from s2s.io import DataError, plain_or_gz, read_lines
from s2s.tokenizer import EOS_ID, IGNORE, UNK_ID, Tokenizer, TokenizerConfig

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One line of a split file."""

    where: str  # "file:line", for errors
    labels: list[str]  # one label, or one tag per token
    text: str


@dataclass
class LabelledExample:
    index: int  # position in the split file's non-blank lines
    src: list[int]  # subword ids, without EOS
    labels: list[int]  # [label id] (classification), or one id per subword (tagging)


@dataclass
class LabelledBatch:
    """A padded batch; Lightning moves its tensors to the device."""

    src: Tensor  # (B, S) ids then EOS, PAD-padded
    src_lengths: Tensor  # (B,) lengths including EOS
    labels: Tensor  # (B,) class ids, or (B, S) tag ids with IGNORE where no tag applies
    indices: Tensor  # (B,) example indices


class LabelledDataset(Dataset[LabelledExample]):
    def __init__(self, examples: Sequence[LabelledExample]) -> None:
        self.examples = list(examples)

    @property
    def lengths(self) -> list[int]:
        return [len(ex.src) + 1 for ex in self.examples]

    def __getitem__(self, i: int) -> LabelledExample:
        return self.examples[i]

    def __len__(self) -> int:
        return len(self.examples)


def collate_classes(examples: Sequence[LabelledExample]) -> LabelledBatch:
    """One label per example: ``labels`` (B,)."""
    src = [[*ex.src, EOS_ID] for ex in examples]
    return LabelledBatch(
        src=pad(src),
        src_lengths=torch.tensor([len(s) for s in src]),
        labels=torch.tensor([ex.labels[0] for ex in examples]),
        indices=torch.tensor([ex.index for ex in examples]),
    )


def collate_tags(examples: Sequence[LabelledExample]) -> LabelledBatch:
    """One label per subword: ``labels`` (B, S), IGNORE at EOS and padding."""
    batch = collate_classes([LabelledExample(ex.index, ex.src, [0]) for ex in examples])
    batch.labels = pad([[*ex.labels, IGNORE] for ex in examples], IGNORE)
    return batch


def read_rows(path: Path, split_labels: bool) -> list[Row]:
    """The non-blank lines of ``path`` as rows; ``split_labels``: the label field is a tag list."""
    rows = []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        field, tab, text = line.partition("\t")
        labels = field.split() if split_labels else [field.strip()]
        if not tab or not all(labels):
            form = "tags<TAB>tokens" if split_labels else "label<TAB>text"
            raise DataError(f"{where}: expected '{form}'")
        rows.append(Row(where, labels, text))
    return rows


class WeightedTokenBatchSampler(Sampler[list[int]]):
    """Token-budget batches of examples drawn with replacement, in proportion to ``weights``.

    Each epoch draws ``len(weights)`` examples (seeded by ``seed`` and the epoch, the same on every
    rank) and batches them with a shuffling :class:`TokenBatchSampler`, which also shares them
    among ranks. With weights ``1 / count(label)`` every class is drawn equally often.
    """

    def __init__(
        self,
        weights: Sequence[float],
        lengths: Sequence[int],
        max_tokens: int,
        *,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0
        self.start = 0  # batches of the epoch to skip once (ResumableDataLoader sets it)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> WeightedTokenBatchSampler:
        """Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler``."""
        return self

    def _draw(self) -> tuple[list[int], TokenBatchSampler]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.weights)
        drawn = torch.multinomial(self.weights, n, replacement=True, generator=generator).tolist()
        batches = TokenBatchSampler(
            [self.lengths[i] for i in drawn],
            self.max_tokens,
            shuffle=True,
            seed=self.seed,
            num_replicas=self.num_replicas,
            rank=self.rank,
        )
        batches.set_epoch(self.epoch)
        return drawn, batches

    def __iter__(self) -> Iterator[list[int]]:
        drawn, batches = self._draw()
        batches.start, self.start = self.start, 0
        for batch in batches:
            yield [drawn[i] for i in batch]

    def __len__(self) -> int:
        return len(self._draw()[1])


class LabelledData(LoadersBySplit, L.LightningDataModule):
    """What classification and tagging data share: splits, tokenizer, label set, batches.

    Subclasses say whether the label field is one label or a tag list (``tags_per_token``).

    Args:
        data_dir: Folder with one file per split.
        train_split: Split to train on (and to train the tokenizer and take the labels from).
        val_split: Split for validation.
        test_split: Split for ``s2s test``.
        tokenizer: How the tokenizer is trained.
        max_len: Training texts with more subwords are dropped (with a warning).
        max_tokens: Token budget of a training batch, padding included.
        eval_max_tokens: Token budget of a validation or test batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the training batch order (combined with the epoch).
    """

    tags_per_token: bool

    def __init__(
        self,
        data_dir: str,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        tokenizer: TokenizerConfig = TokenizerConfig(),
        max_len: int = 200,
        max_tokens: int = 4096,
        eval_max_tokens: int = 8192,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.tokenizer_config = tokenizer
        self.max_len = max_len
        self.max_tokens, self.eval_max_tokens = max_tokens, eval_max_tokens
        self.num_workers = num_workers
        self.seed = seed
        self.datasets: dict[str, LabelledDataset] = {}

    def _rows(self, split: str) -> list[Row]:
        path = plain_or_gz(self.data_dir / f"{self.splits[split]}.tsv", f"split {split!r}")
        return read_rows(path, self.tags_per_token)

    @cached_property
    def _train_rows(self) -> list[Row]:
        return self._rows("train")

    @cached_property
    def labels(self) -> list[str]:
        """The sorted labels of the training split (linked into the model in recipes)."""
        return sorted({label for row in self._train_rows for label in row.labels})

    @property
    def label_counts(self) -> Tensor:
        """(K,) how often each label occurs in the training split."""
        counts = Counter(label for row in self._train_rows for label in row.labels)
        return torch.tensor([counts[label] for label in self.labels])

    @cached_property
    def src_tokenizer(self) -> Tokenizer:
        """Trained on the training texts on first use, or loaded from the cache."""
        return Tokenizer.train_on_lines(
            (row.text for row in self._train_rows), self.tokenizer_config
        )

    @property
    def src_vocab_size(self) -> int:
        return self.src_tokenizer.vocab_size

    @cached_property
    def _label_ids(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def _example(self, index: int, row: Row) -> LabelledExample:
        ids = self._label_ids
        unknown = [label for label in row.labels if label not in ids]
        if unknown:
            raise DataError(f"{row.where}: label {unknown[0]!r} does not occur in training")
        if not self.tags_per_token:
            return LabelledExample(index, self.src_tokenizer.encode(row.text), [ids[row.labels[0]]])
        tokens = row.text.split()
        if len(tokens) != len(row.labels):
            raise DataError(f"{row.where}: {len(row.labels)} tags for {len(tokens)} tokens")
        src: list[int] = []
        tags: list[int] = []
        for token, tag in zip(tokens, row.labels, strict=True):
            pieces = self.src_tokenizer.encode(token) or [UNK_ID]
            src += pieces
            tags += [ids[tag]] + [IGNORE] * (len(pieces) - 1)
        return LabelledExample(index, src, tags)

    def setup(self, stage: str) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(stage)
        if splits is None:
            raise ValueError(f"{type(self).__name__} has no {stage!r} stage")
        for split in splits:
            rows = self._train_rows if split == "train" else self._rows(split)
            examples = [self._example(i, row) for i, row in enumerate(rows)]
            if split == "train":
                kept = [ex for ex in examples if len(ex.src) <= self.max_len]
                if len(kept) < len(examples):
                    log.warning(
                        "%s: dropped %d of %d examples longer than max_len=%d subwords",
                        self.splits[split],
                        len(examples) - len(kept),
                        len(examples),
                        self.max_len,
                    )
                examples = kept
            self.datasets[split] = LabelledDataset(examples)

    def collate(self, examples: Sequence[LabelledExample]) -> LabelledBatch:
        return (collate_tags if self.tags_per_token else collate_classes)(examples)

    def _loader(self, split: str) -> DataLoader:
        shuffle = split == "train"
        dataset = self.datasets[split]
        return token_loader(
            self,
            dataset,
            dataset.lengths,
            self.max_tokens if shuffle else self.eval_max_tokens,
            shuffle=shuffle,
            seed=self.seed,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )


class ClassificationData(LabelledData):
    """``{data_dir}/{split}.tsv`` files of ``label<TAB>text`` lines, for a sequence classifier.

    Args:
        data_dir, train_split, ...: As :class:`LabelledData`'s.
        weighted_sampling: Draw training examples with replacement, each class equally often, for
            imbalanced labels (epochs keep their number of examples).
    """

    tags_per_token = False

    def __init__(self, data_dir: str, weighted_sampling: bool = False, **kwargs: Any) -> None:
        super().__init__(data_dir, **kwargs)
        self.weighted_sampling = weighted_sampling

    def train_dataloader(self) -> DataLoader:
        if not self.weighted_sampling:
            return super().train_dataloader()
        num_replicas, rank = replicas(self.trainer, type(self).__name__)
        dataset = self.datasets["train"]
        counts = Counter(ex.labels[0] for ex in dataset.examples)
        sampler = WeightedTokenBatchSampler(
            [1 / counts[ex.labels[0]] for ex in dataset.examples],
            dataset.lengths,
            self.max_tokens,
            seed=self.seed,
            num_replicas=num_replicas,
            rank=rank,
        )
        return ResumableDataLoader(
            dataset, batch_sampler=sampler, collate_fn=self.collate, num_workers=self.num_workers
        )


class TaggingData(LabelledData):
    """``{data_dir}/{split}.tsv`` files of ``tags<TAB>tokens`` lines, for a sequence tagger
    (arguments: :class:`LabelledData`'s)."""

    tags_per_token = True
