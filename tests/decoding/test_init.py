"""decode() dispatches on the type of its options."""

from __future__ import annotations

from s2s.decoding import Hypothesis, SamplingConfig, SearchConfig, beam_search, decode, sample
from s2s.tokenizer import EOS_ID

A, B = 4, 5
SCRIPT = {(): {A: 0.5, B: 0.4, EOS_ID: 0.1}, (A,): {EOS_ID: 0.4, A: 0.6}}


def tokens(results: list[list[Hypothesis]]) -> list[list[list[int]]]:
    return [[h.tokens for h in hyps] for hyps in results]


def test_decode_runs_beam_search_or_sampling(scripted) -> None:
    search = SearchConfig(beam_size=2, n_best=2)
    expected = beam_search(scripted(), [SCRIPT] * 2, search)
    assert tokens(decode(scripted(), [SCRIPT] * 2, search)) == tokens(expected)
    assert tokens(expected) == [[[B], [A, A]]] * 2
    sampling = SamplingConfig(seed=3)
    expected = [[h] for h in sample(scripted(), [SCRIPT] * 2, sampling)]
    assert tokens(decode(scripted(), [SCRIPT] * 2, sampling)) == tokens(expected)
