import math

import pytest

from s2s.cider import cider_d, ngrams

LEN_PENALTY_1 = math.exp(-1 / 72)  # Gaussian length penalty for a 1-bigram difference, sigma 6


def test_ngrams_lowercase_without_punctuation():
    assert ngrams("A dog, a DOG.", max_n=2) == {
        ("a",): 2,
        ("dog",): 2,
        ("a", "dog"): 2,
        ("dog", "a"): 1,
    }


def test_identical_two_word_captions():
    # Every n-gram occurs in one image's references of two: idf = log 2 for all of them.
    # Unigram and bigram cosines are 1, no 3- or 4-grams: (1 + 1 + 0 + 0) / 4 * 10 = 5.
    assert cider_d(["a b", "c d"], [["a b"], ["c d"]]) == pytest.approx(5.0)


def test_hand_computed_idf_clipping_and_length_penalty():
    # Image A: hypothesis "a b x" against "a b". With L = log 2, every n-gram weighs L (x is in no
    # reference: document frequency 0 counts as 1). Unigrams: dot 2L^2 over norms sqrt(3)L and
    # sqrt(2)L; bigrams {ab, bx} vs {ab}: L^2 over sqrt(2)L * L; the trigram has no reference
    # counterpart; 2 bigrams against 1 give the length penalty exp(-1 / 72).
    score_a = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * LEN_PENALTY_1
    assert cider_d(["a b x", "c d"], [["a b"], ["c d"]]) == pytest.approx((score_a + 5.0) / 2)


def test_words_in_every_image_weigh_nothing():
    # "a" is in both images' references: idf log 2 - log 2 = 0. Image B's hypothesis "a a" shares
    # only that word, so it scores 0; image A scores 5 as above.
    assert cider_d(["a b", "a a"], [["a b"], ["a c"]]) == pytest.approx(2.5)


def test_mean_over_references_and_case():
    one = cider_d(["A b.", "c d"], [["a b"], ["c d"]])
    two = cider_d(["a b", "c d"], [["a b", "e f"], ["c d"]])
    assert one == pytest.approx(5.0)
    assert two < one  # the unrelated second reference of image A scores 0 and halves its mean


def test_errors_and_empty():
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference sets"):
        cider_d(["a", "b"], [["a"]])
    assert cider_d([], []) == 0.0
