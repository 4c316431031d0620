"""The step interface between models and decoding, and the decoding result type.

Any model that implements :class:`StepDecoder` (the translator, the captioner, the language model)
is decoded by the same functions in :mod:`s2s.decoding`; decoding never asks what model it has.
The contract follows fairseq's incremental decoding: encode once, then step the decoder one token
at a time, reordering the per-hypothesis state by index when beams are expanded or pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from torch import Tensor


class Step(NamedTuple):
    """What one decoder step returns; decoding owns ``log_probs`` and overwrites it in place."""

    log_probs: Tensor  # (N, V) normalised log-probabilities of the next token
    state: Any  # the state to pass to the next step
    attention: Tensor | None  # (N, S) weights over the S source positions, or None


@dataclass(frozen=True)
class Layout:
    """How the rows of a reordered state share the encoded sources, when the caller knows it.

    Rows ``j * group ... (j + 1) * group - 1`` all belong to source ``sources[j]``, an index into
    the sources of the state being reordered (None: the same sources, in order). Beam search
    keeps a sentence's beams together, so a model can hold one copy of each source's memory for
    all its beams instead of one per row.
    """

    group: int
    sources: Tensor | None = None


class StepDecoder(Protocol):
    """A model that decoding can drive one token at a time.

    ``state`` is opaque to decoding; only the model reads it. Its rows are hypotheses: row ``i``
    belongs to ``batch`` item ``i`` after :meth:`start`, and to ``index[i]`` after :meth:`reorder`.
    """

    def start(self, batch: Any) -> tuple[Any, Tensor]:
        """Encode ``batch`` once: the initial state (B rows) and the source lengths (B,).

        Source lengths are the number of attendable positions (tokens, image regions); decoding uses
        them for length-relative limits and to trim attention maps.
        """
        ...

    def step(self, tokens: Tensor, state: Any) -> Step:
        """Advance every row by one token: ``tokens`` (N,) are the previous tokens (BOS first)."""
        ...

    def reorder(self, state: Any, index: Tensor, layout: Layout | None = None) -> Any:
        """The state whose row ``i`` is row ``index[i]`` of ``state`` (index may repeat rows);
        ``layout`` says how the new rows group by source, where the caller keeps them grouped."""
        ...


@dataclass
class Hypothesis:
    """One decoded output sequence."""

    tokens: list[int]  # ids without BOS and EOS
    score: float  # total log-probability, EOS included
    normalized_score: float  # the score used for ranking (after the length penalty)
    attention: Tensor | None = None  # (len(tokens) + 1, source length): one row per step, EOS last
