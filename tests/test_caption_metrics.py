import pytest

from s2s.metrics import bleu_n, corpus_scores, exact_match

HYPS = ["a man rides a red bike on the road", "two dogs play in the park"]
REFS = [["a man rides a bike on the road", "a man on a red bike"], ["two dogs play in a park"]]


def test_bleu4_is_corpus_bleu_and_orders_decrease():
    b1, b2, b3, b4 = bleu_n(HYPS, REFS)
    assert b4 == pytest.approx(corpus_scores(HYPS, REFS).bleu)
    assert b1 > b2 > b3 > b4 > 0


def test_bleu1_of_words_all_in_references():
    # Every word is in the reference, same length: unigram precision 1 and no brevity penalty.
    assert bleu_n(["b a"], [["a b"]], max_order=1) == pytest.approx([100.0])


def test_references_per_item_may_differ_in_number():
    assert bleu_n(["a b c d"], [["a b c d"]])[3] == pytest.approx(100.0)
    assert bleu_n(["a b c d", "e f g h"], [["a b c d", "x"], ["e f g h"]])[3] == pytest.approx(
        100.0
    )


def test_exact_match():
    assert exact_match(["a  b", "c"], [["x", "a b"], ["d"]]) == 50.0
    with pytest.raises(ValueError):
        exact_match(["a"], [])
