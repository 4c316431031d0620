"""Beam search on hand-scripted probabilities, and its invariants on tiny random models."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from tiny import load_tool

from s2s.decoding import Hypothesis, SearchConfig, beam_search, greedy
from s2s.decoding.beam import top_extensions
from s2s.decoding.interface import StepDecoder
from s2s.decoding.scoring import length_penalty
from s2s.tokenizer import BOS_ID, EOS_ID, UNK_ID

A, B, C = 4, 5, 6  # scripted words; ids 0-3 are PAD, UNK, BOS, EOS

# Greedy takes A (0.5) and then ends: 0.5 * 0.4 = 0.2. Beam 2 also keeps B and finds B EOS = 0.36.
GREEDY_TRAP = {
    (): {A: 0.5, B: 0.4, EOS_ID: 0.1},
    (A,): {EOS_ID: 0.4, A: 0.35, B: 0.25},
    (B,): {EOS_ID: 0.9, A: 0.1},
}


def summary(hyps: list[Hypothesis]) -> list[tuple[list[int], float, float]]:
    return [(h.tokens, round(h.score, 5), round(h.normalized_score, 5)) for h in hyps]


def logs(*probs: float) -> float:
    return round(sum(map(math.log, probs)), 5)


def test_beam_two_beats_greedy_and_stops_once_unbeatable(scripted) -> None:
    model = scripted()
    assert summary(greedy(model, [GREEDY_TRAP])) == [([A], logs(0.5, 0.4), logs(0.5, 0.4))]

    model = scripted()
    [hyps] = beam_search(model, [GREEDY_TRAP], SearchConfig(beam_size=2, n_best=2))
    assert summary(hyps) == [
        ([B], logs(0.4, 0.9), logs(0.4, 0.9)),
        ([A], logs(0.5, 0.4), logs(0.5, 0.4)),
    ]
    assert hyps[0].attention.tolist() == [[0.5, 0.5], [0.5, 0.5]]  # one row per step, EOS last
    # One row until the beams expand; after step 2 the best active beam (A A: 0.175) cannot beat
    # the 2nd finished one (0.2).
    assert model.rows == [1, 2]


def test_beam_size_one_follows_greedy_on_the_script(scripted) -> None:
    [hyps] = beam_search(scripted(), [GREEDY_TRAP], SearchConfig(beam_size=1))
    assert summary(hyps) == summary(greedy(scripted(), [GREEDY_TRAP]))


def test_larger_length_penalty_favours_longer_outputs(scripted) -> None:
    # [] 0.4 | [A] 0.6 * 0.6 = 0.36 | [A A] 0.6 * 0.4 = 0.24 (lengths 1, 2, 3 counting EOS)
    script = {(): {EOS_ID: 0.4, A: 0.6}, (A,): {EOS_ID: 0.6, A: 0.4}}
    lengths = []
    for alpha in (0.0, 0.5, 1.0, 2.0, 5.0):
        config = SearchConfig(beam_size=2, max_len_b=5, length_penalty=alpha)
        [[best]] = beam_search(scripted(), [script], config)
        lengths.append(len(best.tokens))
        if alpha == 1.0:
            assert best.score == pytest.approx(math.log(0.36), abs=1e-5)
            assert best.normalized_score == pytest.approx(math.log(0.36) / (7 / 6), abs=1e-5)
    assert lengths == [0, 0, 1, 1, 2]


def test_length_penalty_is_gnmt() -> None:
    assert length_penalty(torch.tensor([1.0, 7.0]), 1.0).tolist() == pytest.approx([1.0, 2.0])
    assert length_penalty(3, 0.0) == 1.0


def test_min_len_forbids_early_eos(scripted) -> None:
    script = {(): {EOS_ID: 0.9, A: 0.1}}
    assert greedy(scripted(), [script])[0].tokens == []
    assert greedy(scripted(), [script], min_len=1)[0].tokens == [A]
    config = SearchConfig(beam_size=2, min_len=1)
    [[best]] = beam_search(scripted(), [script], config)
    assert summary([best]) == [([A], logs(0.1), logs(0.1))]


def test_no_repeat_ngram_blocks_the_repeat(scripted) -> None:
    # A B A B EOS (0.58) repeats the bigram A B; blocked, A B A C EOS (0.109) beats [] EOS (0.1).
    script = {
        (): {A: 0.9, EOS_ID: 0.1},
        (A,): {B: 0.9, EOS_ID: 0.1},
        (A, B): {A: 0.9, EOS_ID: 0.1},
        (A, B, A): {B: 0.8, C: 0.15, EOS_ID: 0.05},
    }
    for ngram, expected in ((0, [A, B, A, B]), (2, [A, B, A, C])):
        assert greedy(scripted(), [script], no_repeat_ngram_size=ngram)[0].tokens == expected
        config = SearchConfig(beam_size=2, no_repeat_ngram_size=ngram)
        assert beam_search(scripted(), [script], config)[0][0].tokens == expected


def test_coverage_penalty_prefers_the_output_that_covers_the_source(scripted) -> None:
    # [A] is likelier but attends only 0.1 to source position 2; [B] covers both positions.
    script = {(): {A: 0.55, B: 0.45}}
    attention = {(): [1.0, 0.0], (A,): [0.9, 0.1], (B,): [0.0, 1.0]}
    without = SearchConfig(beam_size=2, n_best=2)
    with_beta = SearchConfig(beam_size=2, n_best=2, coverage_penalty=0.2)
    [hyps] = beam_search(scripted(attention), [script], without)
    assert [h.tokens for h in hyps] == [[A], [B]]
    [hyps] = beam_search(scripted(attention), [script], with_beta)
    assert summary(hyps) == [
        ([B], logs(0.45), logs(0.45)),
        ([A], logs(0.55), round(math.log(0.55) + 0.2 * math.log(0.1), 5)),
    ]
    assert hyps[0].attention.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_max_length_forces_eos_and_scales_with_the_source(scripted) -> None:
    script = {(A,) * i: {A: 0.9, EOS_ID: 0.1} for i in range(10)}
    model = scripted(src_lengths=[2])
    [hyp] = greedy(model, [script], max_len_a=1.5, max_len_b=0)
    assert summary([hyp]) == [([A] * 3, logs(0.9, 0.9, 0.9, 0.1), logs(0.9, 0.9, 0.9, 0.1))]
    config = SearchConfig(beam_size=2, max_len_b=2, min_len=2)
    [[best]] = beam_search(scripted(), [script], config)
    assert best.tokens == [A, A]


def test_finished_sentences_leave_the_batch(scripted) -> None:
    certain_a = {(A,) * i: {A: 1.0} for i in range(3)}  # ends after A A A, at step 4
    model = scripted()
    results = beam_search(model, [GREEDY_TRAP, certain_a], SearchConfig(beam_size=2))
    assert [hyps[0].tokens for hyps in results] == [[B], [A, A, A]]
    assert model.rows == [2, 4, 2, 2]


# Invariants on tiny random models.


def compare(left: list[Hypothesis], right: list[Hypothesis]) -> None:
    assert [h.tokens for h in left] == [h.tokens for h in right]
    for a, b in zip(left, right, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.normalized_score == pytest.approx(b.normalized_score, abs=1e-5)
        torch.testing.assert_close(a.attention, b.attention, atol=1e-5, rtol=0)


@torch.no_grad()
def log_prob(model: StepDecoder, batch: Any, tokens: list[int]) -> float:
    """log P(tokens + EOS) for the one input of ``batch``, by teacher forcing."""
    state, _ = model.start(batch)
    total = 0.0
    for prev, nxt in zip([BOS_ID, *tokens], [*tokens, EOS_ID], strict=True):
        log_probs, state, _ = model.step(torch.tensor([prev]), state)
        total += float(log_probs[0, nxt])
    return total


@pytest.mark.parametrize(
    "options",
    [
        {"max_len_b": 20},
        {"max_len_b": 20, "min_len": 3, "no_repeat_ngram_size": 2},
        {"max_len_a": 1.0, "max_len_b": 1},
    ],
)
@pytest.mark.parametrize(("vocab", "seed"), [(12, 0), (12, 1), (200, 0)])  # 200: 3 blocks + 8
def test_beam_size_one_equals_greedy(random_model, random_sources, options, vocab, seed) -> None:
    model, make_batch = random_model(vocab, seed)
    batch = make_batch(random_sources(8, 12, seed))
    beams = beam_search(model, batch, SearchConfig(beam_size=1, **options))
    compare([hyps[0] for hyps in beams], greedy(model, batch, **options))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_the_exhaustive_ranking(random_model, random_sources, alpha, seed) -> None:
    """Over words {UNK, 4, 5} + EOS and at most 3 words, a beam of 4**3 sees every sequence."""
    model, make_batch = random_model(6, seed)
    batch = make_batch(random_sources(1, 6, seed))
    sequences = [list(s) for n in range(4) for s in itertools.product((UNK_ID, 4, 5), repeat=n)]
    ranked = sorted(
        ((log_prob(model, batch, s) / ((5 + len(s) + 1) / 6) ** alpha, s) for s in sequences),
        reverse=True,
    )
    config = SearchConfig(beam_size=64, n_best=len(sequences), max_len_b=3, length_penalty=alpha)
    [hyps] = beam_search(model, batch, config)
    assert [h.tokens for h in hyps] == [s for _, s in ranked]
    assert [h.normalized_score for h in hyps] == pytest.approx([n for n, _ in ranked], abs=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"beam_size": 3, "length_penalty": 0.0, "max_len_b": 10},
        {"beam_size": 5, "length_penalty": 1.0, "max_len_a": 1.5, "max_len_b": 2},
        {"beam_size": 4, "length_penalty": 0.6, "min_len": 2, "max_len_b": 8},
    ],
)
@pytest.mark.parametrize(("vocab", "seed"), [(12, 0), (12, 1), (200, 2)])
def test_batched_search_finds_what_the_plain_one_sentence_search_finds(
    random_model, random_sources, options, vocab, seed
) -> None:
    """Differential oracle: tools/bench_decode.py's reference, one sentence at a time with its
    beams in Python lists, against the batched search over a batch of varied sources."""
    reference = load_tool("bench_decode").reference_beam_search
    model, make_batch = random_model(vocab, seed)
    sources = random_sources(6, 12, seed)
    config = SearchConfig(**options)
    batched = beam_search(model, make_batch(sources), config)
    for src, hyps in zip(sources, batched, strict=True):
        plain = reference(model, make_batch([src]), config)
        assert hyps[0].tokens == plain.tokens
        assert hyps[0].score == pytest.approx(plain.score, abs=1e-5)
        assert hyps[0].normalized_score == pytest.approx(plain.normalized_score, abs=1e-5)


@pytest.mark.parametrize("vocab", [12, 128])
def test_a_sentence_decodes_the_same_alone_and_in_a_padded_batch(
    random_model, random_sources, vocab
) -> None:
    model, make_batch = random_model(vocab, 0)
    sources = random_sources(6, 12, 3)
    config = SearchConfig(
        beam_size=4,
        n_best=3,
        max_len_a=1.5,
        max_len_b=3,
        length_penalty=0.8,
        coverage_penalty=0.3,
        no_repeat_ngram_size=2,
    )
    batched = beam_search(model, make_batch(sources), config)
    _, src_lengths = model.start(make_batch(sources))  # a translator's sources end with EOS
    for src, src_len, hyps in zip(sources, src_lengths.tolist(), batched, strict=True):
        compare(hyps, beam_search(model, make_batch([src]), config)[0])
        assert len(hyps) == 3
        norms = [h.normalized_score for h in hyps]
        assert norms == sorted(norms, reverse=True)
        for h in hyps:
            assert h.attention.shape == (len(h.tokens) + 1, src_len)
            assert len(h.tokens) <= 1.5 * src_len + 3
    greedy_batched = greedy(model, make_batch(sources), max_len_b=10)
    for src, hyp in zip(sources, greedy_batched, strict=True):
        compare([hyp], greedy(model, make_batch([src]), max_len_b=10))


@pytest.mark.parametrize(
    ("vocab", "width", "k"),
    [(5, 1, 3), (5, 2, 12), (64, 3, 3), (200, 1, 5), (200, 4, 4), (256, 5, 5), (8000, 5, 5)],
)
def test_top_extensions_equal_the_full_top_k(vocab, width, k) -> None:
    """Block maxima find the same k best extensions as a top-k over every sum, also with -inf
    entries (masked tokens, dead beams) and vocabularies that are not a whole number of blocks."""
    gen = torch.Generator().manual_seed(vocab + width + k)
    log_probs = torch.randn(3, width, vocab, generator=gen) * 3
    log_probs[0, :, 1:] = -torch.inf  # one finite extension per row
    log_probs[1].view(-1)[torch.randperm(width * vocab, generator=gen)[: vocab // 2]] = -torch.inf
    scores = -torch.rand(3, width, generator=gen) * 4
    scores[2, -1] = -torch.inf
    full = (scores[..., None] + log_probs).flatten(1)
    if full.size(1) < k:
        full = torch.nn.functional.pad(full, (0, k - full.size(1)), value=-torch.inf)
    expected = full.topk(k, 1)
    values, indices = top_extensions(log_probs.clone(), scores, k)
    assert torch.equal(values, expected.values)
    assert bool((indices < width * vocab).all())
    finite = values > -torch.inf  # ties among -inf may pick any index
    assert torch.equal(indices[finite], expected.indices[finite])
