"""Ensembles through the shared decoding: one member is the model, two copies are the model, beam
1 is greedy, and each step is the mean of the members' probabilities."""

import torch
from test_beam import compare

from s2s.decoding import SearchConfig, beam_search, greedy
from s2s.decoding.ensemble import Ensemble
from s2s.tokenizer import BOS_ID

SEARCH = SearchConfig(beam_size=3, n_best=3, max_len_b=12, length_penalty=1.0)


def test_an_ensemble_of_one_is_the_model_exactly(random_model, random_sources):
    model, make_batch = random_model(12, 0)
    batch = make_batch(random_sources(8, 12, 0))
    for alone, ensembled in zip(
        beam_search(model, batch, SEARCH),
        beam_search(Ensemble([model]), batch, SEARCH),
        strict=True,
    ):
        assert [(h.tokens, h.score) for h in alone] == [(h.tokens, h.score) for h in ensembled]


def test_two_copies_are_the_model(random_model, random_sources):
    model, make_batch = random_model(12, 1)
    batch = make_batch(random_sources(8, 12, 1))
    for alone, ensembled in zip(
        beam_search(model, batch, SEARCH),
        beam_search(Ensemble([model, model]), batch, SEARCH),
        strict=True,
    ):
        compare(alone, ensembled)


def test_beam_one_is_greedy_for_an_ensemble(random_model, random_sources):
    (first, make_batch), (second, _) = random_model(12, 0), random_model(12, 1)
    ensemble, batch = Ensemble([first, second]), make_batch(random_sources(8, 12, 2))
    beams = beam_search(ensemble, batch, SearchConfig(beam_size=1, max_len_b=12))
    compare([hyps[0] for hyps in beams], greedy(ensemble, batch, max_len_b=12))


@torch.no_grad()
def test_a_step_is_the_mean_of_the_members_probabilities(random_model, random_sources):
    (first, make_batch), (second, _) = random_model(12, 0), random_model(12, 1)
    batch = make_batch(random_sources(4, 12, 3))
    ensemble = Ensemble([first, second])
    state, _ = ensemble.start(batch)
    tokens = torch.full((4,), BOS_ID)
    for _ in range(3):  # a few steps, so that each member's own state must be carried
        step = ensemble.step(tokens, state)
        members = [m.step(tokens, s) for m, s in zip(ensemble.members, state, strict=True)]
        expected = (members[0].log_probs.exp() + members[1].log_probs.exp()) / 2
        torch.testing.assert_close(step.log_probs.exp(), expected)
        assert not torch.allclose(members[0].log_probs, members[1].log_probs)
        tokens, state = step.log_probs.argmax(1), step.state
