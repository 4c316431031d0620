"""The step interface's contract, checked on every model of the ``random_model`` fixture."""

from __future__ import annotations

import pytest
import torch

from s2s.tokenizer import BOS_ID

ROWS = [
    [1, 0, 3, 2, 5, 4],  # beams reordered within their source
    [0, 0, 1, 1, 4, 4],  # beams of a source repeated
    [4, 5, 0, 1, 2, 3],  # sources permuted
    [1, 2, 3, 4, 5, 0],  # beams moved across sources
    [4, 5, 0, 1],  # a source dropped
    [5, 0, 2, 2, 3],  # anything
    [3],
]


@pytest.mark.parametrize("index", ROWS, ids=str)
def test_reorder_takes_any_rows(random_model, random_sources, index) -> None:
    """Stepping the reordered state equals reordering the stepped rows, for two steps."""
    model, make_batch = random_model(12, 0)
    state, _ = model.start(make_batch(random_sources(3, 12, 5)))
    state = model.reorder(state, torch.arange(3).repeat_interleave(2))  # two beams per source
    state = model.step(torch.full((6,), BOS_ID), state).state
    index = torch.tensor(index)
    picked = model.reorder(state, index)
    whole = state
    for tokens in (torch.tensor([4, 5, 6, 7, 8, 9]), torch.tensor([9, 8, 7, 6, 5, 4])):
        picked_step = model.step(tokens[index], picked)
        whole_step = model.step(tokens, whole)
        torch.testing.assert_close(picked_step.log_probs, whole_step.log_probs[index])
        torch.testing.assert_close(picked_step.attention, whole_step.attention[index])
        picked, whole = picked_step.state, whole_step.state
