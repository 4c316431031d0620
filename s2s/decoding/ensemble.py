"""Several models decoded as one (ensembling at each step, as fairseq and OpenNMT-py do).

:class:`Ensemble` implements the step interface over member models that implement it, so beam
search, greedy decoding and sampling ensemble without knowing it: each member keeps its own state,
and a step's distribution is the mean of the members' probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from s2s.decoding.interface import Layout, Step, StepDecoder


class Ensemble:
    """The members' average next-token distribution; members must share the target vocabulary.

    The attention of a step is the members' mean when every member returns attention of one
    shape (same source positions), else None.
    """

    def __init__(self, members: Sequence[StepDecoder]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = list(members)

    def start(self, batch: Any) -> tuple[list[Any], Tensor]:
        starts = [member.start(batch) for member in self.members]
        return [state for state, _ in starts], starts[0][1]

    def step(self, tokens: Tensor, state: list[Any]) -> Step:
        steps = [member.step(tokens, s) for member, s in zip(self.members, state, strict=True)]
        log_probs = torch.stack([s.log_probs for s in steps])  # (members, N, V)
        mean = torch.logsumexp(log_probs, dim=0) - math.log(len(steps))  # log of mean probability
        return Step(mean, [s.state for s in steps], _mean_attention([s.attention for s in steps]))

    def reorder(self, state: list[Any], index: Tensor, layout: Layout | None = None) -> list[Any]:
        return [m.reorder(s, index, layout) for m, s in zip(self.members, state, strict=True)]


def _mean_attention(attentions: list[Tensor | None]) -> Tensor | None:
    if any(a is None for a in attentions) or len({a.shape for a in attentions}) > 1:
        return None
    return torch.stack(attentions).mean(0)
