"""Per-step masks shared by every decoder: length limits, never-generated ids, n-gram blocking."""

from __future__ import annotations

import torch
from torch import Tensor

from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID


def max_lengths(src_lengths: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """Per input, the most tokens generated before EOS is forced: ``a * src_len + b`` (B,)."""
    return (max_len_a * src_lengths.float() + max_len_b).long()


def mask_log_probs_(
    log_probs: Tensor,
    step: int,
    *,
    min_len: int,
    force_eos: Tensor | None,
    history: Tensor | None,
    no_repeat_ngram_size: int,
) -> Tensor:
    """Mask ``log_probs`` (N, V) for output position ``step`` in place, and return it.

    PAD and BOS are never generated; EOS is forbidden before ``min_len``; tokens that would repeat
    an n-gram of ``history`` (N, step) are forbidden; rows where ``force_eos`` (N,) is set may only
    emit EOS, at its unmasked log-probability (the length limit wins over ``min_len``).
    """
    eos = log_probs[:, EOS_ID].clone() if force_eos is not None else None
    log_probs[:, PAD_ID] = -torch.inf
    log_probs[:, BOS_ID] = -torch.inf
    if step < min_len:
        log_probs[:, EOS_ID] = -torch.inf
    if no_repeat_ngram_size and history is not None:
        block_repeated_ngrams(log_probs, history, no_repeat_ngram_size)
    if force_eos is not None:
        log_probs.masked_fill_(force_eos[:, None], -torch.inf)
        log_probs[:, EOS_ID] = torch.where(force_eos, eos, log_probs[:, EOS_ID])
    return log_probs


def block_repeated_ngrams(log_probs: Tensor, history: Tensor, n: int) -> None:
    """Set to -inf, in place, each token that would complete an n-gram already in ``history``."""
    length = history.size(1)
    if length < n:
        return
    ngrams = history.unfold(1, n, 1)  # (N, length - n + 1, n)
    suffix = history[:, length - n + 1 :]  # (N, n - 1): the n-gram being continued
    seen = (ngrams[..., :-1] == suffix[:, None]).all(-1)  # (N, length - n + 1)
    banned = torch.zeros_like(seen, dtype=log_probs.dtype).masked_fill_(seen, -torch.inf)
    log_probs.scatter_add_(1, ngrams[..., -1], banned)
