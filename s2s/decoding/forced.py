"""Forced decoding: the model's log-probabilities of given outputs, for reranking and filtering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from s2s.decoding.interface import StepDecoder
from s2s.tokenizer import BOS_ID, EOS_ID


@torch.no_grad()
def force_decode(
    model: StepDecoder, batch: Any, targets: Sequence[Sequence[int]]
) -> list[list[float]]:
    """Per batch item, the log-probability of each token of its target (ids without BOS and EOS)
    and then of EOS, as the model assigns them one step at a time; their sum is the target's score.

    No decoding constraint applies (length limits, ``min_len``, n-gram blocking): these are the
    model's own probabilities, which a beam search's :attr:`Hypothesis.score` also sums. Rows whose
    target has ended are dropped from the state, so the batch shrinks as it goes.
    """
    state, src_lengths = model.start(batch)
    device = src_lengths.device
    lengths = torch.tensor([len(t) + 1 for t in targets], device=device)  # EOS included
    forced = torch.full((len(targets), int(lengths.max())), EOS_ID, device=device)  # (B, T)
    for i, target in enumerate(targets):
        forced[i, : len(target)] = torch.tensor(target, dtype=torch.long)
    scores = torch.zeros(forced.shape, device=device)  # (B, T)
    items = torch.arange(len(targets), device=device)  # (N,) batch item of each active row
    tokens = torch.full((len(targets),), BOS_ID, device=device)  # (N,)
    for t in range(forced.size(1)):
        step = model.step(tokens, state)
        state, tokens = step.state, forced[items, t]
        scores[items, t] = step.log_probs.float().gather(1, tokens[:, None]).squeeze(1)
        active = (lengths[items] > t + 1).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        if active.numel() < items.numel():
            items, tokens, state = items[active], tokens[active], model.reorder(state, active)
    return [row[:n] for row, n in zip(scores.tolist(), lengths.tolist(), strict=True)]
