"""Forced decoding: hand-scripted probabilities give exact per-token scores, and on random models
(alone and ensembled) a beam's outputs score what the beam said."""

import math

import pytest

from s2s.decoding import SearchConfig, beam_search
from s2s.decoding.ensemble import Ensemble
from s2s.decoding.forced import force_decode
from s2s.tokenizer import EOS_ID

A, B, C = 4, 5, 6  # scripted words; ids 0-3 are PAD, UNK, BOS, EOS


def test_per_token_log_probs_end_with_eos_and_finished_rows_are_dropped(scripted):
    model = scripted()
    scripts = [
        {
            (): {A: 0.5, B: 0.25, EOS_ID: 0.25},
            (A,): {C: 0.8, EOS_ID: 0.2},
            (A, C): {EOS_ID: 0.9, A: 0.1},
        },
        {(): {B: 0.75, EOS_ID: 0.25}},
        {(): {B: 0.6, EOS_ID: 0.4}},  # after B, the unlisted prefix ends with certainty
    ]
    scores = force_decode(model, scripts, [[A, C], [], [B]])
    assert scores == [
        pytest.approx([math.log(0.5), math.log(0.8), math.log(0.9)]),
        pytest.approx([math.log(0.25)]),
        pytest.approx([math.log(0.6), 0.0]),
    ]
    assert model.rows == [3, 2, 1]  # each sentence leaves once its EOS is scored


def test_an_impossible_token_scores_minus_infinity(scripted):
    assert force_decode(scripted(), [{(): {A: 1.0}}], [[B]]) == [[-math.inf, 0.0]]


@pytest.mark.parametrize("ensemble", [False, True], ids=["model", "ensemble"])
def test_beam_outputs_score_what_the_beam_said(random_model, random_sources, ensemble):
    (first, make_batch), (second, _) = random_model(12, 0), random_model(12, 1)
    model = Ensemble([first, second]) if ensemble else first
    batch = make_batch(random_sources(8, 12, 3))
    search = SearchConfig(beam_size=3, n_best=3, max_len_b=12, length_penalty=1.0)
    for rank in range(3):
        hyps = [nbest[rank] for nbest in beam_search(model, batch, search)]
        forced = force_decode(model, batch, [hyp.tokens for hyp in hyps])
        assert [len(scores) for scores in forced] == [len(hyp.tokens) + 1 for hyp in hyps]
        assert [sum(scores) for scores in forced] == pytest.approx(
            [h.score for h in hyps], abs=1e-4
        )
