"""How finished hypotheses are ranked: GNMT length and coverage penalties.

Wu et al. (2016), "Google's Neural Machine Translation System", section 7.
"""

from __future__ import annotations

import torch
from torch import Tensor


def length_penalty(lengths: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT ``lp = ((5 + len) / 6) ** alpha`` for lengths counting EOS; ``score / lp`` ranks.

    Scores are log-probabilities (<= 0) and lp grows with length when alpha > 0, so dividing by it
    shrinks long hypotheses' penalties more: larger alpha favours longer outputs, 0 gives lp = 1.
    """
    return ((5.0 + lengths) / 6.0) ** alpha


def coverage_penalty(coverage: Tensor, src_lengths: Tensor, beta: float) -> Tensor:
    """GNMT ``beta * sum_j log(min(sum_t a_tj, 1))`` over real source positions j; always <= 0.

    coverage (N, S) holds the attention summed over steps; src_lengths (N,) excludes padding. Sums
    are floored at the smallest float so a never-attended position costs a large finite penalty.
    """
    padding = torch.arange(coverage.size(1), device=coverage.device) >= src_lengths[:, None]
    tiny = torch.finfo(coverage.dtype).tiny
    covered = coverage.clamp(tiny, 1.0).masked_fill(padding, 1.0)  # (N, S)
    return beta * covered.log().sum(1)
