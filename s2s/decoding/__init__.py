"""Decoding for every model that implements the step interface: greedy, beam search, sampling.

Validation, test, translation and captioning all decode through here; models only implement
:class:`~s2s.decoding.interface.StepDecoder`.
"""

from __future__ import annotations

from typing import Any

from s2s.decoding.beam import beam_search
from s2s.decoding.config import Constraints, SamplingConfig, SearchConfig
from s2s.decoding.forced import force_decode
from s2s.decoding.greedy import greedy
from s2s.decoding.interface import Hypothesis, Step, StepDecoder
from s2s.decoding.sampling import sample

__all__ = [
    "Constraints",
    "Hypothesis",
    "SamplingConfig",
    "SearchConfig",
    "Step",
    "StepDecoder",
    "beam_search",
    "decode",
    "force_decode",
    "greedy",
    "sample",
]


def decode(
    model: StepDecoder, batch: Any, config: SearchConfig | SamplingConfig
) -> list[list[Hypothesis]]:
    """Per batch item, its hypotheses: beam search's n-best (best first), or its samples."""
    if isinstance(config, SamplingConfig):
        hyps, n = sample(model, batch, config), config.num_samples
        return [hyps[i : i + n] for i in range(0, len(hyps), n)]
    return beam_search(model, batch, config)
