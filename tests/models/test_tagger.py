import random

import lightning as L
import pytest
import torch
from tiny import quiet_trainer

from s2s.data.labelled import LabelledBatch, LabelledExample, TaggingData, collate_tags
from s2s.models.tagger import SequenceTagger
from s2s.nn.encoder import EncoderConfig
from s2s.optim import OptimConfig
from s2s.tokenizer import IGNORE, TokenizerConfig

VOCAB = 12


def tiny_tagger() -> SequenceTagger:
    torch.manual_seed(0)
    encoder = EncoderConfig(embedding_size=8, hidden_size=8, dropout=0.0)
    return SequenceTagger(VOCAB, ["p", "q", "r"], encoder)


def test_bidirectional_by_default_with_one_score_per_tag_and_position():
    model = tiny_tagger()
    assert model.encoder.rnn.bidirectional
    batch = collate_tags([LabelledExample(0, [4, 5, 6], [0, 1, 2]), LabelledExample(1, [7], [0])])
    assert model.scores(batch).shape == (2, 4, 3)  # 3 tokens + EOS


class FixedPredictions(SequenceTagger):
    """A tagger whose predictions are given: to check what the metrics count."""

    def __init__(self, predictions: torch.Tensor) -> None:
        super().__init__(VOCAB, ["p", "q", "r"], EncoderConfig(embedding_size=4, hidden_size=4))
        self.predictions = predictions

    def scores(self, batch: LabelledBatch) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.predictions, 3).float()


def test_token_and_sequence_accuracy_count_tagged_tokens_only():
    labels = torch.tensor([[0, IGNORE, 1, IGNORE], [2, 2, IGNORE, IGNORE], [1, 0, 0, IGNORE]])
    predictions = torch.tensor([[0, 2, 1, 2], [2, 1, 0, 0], [1, 0, 0, 1]])  # wrong only in row 1
    batch = LabelledBatch(torch.ones_like(labels), torch.tensor([4, 3, 4]), labels, torch.arange(3))
    model = FixedPredictions(predictions)
    model.evaluate(batch, "val")
    results = model.epoch_results("val")
    assert float(results["acc"]) == pytest.approx(6 / 7)
    assert float(results["seq_acc"]) == pytest.approx(2 / 3)
    model.evaluate(batch, "val")  # the epoch's results were reset
    assert float(model.epoch_results("val")["seq_acc"]) == pytest.approx(2 / 3)


def next_symbol_task(n: int, seed: int) -> list[str]:
    """``tags<TAB>tokens``: each token's tag is the token after it (END for the last), which only
    a tagger that reads right to left as well can know."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = rng.choices(["a", "b", "c", "d"], k=rng.randint(3, 7))
        lines.append(f"{' '.join([*words[1:], 'END'])}\t{' '.join(words)}")
    return lines


@pytest.fixture
def next_symbol_data(tmp_path) -> TaggingData:
    for split, n, seed in [("train", 400, 0), ("val", 50, 1), ("test", 200, 2)]:
        lines = next_symbol_task(n, seed)
        (tmp_path / f"{split}.tsv").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return TaggingData(
        str(tmp_path),
        tokenizer=TokenizerConfig(vocab_size=300, cache_dir=str(tmp_path / "cache")),
        max_tokens=256,
    )


def fit_and_test(data: TaggingData, bidirectional: bool) -> dict[str, float]:
    L.seed_everything(0)
    model = SequenceTagger(
        data.src_vocab_size,
        data.labels,
        EncoderConfig(embedding_size=32, hidden_size=32, bidirectional=bidirectional, dropout=0.0),
        optim=OptimConfig(lr=0.01),
    )
    trainer = quiet_trainer(max_epochs=6, num_sanity_val_steps=0, default_root_dir=data.data_dir)
    trainer.fit(model, data)
    return trainer.test(model, data, verbose=False)[0]


def test_bidirectional_tagger_learns_to_tag_with_the_next_token(next_symbol_data):
    """About 2 s on one core: 6 epochs of 400 sentences; token accuracy >= 0.95 and sentence
    accuracy >= 0.8, where a left-to-right tagger stays below 0.5 token accuracy."""
    results = fit_and_test(next_symbol_data, bidirectional=True)
    assert results["test/acc"] >= 0.95
    assert results["test/seq_acc"] >= 0.8
    assert results["test/acc"] >= results["test/seq_acc"]
    assert fit_and_test(next_symbol_data, bidirectional=False)["test/acc"] < 0.5
