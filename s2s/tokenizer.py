"""SentencePiece subword tokenizer shared by translation and captioning.

Kudo & Richardson (2018), "SentencePiece: A simple and language independent subword tokenizer".
Every model uses the same fixed special ids, so decoding never needs to ask which tokenizer it has.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import itertools
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sentencepiece as spm
import torch

from s2s.io import DataError, atomic_write, read_lines

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_IDS = frozenset((PAD_ID, UNK_ID, BOS_ID, EOS_ID))
IGNORE = -100  # the label of positions that carry none (F.cross_entropy's default ignore_index)
MAX_SENTENCE_BYTES = 4192  # SentencePiece's default: longer training lines are skipped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenizerConfig:
    """How a data module trains its tokenizers (``data.tokenizer`` in recipes).

    Args:
        type: SentencePiece model type; ``char`` gives one piece per character (character-level
            models), and its vocabulary holds the 4 special and 256 byte pieces too.
        vocab_size: Upper bound on the vocabulary size: tiny corpora get the largest vocabulary
            they support (``char``: needs > 260).
        character_coverage: Share of characters the tokenizer covers; rarer ones become bytes.
        cache_dir: Where trained tokenizers are cached, keyed by their inputs and options.
    """

    type: Literal["unigram", "bpe", "char"] = "unigram"
    vocab_size: int = 8000
    character_coverage: float = 1.0
    cache_dir: str = ".cache/tokenizers"

    def __post_init__(self) -> None:
        if self.type == "char" and self.vocab_size <= 4 + 256:
            raise ValueError(f"a char tokenizer needs vocab_size > 260, got {self.vocab_size}")


class Tokenizer:
    """A trained SentencePiece model: text <-> ids, with the fixed special ids above."""

    def __init__(self, model_proto: bytes) -> None:
        self.proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        special = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if special != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"SentencePiece model has special ids pad/unk/bos/eos={special}; "
                f"s2s needs {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}"
            )

    @classmethod
    def train(cls, files: Sequence[str | Path], config: TokenizerConfig) -> Tokenizer:
        """Train on the lines of ``files``, or reuse the cached model for equal inputs and options.

        Byte fallback keeps characters unseen in training (emoji, rare scripts) lossless.
        """
        options = dict(
            vocab_size=config.vocab_size,
            model_type=config.type,
            character_coverage=config.character_coverage,
        )
        digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
        for f in files:
            digest.update(Path(f).read_bytes())
        cache = Path(config.cache_dir) / f"spm-{digest.hexdigest()[:16]}.model"
        cache.parent.mkdir(parents=True, exist_ok=True)
        # One process trains, the others (DDP ranks) wait for it and reuse the result.
        with open(cache.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if cache.is_file():
                log.info("Reusing tokenizer %s", cache)
                return cls.load(cache)
            log.info("Training tokenizer on %s -> %s", [str(f) for f in files], cache)
            sentences = _lines(files)
            first = next(sentences, None)  # SentencePiece fails obscurely on no text
            if first is None:
                raise _no_sentences(files)
            tok = cls(_train_proto(itertools.chain([first], sentences), **options))
            tok.save(cache)
        return tok

    @classmethod
    def train_on_lines(cls, lines: Iterable[str], config: TokenizerConfig) -> Tokenizer:
        """:meth:`train` on ``lines`` (texts without line breaks) rather than files.

        They pass through a temporary file in the cache folder, since the cache is keyed by file
        contents; it is removed also when training fails.
        """
        Path(config.cache_dir).mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=config.cache_dir, suffix=".txt")
        try:
            with open(fd, "w", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
            return cls.train([path], config)
        finally:
            os.unlink(path)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls(Path(path).read_bytes())

    def save(self, path: str | Path) -> None:
        """Write atomically, so a killed run never leaves a half-written model."""
        with atomic_write(Path(path)) as f:
            f.write(self.proto)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str, *, alpha: float = 0.0, nbest_size: int = -1) -> list[int]:
        """Subword ids of ``text``, without BOS/EOS. ``alpha > 0`` samples a segmentation
        instead of taking the best one (subword regularisation, Kudo 2018; BPE-dropout for BPE
        models), from SentencePiece's generator (:func:`seed_sampling`): the smaller ``alpha``,
        the more the segmentations vary; ``nbest_size`` limits a unigram model to its n best
        segmentations (-1: all)."""
        if alpha > 0:
            return self._sp.encode(text, enable_sampling=True, alpha=alpha, nbest_size=nbest_size)
        return self._sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special ids are dropped.

        Line breaks (which only byte-fallback pieces can produce) become spaces: one output is
        one line of a hypotheses file.
        """
        text = self._sp.decode([int(i) for i in ids if int(i) not in SPECIAL_IDS])
        return " ".join(text.splitlines())

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """One readable piece per id (for attention plots)."""
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.proto == other.proto


def seed_sampling(seed: int) -> None:
    """Seed SentencePiece's generator (one per process), which sampled segmentations draw from."""
    spm.set_random_generator_seed(seed)


def _lines(files: Sequence[str | Path]) -> Iterable[str]:
    """The non-blank lines of ``files`` that SentencePiece trains on (not over its length limit)."""
    for f in files:
        yield from (line for line in read_lines(f) if line.strip() and _fits(line))


def _fits(line: str) -> bool:
    return len(line.encode("utf-8")) <= MAX_SENTENCE_BYTES


def _no_sentences(files: Sequence[str | Path]) -> DataError:
    """Why ``files`` give no training sentence: no text, or only over-long lines."""
    names = ", ".join(map(str, files))
    if not any(line.strip() for f in files for line in read_lines(f)):
        return DataError(f"{names}: no text to train a tokenizer on")
    return DataError(
        f"{names}: every line is longer than {MAX_SENTENCE_BYTES} bytes, the "
        "tokenizer's sentence limit: text must be one sentence a line (files with CR-only "
        "line endings read as one line)"
    )


def _train_proto(
    sentences: Iterable[str], *, vocab_size: int, model_type: str, character_coverage: float
) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        byte_fallback=True,
        hard_vocab_limit=False,
        max_sentence_length=MAX_SENTENCE_BYTES,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    return model.getvalue()


# Data modules keep the config in their hyperparameters; let torch.load(weights_only=True) read it.
torch.serialization.add_safe_globals([TokenizerConfig])
