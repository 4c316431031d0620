from collections import Counter

import pytest
import torch

from s2s.data.labelled import (
    ClassificationData,
    LabelledExample,
    TaggingData,
    WeightedTokenBatchSampler,
    collate_classes,
    collate_tags,
)
from s2s.io import DataError
from s2s.tokenizer import EOS_ID, IGNORE, PAD_ID, TokenizerConfig


def write_splits(root, **splits: list[str]):
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        (root / f"{split}.tsv").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return root


def tokenizer(tmp_path) -> TokenizerConfig:
    return TokenizerConfig(vocab_size=300, cache_dir=str(tmp_path / "cache"))


def classification(tmp_path, **kwargs) -> ClassificationData:
    return ClassificationData(str(tmp_path), tokenizer=tokenizer(tmp_path), **kwargs)


def tagging(tmp_path, **kwargs) -> TaggingData:
    return TaggingData(str(tmp_path), tokenizer=tokenizer(tmp_path), **kwargs)


def test_collate_pads_and_appends_eos():
    examples = [LabelledExample(7, [4, 5, 6], [1, IGNORE, 0]), LabelledExample(3, [8], [2])]
    classes = collate_classes(examples)
    assert classes.src.tolist() == [[4, 5, 6, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert classes.src_lengths.tolist() == [4, 2]
    assert classes.labels.tolist() == [1, 2]  # the first label of each
    assert classes.indices.tolist() == [7, 3]
    tags = collate_tags(examples)
    assert torch.equal(tags.src, classes.src)
    assert tags.labels.tolist() == [[1, IGNORE, 0, IGNORE], [2, IGNORE, IGNORE, IGNORE]]


def test_classification_reads_labels_and_texts(tmp_path):
    write_splits(
        tmp_path,
        train=["pos\tgood film", "", "neg\tbad film", "pos\tgood good"],
        val=["neg\tbad"],
    )
    data = classification(tmp_path)
    assert data.labels == ["neg", "pos"]
    assert data.label_counts.tolist() == [1, 2]
    data.setup("fit")
    train = data.datasets["train"]
    assert [ex.labels for ex in train] == [[1], [0], [1]]  # the blank line is skipped
    tok = data.src_tokenizer
    assert [tok.decode(ex.src) for ex in train] == ["good film", "bad film", "good good"]
    (batch,) = list(data.val_dataloader())
    assert batch.labels.tolist() == [0]
    assert data.src_vocab_size == tok.vocab_size


def test_tags_belong_to_the_first_subword_of_their_token(tmp_path):
    write_splits(
        tmp_path,
        train=["DET NOUN\tthe dog", "DET ADJ NOUN\tthe unbelievably dog"],
        val=["DET NOUN\tthe dog"],
    )
    data = tagging(tmp_path)
    assert data.labels == ["ADJ", "DET", "NOUN"]
    assert data.label_counts.tolist() == [1, 2, 2]
    data.setup("fit")
    ex = data.datasets["train"][1]
    pieces = [data.src_tokenizer.encode(w) for w in ("the", "unbelievably", "dog")]
    assert ex.src == [i for p in pieces for i in p]
    expected = []
    for tag, p in zip([1, 0, 2], pieces, strict=True):
        expected += [tag] + [IGNORE] * (len(p) - 1)
    assert ex.labels == expected
    assert len(pieces[1]) > 1  # the test covers a token of several subwords


@pytest.mark.parametrize(
    "make, train, message",
    [
        (classification, ["pos good film"], r"train\.tsv:1: expected 'label<TAB>text'"),
        (classification, ["pos\tok", "\tno label"], r"train\.tsv:2: expected 'label<TAB>text'"),
        (tagging, ["DET NOUN\tthe dog", "DET\tthe dog"], r"train\.tsv:2: 1 tags for 2 tokens"),
        (tagging, ["the dog"], r"train\.tsv:1: expected 'tags<TAB>tokens'"),
    ],
)
def test_malformed_lines_are_errors_naming_file_and_line(tmp_path, make, train, message):
    write_splits(tmp_path, train=train, val=["x\ty"])
    with pytest.raises(DataError, match=message):
        make(tmp_path).setup("fit")


def test_a_label_unseen_in_training_is_an_error(tmp_path):
    write_splits(tmp_path, train=["pos\tgood", "neg\tbad"], val=["pos\tgood", "meh\tso so"])
    with pytest.raises(DataError, match=r"val\.tsv:2: label 'meh' does not occur in training"):
        classification(tmp_path).setup("fit")


def test_missing_split_file_is_named(tmp_path):
    write_splits(tmp_path, train=["pos\tgood"])
    with pytest.raises(DataError, match=r"val\.tsv\[\.gz\]: no such file"):
        classification(tmp_path).setup("validate")


def test_over_long_training_texts_are_dropped(tmp_path, caplog):
    write_splits(tmp_path, train=["a\tx", "b\t" + "x " * 50], val=["a\tx"])
    data = classification(tmp_path, max_len=10)
    data.setup("fit")
    assert len(data.datasets["train"]) == 1
    assert "dropped 1 of 2 examples longer than max_len=10" in caplog.text


def weighted_sampler(**kwargs) -> WeightedTokenBatchSampler:
    labels = [0] * 900 + [1] * 100
    counts = Counter(labels)
    return WeightedTokenBatchSampler(
        [1 / counts[y] for y in labels], [5 + i % 7 for i in range(1000)], 64, **kwargs
    )


def test_weighted_sampler_balances_classes_and_is_seeded():
    sampler = weighted_sampler(seed=3)
    epoch0 = list(sampler)
    drawn = [i for batch in epoch0 for i in batch]
    assert len(drawn) == 1000
    minority = sum(i >= 900 for i in drawn) / len(drawn)
    assert 0.45 < minority < 0.55  # a class of 10% is drawn half the time
    assert len(set(drawn)) < 1000  # with replacement
    assert list(sampler) == epoch0 and len(sampler) == len(epoch0)
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    for batch in epoch0:
        assert len(batch) * max(5 + i % 7 for i in batch) <= 64


def test_weighted_sampler_shares_one_draw_among_ranks():
    whole = Counter(i for batch in weighted_sampler(seed=1) for i in batch)
    ranks = [list(weighted_sampler(seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    assert Counter(i for rank in ranks for batch in rank for i in batch) == whole


def test_classification_data_uses_the_weighted_sampler_for_training_only(tmp_path):
    write_splits(tmp_path, train=["a\tx y"] * 9 + ["b\ty x"], val=["a\tx y", "b\ty x"])
    data = classification(tmp_path, weighted_sampling=True)
    data.setup("fit")
    assert isinstance(data.train_dataloader().batch_sampler, WeightedTokenBatchSampler)
    assert not isinstance(data.val_dataloader().batch_sampler, WeightedTokenBatchSampler)


@pytest.mark.parametrize("weighted", [False, True])
def test_training_loader_resumes_mid_epoch_with_the_batches_not_yet_seen(tmp_path, weighted):
    lines = [f"{'ab'[i % 2]}\t{' '.join('xyz'[: 1 + i % 3])} w{i}" for i in range(40)]
    write_splits(tmp_path, train=lines, val=lines[:2])
    data = classification(tmp_path, weighted_sampling=weighted, max_tokens=24)
    data.setup("fit")
    loader = data.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(2)
    epoch = [batch.indices.tolist() for batch in loader]
    assert len(epoch) > 4
    seen = iter(loader)
    for _ in range(3):
        next(seen)
    state = loader.state_dict()  # as Lightning checkpoints it after 3 batches

    resumed = data.train_dataloader()
    resumed.batch_sampler.sampler.set_epoch(2)
    resumed.load_state_dict(state)
    assert [batch.indices.tolist() for batch in resumed] == epoch[3:]
    assert [batch.indices.tolist() for batch in resumed] == epoch  # the next pass is whole again
