import pytest
import torch

from s2s.models.labelling import (
    balanced_class_weights,
    classification_metrics,
    classification_report,
)
from s2s.tokenizer import IGNORE

# Class 0: 1 of 2 right; class 1: right, and predicted twice more; class 2: missed; the last
# position carries no label.
PREDICTIONS = torch.tensor([0, 1, 1, 1, 2])
TARGETS = torch.tensor([0, 0, 1, 2, IGNORE])


@pytest.mark.parametrize("num_classes", [3, 4])
def test_metrics_on_a_hand_checked_case(num_classes):
    metrics = classification_metrics(num_classes)
    metrics.update(PREDICTIONS[:2], TARGETS[:2])  # accumulated over batches
    metrics.update(PREDICTIONS[2:], TARGETS[2:])
    results = metrics.compute()
    assert float(results["acc"]) == pytest.approx(2 / 4)
    per_class = {k: results[k][:3].tolist() for k in ("precision", "recall", "f1")}
    assert per_class["precision"] == pytest.approx([1, 1 / 3, 0])
    assert per_class["recall"] == pytest.approx([1 / 2, 1, 0])
    assert per_class["f1"] == pytest.approx([2 / 3, 1 / 2, 0])
    assert results["stats"][:3, 4].tolist() == [2, 1, 1]  # support
    # A class neither present nor predicted (num_classes=4) does not count in the macro average.
    assert float(results["macro_f1"]) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_report_lists_every_class():
    metrics = classification_metrics(3)
    metrics.update(PREDICTIONS, TARGETS)
    report = classification_report(metrics.compute(), ["neg", "neutral", "pos"])
    assert report.splitlines() == [
        "label    precision  recall     f1  support",
        "neg         1.0000  0.5000  0.6667        2",
        "neutral     0.3333  1.0000  0.5000        1",
        "pos         0.0000  0.0000  0.0000        1",
        "accuracy 0.5000  macro-F1 0.3889",
    ]


def test_balanced_weights_make_every_class_weigh_the_same():
    counts = torch.tensor([6, 2, 0, 1])
    weights = balanced_class_weights(counts)
    assert weights.tolist() == pytest.approx([9 / 24, 9 / 8, 0, 9 / 4])
    totals = (weights * counts)[counts > 0]
    assert torch.allclose(totals, totals[0].expand_as(totals))
