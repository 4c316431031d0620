import math
import random
import shutil

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from s2s import coco_caption
from s2s.coco_caption import CiderD, coco_scores, ptb_tokenize

WORDS = ["a", "the", "dog", "Dog", "man's", "don't", "red", "T-shirt", "runs", "on", "grass"]
PUNCT = ["", "", "", ",", ".", "!", "?", ";", " --", " (", ")", '"', "..."]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A man's dog, running.", "a man 's dog running"),
        ("Don't stop! They can't: I'm", "do n't stop they ca n't i 'm"),
        ('A "big" (red) T-shirt...', "a big red t-shirt"),
        ("1,000 people -- 3.5 o'clock; ok?", "1,000 people 3.5 o'clock ok"),
        ("'Quoted' `x` $5", "quoted x $ 5"),
    ],
)
def test_ptb_tokenize(text, tokens):
    assert ptb_tokenize(text) == tokens


def _caption(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(PUNCT) for _ in range(rng.randint(1, 12)))


def test_scores_equal_pycocoevalcap_on_tokenized_captions():
    rng = random.Random(0)
    refs = [[_caption(rng) for _ in range(rng.randint(1, 5))] for _ in range(300)]
    # Half the hypotheses are a reference (cased differently), so image pairing matters.
    hyps = [rng.choice(rs).upper() if rng.random() < 0.5 else _caption(rng) for rs in refs]
    gts = {i: [ptb_tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [ptb_tokenize(h)] for i, h in enumerate(hyps)}
    bleus, _ = Bleu(4).compute_score(gts, res, verbose=0)
    expected = {f"coco_bleu{n}": b for n, b in enumerate(bleus, start=1)}
    expected["rouge_l"] = Rouge().compute_score(gts, res)[0]
    expected["cider_d"] = Cider().compute_score(gts, res)[0]
    scores = coco_scores(hyps, refs)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(100 * value, abs=1e-6), name
    assert 0 < scores["coco_bleu4"] < scores["coco_bleu1"] < 100  # not degenerate
    # References scored against the wrong images score lower: the pairing matters.
    assert coco_scores(hyps, refs[1:] + refs[:1])["cider_d"] < scores["cider_d"]


def test_cider_d_with_the_scored_references_as_corpus_equals_pycocoevalcap():
    rng = random.Random(1)
    refs = [[_caption(rng) for _ in range(rng.randint(1, 5))] for _ in range(200)]
    hyps = [rng.choice(rs) if rng.random() < 0.3 else _caption(rng) for rs in refs]
    gts = {i: [ptb_tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [ptb_tokenize(h)] for i, h in enumerate(hyps)}
    _, expected = Cider().compute_score(gts, res)
    scores = CiderD(refs)(hyps, refs)
    assert scores == pytest.approx(list(expected), abs=1e-9)
    assert len(set(scores)) > 100  # varied, not all zero


def test_cider_d_weights_come_from_its_corpus_not_the_batch():
    """An n-gram rare in the corpus weighs more: the same caption and references score
    differently under two corpora, and the same under one corpus whatever shares the batch."""
    hyp, refs = "a dog runs", ["a dog runs on grass"]
    common = CiderD([["a dog runs"]] * 9 + [["a cat sits"]])
    rare = CiderD([["a cat sits"]] * 9 + [["a dog runs"]])
    assert rare([hyp], [refs])[0] != pytest.approx(common([hyp], [refs])[0])
    alone = rare([hyp], [refs])[0]
    assert rare([hyp, "a cat sits"], [refs, ["a cat sits"]])[0] == alone
    with pytest.raises(ValueError, match="non-empty corpus"):
        CiderD([])
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference sets"):
        rare(["a", "b"], [["a"]])


def test_cider_d_clips_and_penalises_length():
    # Image A: "a b x" against "a b". With L = log 2 every n-gram weighs L (x is in no
    # reference: document frequency 0 counts as 1). Unigrams: dot 2L^2 over norms sqrt(3)L and
    # sqrt(2)L; bigrams {ab, bx} vs {ab}: L^2 over sqrt(2)L * L; no trigram counterpart; 2 bigrams
    # against 1 give the length penalty exp(-1 / 72). Image B matches: (1 + 1 + 0 + 0) / 4 * 10.
    score_a = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    scores = coco_scores(["A b x.", "c d"], [["a b"], ["c d"]])
    assert scores["cider_d"] == pytest.approx(100 * (score_a + 5.0) / 2)
    # Clipping: repeating a matching word does not raise the score.
    assert coco_scores(["c d", "c c c d"], [["a b"], ["c d"]])["cider_d"] < scores["cider_d"]


def test_errors_empty_and_silence(capsys):
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference sets"):
        coco_scores(["a", "b"], [["a"]])
    assert set(coco_scores([], []).values()) == {0.0}
    coco_scores(["a dog"], [["a dog runs"]])
    assert capsys.readouterr().out == ""


def test_meteor_without_java_is_skipped_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(coco_caption.shutil, "which", lambda name: None)
    coco_caption._no_java.cache_clear()
    assert coco_caption.meteor(["a dog"], [["a dog"]]) is None
    assert coco_caption.meteor(["a cat"], [["a dog"]]) is None
    assert caplog.text.count("METEOR needs Java") == 1


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_ranks_a_matching_caption_above_a_wrong_one():
    refs = [["A dog runs on the grass.", "The dog is running outside."]]
    good = coco_caption.meteor(["a dog runs on the grass"], refs)
    bad = coco_caption.meteor(["two men play chess indoors"], refs)
    assert 50 < good <= 100 and 0 <= bad < 10
