import pytest
from sacrebleu.metrics import BLEU

from s2s.metrics import corpus_scores


def test_options_in_signatures():
    """s2s's choices of sacreBLEU options: cased 13a BLEU with exp smoothing, chrF (nc 6, nw 0)."""
    scores = corpus_scores(["a b c d"], [["a b c e"]])
    assert scores.bleu_signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
    assert scores.chrf_signature.startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|")


def test_variable_numbers_of_references_by_hand():
    """The second hypothesis matches its second reference; the first item has one reference."""
    scores = corpus_scores(["a b c d", "a b"], [["a b c e"], ["x y z", "a b"]])
    # Corpus n-gram matches: 5/6, 3/4, 1/2, 0/1 (smoothed to 1/2); closest reference lengths
    # 4 + 2 = hypothesis length: no brevity penalty.
    assert scores.bleu == pytest.approx((100 * 5 / 6 * 75 * 50 * 50) ** 0.25)
    assert scores.chrf == pytest.approx(100 * (5 / 6 + 3 / 4 + 1 / 2 + 0) / 4)
    assert scores.bleu_signature.startswith("nrefs:var|")


@pytest.mark.parametrize("refs", [[["a b c d"], ["x y z", "a b"]], [["a b c d"], ["a b", "x y z"]]])
def test_any_reference_may_match(refs):
    scores = corpus_scores(["a b c d", "a b"], refs)
    assert (scores.bleu, scores.chrf) == (pytest.approx(100), pytest.approx(100))


def test_report_shows_scores_and_signatures():
    text = str(corpus_scores(["a b c d"], [["a b c e"]]))
    assert text.startswith("BLEU = 59.46 (nrefs:1|")
    assert "\nchrF = 47.92 (nrefs:1|" in text


def test_lowercased_tokenized_bleu_is_sacrebleus():
    """Case and glued punctuation differ from the references: the literature's lowercased BLEU on
    13a-tokenized text forgives the case, cased BLEU does not."""
    hyps = ["A man in a blue T-Shirt, smiling.", "Two DOGS run on the grass!"]
    refs = [["a man in a blue t-shirt , smiles ."], ["Two dogs are running on grass !"]]
    scores = corpus_scores(hyps, refs)
    expected = BLEU(lowercase=True, tokenize="13a").corpus_score(hyps, [[r[0] for r in refs]])
    assert scores.bleu_lc_tok == pytest.approx(expected.score)
    assert scores.bleu_lc_tok > scores.bleu + 10
    assert scores.bleu_lc_tok_signature.startswith("nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|")
    assert f"\nBLEU lowercased = {expected.score:.2f} (nrefs:1|case:lc|" in str(scores)


def test_count_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference sets"):
        corpus_scores(["a", "b"], [["a"]])
