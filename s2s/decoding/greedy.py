"""Greedy decoding, and the one-output-per-input loop it shares with sampling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from s2s.decoding.config import Constraints
from s2s.decoding.constraints import mask_log_probs_, max_lengths
from s2s.decoding.interface import Hypothesis, StepDecoder
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID


@torch.no_grad()
def greedy(
    model: StepDecoder,
    batch: Any,
    *,
    max_len_a: float = 0.0,
    max_len_b: int = 100,
    min_len: int = 0,
    no_repeat_ngram_size: int = 0,
) -> list[Hypothesis]:
    """The most probable token at every step: one hypothesis per batch item, in batch order.

    The options are those of :class:`~s2s.decoding.config.Constraints`. The normalized score is the
    score (no length penalty).
    """
    limits = Constraints(
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        min_len=min_len,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )
    state, src_lengths = model.start(batch)
    return decode_one_per_input(model, state, src_lengths, limits, lambda lp: lp.argmax(-1))


def decode_one_per_input(
    model: StepDecoder,
    state: Any,
    src_lengths: Tensor,
    limits: Constraints,
    choose: Callable[[Tensor], Tensor],
) -> list[Hypothesis]:
    """Extend each input by ``choose(masked log-probs (N, V)) -> tokens (N,)`` until EOS.

    Rows that emit EOS are dropped from the state, so finished inputs cost nothing.
    """
    batch_size, device = src_lengths.size(0), src_lengths.device
    max_lens = max_lengths(src_lengths, limits.max_len_a, limits.max_len_b)  # (B,)
    first_forced = int(max_lens.min())
    steps = int(max_lens.max()) + 1  # the last step can only emit EOS
    items = torch.arange(batch_size, device=device)  # (N,) batch item of each active row
    tokens = torch.full((batch_size,), BOS_ID, device=device)  # (N,)
    history = tokens.new_empty(batch_size, 0) if limits.no_repeat_ngram_size else None  # (N, t)
    outputs = torch.full((batch_size, steps), PAD_ID, device=device)  # (B, T)
    scores = torch.zeros(batch_size, device=device)  # (B,)
    attention = None  # (B, T, S) once the model returns attention
    for t in range(steps):
        log_probs, state, attn = model.step(tokens, state)
        log_probs = mask_log_probs_(
            log_probs.float(),
            t,
            min_len=limits.min_len,
            force_eos=max_lens[items] <= t if t >= first_forced else None,
            history=history,
            no_repeat_ngram_size=limits.no_repeat_ngram_size,
        )
        tokens = choose(log_probs)
        scores[items] += log_probs.gather(1, tokens[:, None]).squeeze(1)
        outputs[items, t] = tokens
        if attn is not None:
            if attention is None:
                attention = attn.new_zeros(batch_size, steps, attn.size(1))
            attention[items, t] = attn
        active = (tokens != EOS_ID).nonzero().squeeze(1)  # the one host sync per step
        if active.numel() == 0:
            break
        if active.numel() < items.numel():
            items, tokens, state = items[active], tokens[active], model.reorder(state, active)
            history = None if history is None else history[active]
        if history is not None:
            history = torch.cat([history, tokens[:, None]], 1)
    return _hypotheses(outputs, scores, attention, src_lengths)


def _hypotheses(
    outputs: Tensor, scores: Tensor, attention: Tensor | None, src_lengths: Tensor
) -> list[Hypothesis]:
    attention = None if attention is None else attention.cpu()
    hyps = []
    for i, (seq, score, src_len) in enumerate(
        zip(outputs.tolist(), scores.tolist(), src_lengths.tolist(), strict=True)
    ):
        n = seq.index(EOS_ID)
        attn = None if attention is None else attention[i, : n + 1, :src_len]
        hyps.append(Hypothesis(seq[:n], score, score, attn))
    return hyps
