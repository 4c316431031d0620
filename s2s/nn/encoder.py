"""Encoders turn an input into a memory for the decoder to attend to.

The text encoder here and the image encoder of the captioner both return :class:`EncoderOutput`,
which is all the decoder sees of its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s.nn.rnn import CellType, make_rnn
from s2s.tokenizer import PAD_ID

if TYPE_CHECKING:
    from s2s.nn.decoder import DecoderConfig


@dataclass
class EncoderOutput:
    memory: Tensor  # (B, S, Hm) one state per source position (token or image region)
    mask: Tensor  # (B, S) True at real positions, False at padding
    summary: Tensor  # (B, Hm) the whole input as one vector: initialises the decoder


@dataclass(frozen=True)
class EncoderConfig:
    """The RNN encoder's options (``model.encoder`` in recipes).

    Args:
        embedding_size: Size of the subword embeddings.
        hidden_size: RNN size of each direction.
        cell: Recurrent cell.
        num_layers: Stacked RNN layers.
        bidirectional: Read the input in both directions.
        dropout: Dropout on embeddings, between RNN layers and on the output states.
    """

    embedding_size: int = 256
    hidden_size: int = 256
    cell: CellType = "lstm"
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3

    def __post_init__(self) -> None:
        check_sizes(self)


def check_sizes(config: EncoderConfig | DecoderConfig) -> None:
    """A one-line error for a size below 1 or a dropout outside [0, 1)."""
    for name in ("embedding_size", "hidden_size", "num_layers"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if not 0 <= config.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")


class RNNEncoder(nn.Module):
    """Embedding + (bi)directional multi-layer RNN over packed sequences: padding is never read."""

    def __init__(self, vocab_size: int, config: EncoderConfig) -> None:
        super().__init__()
        c = config
        self.embedding = nn.Embedding(vocab_size, c.embedding_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(c.dropout)
        self.rnn = make_rnn(
            c.cell, c.embedding_size, c.hidden_size, c.num_layers, c.dropout, c.bidirectional
        )
        self.output_size = c.hidden_size * (2 if c.bidirectional else 1)

    def forward(self, src: Tensor, lengths: Tensor) -> EncoderOutput:
        """``src`` (B, S) token ids, ``lengths`` (B,) real lengths (>= 1)."""
        emb = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        h = final[0] if isinstance(final, tuple) else final  # (layers * dirs, B, H)
        dirs = 2 if self.rnn.bidirectional else 1
        last_layer = h.view(self.rnn.num_layers, dirs, *h.shape[1:])[-1]  # (dirs, B, H)
        summary = torch.cat(tuple(last_layer), dim=-1)  # (B, dirs * H)
        mask = torch.arange(src.size(1), device=src.device) < lengths.unsqueeze(1)
        return EncoderOutput(memory=self.dropout(memory), mask=mask, summary=summary)


# Checkpoints keep the config in their hyperparameters; let torch.load(weights_only=True) read it.
torch.serialization.add_safe_globals([EncoderConfig])
