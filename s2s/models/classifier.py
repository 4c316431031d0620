"""Many-to-one: an RNN reads a text and one label is predicted from its final or pooled states."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from s2s.data.labelled import LabelledBatch
from s2s.models.labelling import LabellingModule
from s2s.nn.encoder import EncoderConfig, EncoderOutput
from s2s.optim import OptimConfig

Pooling = Literal["final", "mean", "max"]


def pool(enc: EncoderOutput, pooling: Pooling) -> Tensor:
    """The text as one vector (B, Hm): the last layer's final states (both directions when
    bidirectional), or the mean or maximum over the real positions of the top layer's states."""
    if pooling == "final":
        return enc.summary
    mask = enc.mask.unsqueeze(-1)  # (B, S, 1)
    if pooling == "mean":
        return (enc.memory * mask).sum(1) / mask.sum(1)
    if pooling == "max":
        return enc.memory.masked_fill(~mask, -torch.inf).amax(1)
    raise ValueError(f"unknown pooling {pooling!r}; expected final, mean or max")


class SequenceClassifier(LabellingModule):
    """Text classifier: (bi)directional RNN over subwords, pooled, then a linear layer.

    Args:
        src_vocab_size: Subword vocabulary size (linked from the data module in recipes).
        labels: Class names; the output has one score per name (linked from the data module).
        encoder: The RNN encoder's options; its dropout also applies to the pooled vector.
        pooling: ``final``: the final hidden states; ``mean`` / ``max``: over every position.
        class_weighted_loss: Weigh each class's loss by ``n / (K * count)`` of the training data,
            so rare classes count as much as frequent ones.
        optim: Optimiser and learning-rate schedule (the plateau schedule watches
            ``val/macro_f1``).
    """

    def __init__(
        self,
        src_vocab_size: int,
        labels: list[str],
        encoder: EncoderConfig = EncoderConfig(embedding_size=128, hidden_size=128, dropout=0.2),
        pooling: Pooling = "final",
        class_weighted_loss: bool = False,
        optim: OptimConfig = OptimConfig(),
    ) -> None:
        super().__init__(src_vocab_size, labels, encoder, class_weighted_loss, optim)
        self.save_hyperparameters()
        self.pooling = pooling

    def scores(self, batch: LabelledBatch) -> Tensor:
        """Class logits (B, K)."""
        enc = self.encoder(batch.src, batch.src_lengths)
        return self.output(self.dropout(pool(enc, self.pooling)))
