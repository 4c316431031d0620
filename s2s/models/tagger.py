"""Many-to-many: an RNN reads a text and predicts one tag per input token."""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics import MeanMetric

from s2s.data.labelled import LabelledBatch
from s2s.models.labelling import LabellingModule
from s2s.nn.encoder import EncoderConfig
from s2s.optim import OptimConfig
from s2s.tokenizer import IGNORE


class SequenceTagger(LabellingModule):
    """Sequence tagger: a bidirectional RNN's state at each token, through a linear layer.

    Reports token-level accuracy (``acc``), sequence-level accuracy (``seq_acc``: sentences with
    every tag right), macro-F1 and per-tag metrics over tagged tokens (a word's first subword).

    Args:
        src_vocab_size: Subword vocabulary size (linked from the data module in recipes).
        labels: Tag names; the output has one score per name (linked from the data module).
        encoder: The RNN encoder's options; a bidirectional encoder lets each tag see the whole
            sentence, a unidirectional one only the tokens up to its own.
        class_weighted_loss: Weigh each tag's loss by ``n / (K * count)`` of the training data.
        optim: Optimiser and learning-rate schedule (the plateau schedule watches ``val/acc``).
    """

    monitor = "val/acc"

    def __init__(
        self,
        src_vocab_size: int,
        labels: list[str],
        encoder: EncoderConfig = EncoderConfig(embedding_size=128, hidden_size=128, dropout=0.2),
        class_weighted_loss: bool = False,
        optim: OptimConfig = OptimConfig(),
    ) -> None:
        super().__init__(src_vocab_size, labels, encoder, class_weighted_loss, optim)
        self.save_hyperparameters()
        self.seq_acc = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def scores(self, batch: LabelledBatch) -> Tensor:
        """Tag logits (B, S, K); the encoder has applied dropout to its states."""
        return self.output(self.encoder(batch.src, batch.src_lengths).memory)

    def evaluate(self, batch: LabelledBatch, stage: str) -> Tensor:
        predictions = super().evaluate(batch, stage)
        tagged = batch.labels != IGNORE
        self.seq_acc[stage].update(((predictions == batch.labels) | ~tagged).all(1).float())
        return predictions

    def epoch_results(self, stage: str) -> dict[str, Tensor]:
        results = super().epoch_results(stage)
        results["seq_acc"] = self.seq_acc[stage].compute()
        self.seq_acc[stage].reset()
        return results

    def log_results(self, stage: str, results: dict[str, Tensor]) -> None:
        super().log_results(stage, results)
        self.log(f"{stage}/seq_acc", results["seq_acc"])
