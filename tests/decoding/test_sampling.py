"""Sampling: seeded reproducibility, the filtered distribution, and its greedy limits."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from s2s.decoding import SamplingConfig, decode, greedy, sample
from s2s.decoding.sampling import filter_logits
from s2s.tokenizer import EOS_ID

A, B, C = 4, 5, 6  # scripted words; ids 0-3 are PAD, UNK, BOS, EOS


def test_a_seed_makes_sampling_reproducible_whatever_the_global_rng(
    random_model, random_sources
) -> None:
    model, make_batch = random_model(12, 1)
    batch = make_batch(random_sources(8, 12, 1))
    config = SamplingConfig(max_len_b=15, seed=7)
    torch.manual_seed(0)
    first = sample(model, batch, config)
    torch.manual_seed(1)
    rng = torch.get_rng_state()
    second = sample(model, batch, config)
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator is left alone
    assert [(h.tokens, h.score) for h in first] == [(h.tokens, h.score) for h in second]
    other = sample(model, batch, dataclasses.replace(config, seed=8))
    assert [h.tokens for h in other] != [h.tokens for h in first]


@pytest.mark.parametrize("options", [{"temperature": 1e-4}, {"top_k": 1}, {"top_p": 1e-6}])
@pytest.mark.parametrize("seed", [1, 2])
def test_sampling_without_choice_equals_greedy(random_model, random_sources, options, seed):
    model, make_batch = random_model(12, seed)
    batch = make_batch(random_sources(8, 12, seed))
    limits = {"max_len_b": 15, "min_len": 1, "no_repeat_ngram_size": 2}
    sampled = sample(model, batch, SamplingConfig(**limits, **options))
    expected = greedy(model, batch, **limits)
    assert [h.tokens for h in sampled] == [h.tokens for h in expected]
    assert [h.score for h in sampled] == pytest.approx([h.score for h in expected], abs=1e-5)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, [0.6, 0.3, 0.1]),
        ({"temperature": 2.0}, [0.473, 0.334, 0.193]),  # proportional to sqrt(p)
        ({"top_k": 2}, [2 / 3, 1 / 3, 0.0]),
        ({"top_p": 0.8}, [2 / 3, 1 / 3, 0.0]),  # A + B reach 0.8: C is outside the nucleus
        ({"top_p": 0.5}, [1.0, 0.0, 0.0]),
    ],
)
def test_samples_follow_the_tempered_filtered_distribution(scripted, options, expected) -> None:
    n = 2000
    hyps = sample(scripted(), [{(): {A: 0.6, B: 0.3, C: 0.1}}] * n, SamplingConfig(**options))
    frequencies = [sum(h.tokens == [word] for h in hyps) / n for word in (A, B, C)]
    assert frequencies == pytest.approx(expected, abs=0.035)
    assert {round(h.score, 5) for h in hyps if h.tokens == [A]} == {round(math.log(0.6), 5)}


def test_filter_logits_keeps_top_k_and_the_nucleus() -> None:
    log_probs = torch.tensor([[0.5, 0.2, 0.3]]).log()
    kept = filter_logits(log_probs, SamplingConfig(top_k=2)).isfinite()
    assert kept.tolist() == [[True, False, True]]
    kept = filter_logits(log_probs, SamplingConfig(top_p=0.75)).isfinite()
    assert kept.tolist() == [[True, False, True]]
    kept = filter_logits(log_probs, SamplingConfig(top_p=0.85)).isfinite()
    assert kept.tolist() == [[True, True, True]]


def test_num_samples_draws_each_item_as_often_as_repeating_it(scripted) -> None:
    """An item's samples are independent draws: as if the batch held it that many times."""
    scripts = [{(): {A: 0.5, B: 0.5}}, {(): {C: 0.5, EOS_ID: 0.5}}]
    config = SamplingConfig(seed=3, num_samples=50)
    repeated = sample(
        scripted(),
        [s for s in scripts for _ in range(50)],
        dataclasses.replace(config, num_samples=1),
    )
    hyps = sample(scripted(), scripts, config)
    assert [h.tokens for h in hyps] == [h.tokens for h in repeated]
    assert {tuple(h.tokens) for h in hyps[:50]} == {(A,), (B,)}
    assert {tuple(h.tokens) for h in hyps[50:]} == {(C,), ()}
    grouped = decode(scripted(), scripts, config)
    assert [[h.tokens for h in group] for group in grouped] == [
        [h.tokens for h in hyps[:50]],
        [h.tokens for h in hyps[50:]],
    ]
