"""Text as one token stream for language models, read in chunks for truncated BPTT; and prompts.

Every line becomes ``BOS ids`` as input and ``ids EOS`` as target, so a line starts at BOS and ends
at EOS exactly as decoding generates it, and the lines are concatenated into one stream. As in
Zaremba et al. (2014), "Recurrent Neural Network Regularization", the stream is cut into B
contiguous rows that are read ``tbptt_steps`` columns at a time: row b of chunk k+1 continues row b
of chunk k, so a model carries its hidden state from each chunk to the next (Lightning 2 has no
built-in truncated BPTT; :class:`~s2s.models.language_model.LanguageModel` does the carrying).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from s2s.data.batching import LoadersBySplit, pad, replicas
from s2s.io import DataError, read_lines
from s2s.tokenizer import BOS_ID, EOS_ID, Tokenizer, TokenizerConfig

log = logging.getLogger(__name__)


@dataclass
class StreamChunk:
    """``tbptt_steps`` columns of the stream's rows; Lightning moves its tensors to the device."""

    inputs: Tensor  # (B, T) token ids
    targets: Tensor  # (B, T) the token after each input
    first: bool  # the first chunk of its stream: a model starts from a fresh state


def encode_stream(lines: Sequence[str], tokenizer: Tokenizer) -> tuple[Tensor, Tensor]:
    """Inputs and targets (L,) of ``lines``: ``BOS ids`` and ``ids EOS`` per line, concatenated."""
    inputs: list[int] = []
    targets: list[int] = []
    for line in lines:
        ids = tokenizer.encode(line)
        inputs += [BOS_ID, *ids]
        targets += [*ids, EOS_ID]
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


class StreamChunks(Dataset[StreamChunk]):
    """The chunks of one stream, in order (item k is chunk k; never shuffle them).

    The stream is cut into ``batch_size * num_replicas`` rows of equal length, and replica ``rank``
    reads rows ``[rank * batch_size, (rank + 1) * batch_size)``. The last ``len % rows`` tokens,
    fewer than one per row, are dropped; the last chunk may be narrower than ``tbptt_steps``.
    """

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        *,
        batch_size: int,
        tbptt_steps: int,
        num_replicas: int = 1,
        rank: int = 0,
        name: str = "stream",
    ) -> None:
        if batch_size < 1 or tbptt_steps < 1:
            raise ValueError(
                f"batch_size and tbptt_steps must be >= 1, got {batch_size}, {tbptt_steps}"
            )
        rows = batch_size * num_replicas
        width = len(inputs) // rows
        if width == 0:
            raise DataError(f"{name}: {len(inputs)} tokens cannot fill {rows} rows of the stream")
        if dropped := len(inputs) - rows * width:
            log.info(
                "%s: the last %d of %d tokens fill no whole column", name, dropped, len(inputs)
            )
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        self.inputs = inputs[: rows * width].view(rows, width)[mine]  # (B, W)
        self.targets = targets[: rows * width].view(rows, width)[mine]  # (B, W)
        self.tbptt_steps = tbptt_steps

    @property
    def num_tokens(self) -> int:
        return self.targets.numel()

    def __len__(self) -> int:
        return -(-self.inputs.size(1) // self.tbptt_steps)

    def __getitem__(self, k: int) -> StreamChunk:
        if not 0 <= k < len(self):
            raise IndexError(k)
        cols = slice(k * self.tbptt_steps, (k + 1) * self.tbptt_steps)
        return StreamChunk(self.inputs[:, cols], self.targets[:, cols], first=k == 0)


@dataclass
class Prompts:
    """Texts for a language model to continue: what ``LanguageModel.start`` reads."""

    ids: Tensor  # (B, P) BOS then each text's ids, PAD-padded
    lengths: Tensor  # (B,) BOS included


def make_prompts(texts: Sequence[str], tokenizer: Tokenizer) -> Prompts:
    """Prompts for ``texts``; an empty text asks for a line from scratch."""
    seqs = [[BOS_ID, *tokenizer.encode(text)] for text in texts]
    return Prompts(pad(seqs), torch.tensor([len(s) for s in seqs]))


class TextStreamData(LoadersBySplit, L.LightningDataModule):
    """Text files as token streams for a language model, read in truncated-BPTT chunks.

    Args:
        train_file: Training text (plain or ``.gz``), one sentence or paragraph per line; the
            tokenizer is trained on it.
        val_file: Validation text.
        test_file: Text for ``s2s test``.
        tokenizer: How the tokenizer is trained; by default one piece per character.
        batch_size: Rows of the training stream read in parallel.
        eval_batch_size: Rows of the validation and test streams (fewer rows drop fewer tokens at
            the end and carry the state further).
        tbptt_steps: Tokens per chunk: gradients flow back through at most this many steps,
            while the hidden state carries over the whole stream.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        train_file: str,
        val_file: str,
        test_file: str | None = None,
        tokenizer: TokenizerConfig = TokenizerConfig(type="char"),
        batch_size: int = 32,
        eval_batch_size: int = 8,
        tbptt_steps: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.tokenizer_config = tokenizer
        self.batch_sizes = {"train": batch_size, "val": eval_batch_size, "test": eval_batch_size}
        self.tbptt_steps = tbptt_steps
        self.num_workers = num_workers
        self.datasets: dict[str, StreamChunks] = {}

    @cached_property
    def tgt_tokenizer(self) -> Tokenizer:
        """Trained on the training text on first use (or loaded from the cache)."""
        return Tokenizer.train([self.files["train"]], self.tokenizer_config)

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_tokenizer.vocab_size

    def setup(self, stage: str) -> None:
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(stage)
        if splits is None:
            raise ValueError(f"TextStreamData has no {stage!r} stage; sample with s2s-sample")
        num_replicas, rank = replicas(self.trainer, "TextStreamData")
        for split in splits:
            path = self.files[split]
            if path is None:
                raise ValueError(f"no {split}_file given")
            inputs, targets = encode_stream(read_lines(path), self.tgt_tokenizer)
            self.datasets[split] = StreamChunks(
                inputs,
                targets,
                batch_size=self.batch_sizes[split],
                tbptt_steps=self.tbptt_steps,
                num_replicas=num_replicas,
                rank=rank,
                name=str(path),
            )

    def _loader(self, split: str) -> DataLoader:
        # batch_size=None: every item is already a batch, and chunks must come in order.
        return DataLoader(
            self.datasets[split], batch_size=None, shuffle=False, num_workers=self.num_workers
        )
