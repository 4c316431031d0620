"""Parallel text for translation: subword-encoded examples, padded batches and the datamodule."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from s2s.checkpoint import read_checkpoint
from s2s.data.batching import TokenBatchSampler, pad, token_loader
from s2s.io import DataError, plain_or_gz, read_lines, read_parallel
from s2s.tokenizer import BOS_ID, EOS_ID, Tokenizer, TokenizerConfig, seed_sampling

log = logging.getLogger(__name__)
T = TypeVar("T")

# Translating raw lines (s2s-translate, s2s serve): tokens per batch, and where sources are cut.
LINES_MAX_TOKENS = 8000
LINES_MAX_LEN = 250


@dataclass
class TranslationBatch:
    """A padded batch; Lightning moves its tensors to the device."""

    src: Tensor  # (B, S) source ids then EOS, PAD-padded
    src_lengths: Tensor  # (B,) source lengths including EOS
    tgt: Tensor | None  # (B, T) BOS, target ids, EOS, PAD-padded; None without targets
    indices: Tensor  # (B,) line number (from 0) of each example in its file
    refs: list[str]  # B raw target lines; [] without targets


@dataclass
class Example:
    """One encoded sentence pair (``tgt`` and ``ref`` are None without targets)."""

    index: int  # line number (from 0) in the split file
    src: list[int]  # source ids without EOS
    tgt: list[int] | None = None  # target ids without BOS/EOS
    ref: str | None = None  # raw target line

    @property
    def cost(self) -> int:
        """Padded width this example needs in a batch: target with BOS and EOS, source with EOS."""
        return max(len(self.src) + 1, 0 if self.tgt is None else len(self.tgt) + 2)


class TranslationDataset(Dataset[Example]):
    """A list of examples, with the per-example costs that token batching needs."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    @property
    def lengths(self) -> list[int]:
        return [ex.cost for ex in self.examples]

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def __len__(self) -> int:
        return len(self.examples)


def collate(examples: Sequence[Example]) -> TranslationBatch:
    """Pad ``examples`` into a batch: EOS after each source, BOS and EOS around each target."""
    src = [[*ex.src, EOS_ID] for ex in examples]
    has_tgt = examples[0].tgt is not None
    return TranslationBatch(
        src=pad(src),
        src_lengths=torch.tensor([len(s) for s in src], dtype=torch.long),
        tgt=pad([[BOS_ID, *ex.tgt, EOS_ID] for ex in examples]) if has_tgt else None,
        indices=torch.tensor([ex.index for ex in examples], dtype=torch.long),
        refs=[ex.ref for ex in examples] if has_tgt else [],
    )


def encode_sources(
    lines: Sequence[str], tokenizer: Tokenizer, *, max_len: int, name: str
) -> list[list[int]]:
    """Ids of each source line, cut to ``max_len`` tokens (with a warning naming ``name``)."""
    ids = [tokenizer.encode(line) for line in lines]
    if too_long := sum(len(x) > max_len for x in ids):
        log.warning("%s: truncated %d source lines to max_len=%d tokens", name, too_long, max_len)
    return [x[:max_len] for x in ids]


def make_batches(
    src_lines: Sequence[str], src_tokenizer: Tokenizer, *, max_tokens: int, max_len: int
) -> list[TranslationBatch]:
    """Length-sorted batches of raw source lines, to translate without a datamodule.

    ``batch.indices`` are positions in ``src_lines``; empty lines are kept and over-long ones cut.
    """
    srcs = encode_sources(src_lines, src_tokenizer, max_len=max_len, name="input")
    dataset = TranslationDataset([Example(i, src) for i, src in enumerate(srcs)])
    sampler = TokenBatchSampler(dataset.lengths, max_tokens, shuffle=False)
    return [collate([dataset[i] for i in batch]) for batch in sampler]


def in_input_order(
    lines: Sequence[str],
    src_tokenizer: Tokenizer,
    process: Callable[[TranslationBatch], list[T]],
    *,
    max_tokens: int,
    max_len: int,
    device: torch.device | str = "cpu",
) -> Iterator[list[tuple[int, T]]]:
    """After each batch of :func:`make_batches`, the lines newly processed in input order: (index
    in ``lines``, result of ``process(batch)`` for it). Batches are sorted by length, so the
    processed prefix of ``lines`` grows batch by batch; a caller can write it out at once."""
    outputs: list[T | None] = [None] * len(lines)
    done = 0
    for batch in make_batches(lines, src_tokenizer, max_tokens=max_tokens, max_len=max_len):
        batch.src, batch.src_lengths = batch.src.to(device), batch.src_lengths.to(device)
        for i, result in zip(batch.indices.tolist(), process(batch), strict=True):
            outputs[i] = result
        first = done
        while done < len(lines) and outputs[done] is not None:
            done += 1
        yield [(i, outputs[i]) for i in range(first, done)]


