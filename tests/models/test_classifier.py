import random
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from tiny import quiet_trainer

from s2s.checkpoint import load_model
from s2s.cli import make_cli
from s2s.data.labelled import ClassificationData, LabelledExample, collate_classes
from s2s.models.classifier import Pooling, SequenceClassifier, pool
from s2s.models.labelling import balanced_class_weights
from s2s.nn.encoder import EncoderConfig, EncoderOutput
from s2s.nn.rnn import CellType
from s2s.optim import OptimConfig
from s2s.tokenizer import TokenizerConfig

VOCAB = 12

# training_step logs; outside a Trainer Lightning only warns that it cannot.
no_trainer_warning = pytest.mark.filterwarnings("ignore:.*self.trainer. reference")


def tiny_classifier(pooling: Pooling = "final", cell: CellType = "lstm") -> SequenceClassifier:
    torch.manual_seed(0)
    encoder = EncoderConfig(embedding_size=8, hidden_size=8, cell=cell, dropout=0.0)
    return SequenceClassifier(VOCAB, ["x", "y", "z"], encoder, pooling)


def test_pooling_reads_only_real_positions():
    memory = torch.tensor([[[1.0, -4.0], [3.0, 2.0], [99.0, 99.0]]])  # (1, 3, 2), last is padding
    enc = EncoderOutput(memory, torch.tensor([[True, True, False]]), torch.tensor([[7.0, 8.0]]))
    assert pool(enc, "final").tolist() == [[7.0, 8.0]]
    assert pool(enc, "mean").tolist() == [[2.0, -1.0]]
    assert pool(enc, "max").tolist() == [[3.0, 2.0]]


@pytest.mark.parametrize("pooling", ["final", "mean", "max"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_text_scores_the_same_alone_and_in_a_padded_batch(pooling, cell):
    model = tiny_classifier(pooling=pooling, cell=cell).eval()
    text = LabelledExample(0, [4, 5, 6], [0])
    alone = model.scores(collate_classes([text]))
    batched = model.scores(collate_classes([LabelledExample(1, [7] * 9, [1]), text]))
    torch.testing.assert_close(batched[1:], alone)


@no_trainer_warning
def test_class_weights_scale_each_examples_loss():
    model = tiny_classifier()
    batch = collate_classes([LabelledExample(i, [4 + i], [y]) for i, y in enumerate([0, 0, 1])])
    model.class_weights = torch.tensor([0.5, 2.0, 1.0])
    per_example = F.cross_entropy(model.scores(batch), batch.labels, reduction="none")
    expected = (per_example * torch.tensor([0.5, 0.5, 2.0])).sum() / 3.0
    torch.testing.assert_close(model.training_step(batch, 0), expected)


def order_task(n: int, seed: int, a_first: float = 0.8) -> list[str]:
    """``label<TAB>text``: 'a' and 'b' once each among fillers; the label says which comes first,
    so word counts cannot tell; ``a_first`` of the examples are a_first (imbalanced)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = rng.choices(["c", "d", "e", "f"], k=rng.randint(2, 6))
        first, second = ("a", "b") if rng.random() < a_first else ("b", "a")
        i = rng.randint(0, len(words))
        words.insert(i, first)
        words.insert(rng.randint(i + 1, len(words)), second)
        lines.append(f"{first}_first\t{' '.join(words)}")
    return lines


@pytest.fixture
def order_data(tmp_path):
    for split, n, seed in [("train", 400, 0), ("val", 50, 1), ("test", 200, 2)]:
        lines = order_task(n, seed)
        (tmp_path / f"{split}.tsv").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return tmp_path


def test_learns_an_order_task_with_imbalanced_labels(order_data):
    """About 3 s on one core: 6 epochs of 400 texts; test accuracy >= 0.95, macro-F1 >= 0.9."""
    data = ClassificationData(
        str(order_data),
        tokenizer=TokenizerConfig(vocab_size=300, cache_dir=str(order_data / "cache")),
        max_tokens=256,
        weighted_sampling=True,
    )
    L.seed_everything(0)
    model = SequenceClassifier(
        data.src_vocab_size,
        data.labels,
        EncoderConfig(embedding_size=32, hidden_size=32, dropout=0.0),
        class_weighted_loss=True,
        optim=OptimConfig(lr=0.01),
    )
    trainer = quiet_trainer(
        max_epochs=6,
        num_sanity_val_steps=0,
        default_root_dir=order_data,
        callbacks=[
            L.pytorch.callbacks.ModelCheckpoint(dirpath=order_data / "ckpt", filename="clf")
        ],
        enable_checkpointing=True,
    )
    trainer.fit(model, data)
    counts = data.label_counts
    assert counts.tolist()[0] > 3 * counts.tolist()[1]  # really imbalanced
    torch.testing.assert_close(model.class_weights, balanced_class_weights(counts))
    (results,) = trainer.test(model, data, verbose=False)
    assert results["test/acc"] >= 0.95
    assert results["test/macro_f1"] >= 0.9
    assert set(results) >= {"test/f1/a_first", "test/f1/b_first"}
    report = (order_data / "test_report.txt").read_text(encoding="utf-8")
    assert report.splitlines()[1].startswith("a_first")

    loaded = load_model(order_data / "ckpt" / "clf.ckpt")
    assert loaded.labels == ["a_first", "b_first"] and loaded.pooling == "final"
    batch = next(iter(data.test_dataloader()))
    torch.testing.assert_close(loaded.scores(batch), model.eval().scores(batch))
    assert loaded.tokenizers["src"] == data.src_tokenizer


def test_cli_links_the_data_labels_into_the_model(order_data, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["s2s"])
    cli = make_cli(
        [
            "--model=s2s.models.SequenceClassifier",
            "--data=s2s.data.ClassificationData",
            f"--data.data_dir={order_data}",
            f"--data.tokenizer.cache_dir={order_data / 'cache'}",
            "--data.tokenizer.vocab_size=300",
            f"--trainer.default_root_dir={order_data}",
        ],
        run=False,
    )
    assert cli.model.labels == ["a_first", "b_first"]
    assert cli.model.hparams.src_vocab_size == cli.datamodule.src_vocab_size
