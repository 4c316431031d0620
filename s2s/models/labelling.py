"""Training and evaluation shared by the models that label text (classifier, tagger).

A subclass turns a :class:`~s2s.data.labelled.LabelledBatch` into label scores (:meth:`scores`);
this class trains them with (optionally class-weighted) cross-entropy and reports accuracy,
macro-F1 and per-class precision, recall and F1 (torchmetrics, synchronised across devices).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassStatScores,
)

from s2s.checkpoint import TokenizersInCheckpoint
from s2s.data.labelled import LabelledBatch
from s2s.models.encoder_decoder import write_log_file
from s2s.nn.encoder import EncoderConfig, RNNEncoder
from s2s.optim import OptimConfig, configure_optimizers
from s2s.tokenizer import IGNORE


def balanced_class_weights(counts: Tensor) -> Tensor:
    """Loss weights ``n / (K * count_k)`` (K classes, n examples): every class weighs as much in
    total; a class without examples gets weight 0."""
    counts = counts.double()
    weights = counts.sum() / (len(counts) * counts)
    return weights.nan_to_num(posinf=0.0).float()


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, macro-F1, and per class precision, recall, F1 and support (labels IGNORE are
    not counted)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes, "ignore_index": IGNORE}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(average="micro", **kwargs),
            "macro_f1": MulticlassF1Score(average="macro", **kwargs),
            "precision": MulticlassPrecision(average=None, **kwargs),
            "recall": MulticlassRecall(average=None, **kwargs),
            "f1": MulticlassF1Score(average=None, **kwargs),
            "stats": MulticlassStatScores(average=None, **kwargs),  # (K, [tp fp tn fn support])
        }
    )


def classification_report(results: dict[str, Tensor], labels: list[str]) -> str:
    """Per-class precision, recall, F1 and support, then accuracy and macro-F1, as a table."""
    width = max(len("label"), *map(len, labels))
    lines = [f"{'label':<{width}}  precision  recall     f1  support"]
    for i, label in enumerate(labels):
        p, r, f1 = (float(results[k][i]) for k in ("precision", "recall", "f1"))
        support = int(results["stats"][i, 4])
        lines.append(f"{label:<{width}}  {p:9.4f}  {r:6.4f}  {f1:.4f}  {support:7d}")
    lines.append(f"accuracy {float(results['acc']):.4f}  macro-F1 {float(results['macro_f1']):.4f}")
    return "\n".join(lines)


class LabellingModule(TokenizersInCheckpoint, L.LightningModule):
    """Base LightningModule: an RNN encoder over source subwords and a linear output layer;
    subclasses implement :meth:`scores`."""

    tokenizer_names = ("src",)
    monitor = "val/macro_f1"  # what the plateau LR schedule watches; higher is better

    def __init__(
        self,
        src_vocab_size: int,
        labels: list[str],
        encoder: EncoderConfig,
        class_weighted_loss: bool,
        optim: OptimConfig,
    ) -> None:
        super().__init__()
        if not labels:
            raise ValueError("need at least one label")
        self.labels = list(labels)
        self.encoder = RNNEncoder(src_vocab_size, encoder)
        self.dropout = nn.Dropout(encoder.dropout)
        self.output = nn.Linear(self.encoder.output_size, len(self.labels))
        self.class_weighted_loss = class_weighted_loss
        self.optim = optim
        # Set from the training data's label counts at fit time; a training detail, not saved.
        self.register_buffer("class_weights", torch.ones(len(self.labels)), persistent=False)
        self.metrics = nn.ModuleDict(
            {stage: classification_metrics(len(self.labels)) for stage in ("val", "test")}
        )

    def scores(self, batch: LabelledBatch) -> Tensor:
        """Label logits: (B, K) for ``batch.labels`` (B,), or (B, S, K) for (B, S)."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and self.class_weighted_loss and datamodule is not None:
            self.class_weights = balanced_class_weights(datamodule.label_counts).to(self.device)

    def training_step(self, batch: LabelledBatch, batch_idx: int) -> Tensor:
        logits = self.scores(batch)
        loss = F.cross_entropy(
            logits.flatten(0, -2).float(),
            batch.labels.flatten(),
            weight=self.class_weights,
            ignore_index=IGNORE,
        )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.labels))
        return loss

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optim, monitor=self.monitor)

    def evaluate(self, batch: LabelledBatch, stage: str) -> Tensor:
        """Predicted label ids, shaped like ``batch.labels``; updates the ``stage`` metrics."""
        predictions = self.scores(batch).argmax(-1)
        self.metrics[stage].update(predictions.flatten(), batch.labels.flatten())
        return predictions

    def validation_step(self, batch: LabelledBatch, batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: LabelledBatch, batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def epoch_results(self, stage: str) -> dict[str, Tensor]:
        """The ``stage`` metrics over the whole split (every device), then reset."""
        results = self.metrics[stage].compute()
        self.metrics[stage].reset()
        return results

    def log_results(self, stage: str, results: dict[str, Tensor]) -> None:
        scalars = {f"{stage}/{k}": results[k] for k in ("acc", "macro_f1")}
        scalars |= {f"{stage}/f1/{label}": results["f1"][i] for i, label in enumerate(self.labels)}
        self.log_dict(scalars)

    def on_validation_epoch_end(self) -> None:
        self.log_results("val", self.epoch_results("val"))

    def on_test_epoch_end(self) -> None:
        results = self.epoch_results("test")
        self.log_results("test", results)
        report = classification_report(results, self.labels)
        out = write_log_file(self.trainer, "test_report.txt", [report])
        self.print(f"{report}\nreport: {out}")