class TranslationData(L.LightningDataModule):
    """Parallel text files ``{data_dir}/{split}.{lang}`` (or ``.gz``) with SentencePiece subwords.

    Args:
        data_dir: Folder with one file per split and language, e.g. ``train.de.gz``.
        src_lang: Source language suffix of the split files.
        tgt_lang: Target language suffix of the split files.
        train_split: Split to train on (and to train the tokenizers on).
        val_split: Split for validation.
        test_split: Split for ``s2s test``.
        predict_file: Source-only text file for ``s2s predict``; default: the test split's source.
        tokenizer: How each tokenizer is trained.
        joint_vocab: One tokenizer trained on both languages (shared vocabulary), or one per
            language.
        min_len: Training pairs with fewer subword tokens on either side are dropped.
        max_len: Training pairs with more subword tokens on either side are dropped; longer
            validation, test and predict sources are truncated.
        max_tokens: Token budget of a training batch, padding included.
        eval_max_tokens: Token budget of a validation, test or predict batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the training batch order (combined with the epoch).
        tokenizer_from: An s2s translation checkpoint whose tokenizers to use instead of training
            new ones (fine-tuning; ``s2s`` links it from ``model.init_from``).
        sampling_alpha: Subword regularisation (Kudo, 2018): above 0, every epoch trains on a
            segmentation of the training pairs sampled afresh (seeded by ``seed`` and the epoch),
            while validation, test and predict keep the best one. Needs
            ``trainer.reload_dataloaders_every_n_epochs: 1``.
        sampling_nbest_size: Segmentations a unigram tokenizer samples among (-1: all). 64 as in
            Kudo (2018): at alpha 0.1 on Multi30k de-en, all of them make 1002 batches an epoch
            of 1,024 tokens, 64 make 554, the best segmentation 505.
    """

    def __init__(
        self,
        data_dir: str = "data/multi30k",
        src_lang: str = "de",
        tgt_lang: str = "en",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test_2016_flickr",
        predict_file: str | None = None,
        tokenizer: TokenizerConfig = TokenizerConfig(),
        joint_vocab: bool = True,
        min_len: int = 1,
        max_len: int = 100,
        max_tokens: int = 4096,
        eval_max_tokens: int = 8192,
        num_workers: int = 0,
        seed: int = 0,
        tokenizer_from: str | None = None,
        sampling_alpha: float = 0.0,
        sampling_nbest_size: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # so a checkpoint records how to rebuild the tokenizers
        self.data_dir = Path(data_dir)
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.predict_file = predict_file
        self.tokenizer_config = tokenizer
        self.joint_vocab = joint_vocab
        self.min_len, self.max_len = min_len, max_len
        self.max_tokens, self.eval_max_tokens = max_tokens, eval_max_tokens
        self.num_workers = num_workers
        self.seed = seed
        self.tokenizer_from = tokenizer_from
        if sampling_alpha < 0:
            raise ValueError(f"sampling_alpha must be >= 0, got {sampling_alpha}")
        self.sampling_alpha, self.sampling_nbest_size = sampling_alpha, sampling_nbest_size
        self.datasets: dict[str, TranslationDataset] = {}  # "train", "val", "test", "predict"

    def _split_path(self, split: str, lang: str) -> Path:
        """The file of ``split`` in ``lang``: plain text, else gzipped."""
        return plain_or_gz(self.data_dir / f"{split}.{lang}", f"split {split!r}, language {lang!r}")

    @cached_property
    def _tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        if self.tokenizer_from:
            saved = read_checkpoint(self.tokenizer_from).get("tokenizers", {})
            if not {"src", "tgt"} <= saved.keys():
                raise ValueError(
                    f"{self.tokenizer_from}: has no source and target tokenizers (only "
                    f"{sorted(saved)}): not a translation checkpoint"
                )
            return Tokenizer(saved["src"]), Tokenizer(saved["tgt"])
        src, tgt = (
            self._split_path(self.train_split, lang) for lang in (self.src_lang, self.tgt_lang)
        )
        config = self.tokenizer_config
        if self.joint_vocab:
            joint = Tokenizer.train([src, tgt], config)
            return joint, joint
        return Tokenizer.train([src], config), Tokenizer.train([tgt], config)

    @property
    def src_tokenizer(self) -> Tokenizer:
        """Trained (or loaded from the cache) on first use; the target one when ``joint_vocab``."""
        return self._tokenizers[0]

    @property
    def tgt_tokenizer(self) -> Tokenizer:
        return self._tokenizers[1]

    @property
    def src_vocab_size(self) -> int:
        return self.src_tokenizer.vocab_size

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_tokenizer.vocab_size

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self.sampling_alpha:  # else sampled in train_dataloader
            self.datasets["train"] = self._train_set()
        if stage in ("fit", "validate"):
            self.datasets["val"] = self._eval_set(self.val_split)
        if stage == "test":
            self.datasets["test"] = self._eval_set(self.test_split)
        if stage == "predict":
            path = self.predict_file or self._split_path(self.test_split, self.src_lang)
            srcs = encode_sources(
                read_lines(path), self.src_tokenizer, max_len=self.max_len, name=str(path)
            )
            self.datasets["predict"] = TranslationDataset(
                [Example(i, src) for i, src in enumerate(srcs)]
            )

    def _read_split(self, split: str) -> tuple[list[str], list[str]]:
        return read_parallel(
            self._split_path(split, self.src_lang), self._split_path(split, self.tgt_lang)
        )

    def _train_set(self, epoch: int | None = None) -> TranslationDataset:
        """Training pairs with both sides within ``[min_len, max_len]`` subword tokens; with
        ``epoch``, in the segmentation sampled for it."""
        examples, too_short, too_long = [], 0, 0
        src_lines, tgt_lines = self._read_split(self.train_split)
        sampling = {}
        if epoch is not None:
            seed_sampling(self.seed * 1_000_003 + epoch)
            sampling = {"alpha": self.sampling_alpha, "nbest_size": self.sampling_nbest_size}
        for i, (src_line, tgt_line) in enumerate(zip(src_lines, tgt_lines, strict=True)):
            src = self.src_tokenizer.encode(src_line, **sampling)
            tgt = self.tgt_tokenizer.encode(tgt_line, **sampling)
            if min(len(src), len(tgt)) < self.min_len:
                too_short += 1
            elif max(len(src), len(tgt)) > self.max_len:
                too_long += 1
            else:
                examples.append(Example(i, src, tgt, tgt_line))
        counts = (
            f"{self.train_split}: kept {len(examples)} of {len(src_lines)} pairs ({too_short} "
            f"empty/too short, {too_long} longer than {self.max_len} tokens)"
        )
        if not examples:
            raise DataError(f"{counts}: nothing to train on; check min_len and max_len")
        log.info(counts)
        return TranslationDataset(examples)

    def _eval_set(self, split: str) -> TranslationDataset:
        """Every pair of ``split``, with over-long sources truncated; targets are kept whole."""
        src_lines, tgt_lines = self._read_split(split)
        srcs = encode_sources(src_lines, self.src_tokenizer, max_len=self.max_len, name=split)
        return TranslationDataset(
            [
                Example(i, src, self.tgt_tokenizer.encode(ref), ref)
                for i, (src, ref) in enumerate(zip(srcs, tgt_lines, strict=True))
            ]
        )

    def _loader(self, split: str, max_tokens: int, *, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        return token_loader(
            self,
            dataset,
            dataset.lengths,
            max_tokens,
            shuffle=shuffle,
            seed=self.seed,
            collate_fn=collate,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        if self.sampling_alpha:
            self.datasets["train"] = self._train_set(epoch=self._sampled_epoch())
        return self._loader("train", self.max_tokens, shuffle=True)

    def _sampled_epoch(self) -> int:
        """The epoch whose segmentation to sample: Lightning must ask for a loader every epoch."""
        trainer = self.trainer
        if trainer is None or trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError(
                "data.sampling_alpha re-samples the training segmentation every epoch: set "
                "trainer.reload_dataloaders_every_n_epochs: 1"
            )
        return trainer.current_epoch

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_max_tokens, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_max_tokens, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self.eval_max_tokens, shuffle=False)
