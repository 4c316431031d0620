"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering.

Holtzman et al. (2020), "The Curious Case of Neural Text Degeneration" (top-p).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from s2s.decoding.config import SamplingConfig
from s2s.decoding.greedy import decode_one_per_input
from s2s.decoding.interface import Hypothesis, Layout, StepDecoder


@torch.no_grad()
def sample(model: StepDecoder, batch: Any, config: SamplingConfig) -> list[Hypothesis]:
    """``config.num_samples`` sampled outputs per batch item, in batch order (an item's samples
    consecutive): each item's state is repeated that many times, so its rows sample independently.

    The score is the model's log-probability of the sample (before temperature and filtering); the
    normalized score equals it. A generator seeded from ``config.seed`` makes calls reproducible.
    """
    state, src_lengths = model.start(batch)
    if config.num_samples > 1:
        rows = torch.arange(src_lengths.size(0), device=src_lengths.device)
        rows = rows.repeat_interleave(config.num_samples)
        # An input's samples are consecutive rows: they can share its encoding.
        state = model.reorder(state, rows, Layout(config.num_samples))
        src_lengths = src_lengths[rows]
    generator = torch.Generator(src_lengths.device).manual_seed(config.seed)

    def choose(log_probs: Tensor) -> Tensor:
        probs = filter_logits(log_probs, config).softmax(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return decode_one_per_input(model, state, src_lengths, config, choose)


def filter_logits(log_probs: Tensor, config: SamplingConfig) -> Tensor:
    """Tempered logits (N, V) with the tokens outside top-k and the top-p nucleus set to -inf."""
    logits = log_probs / config.temperature
    if config.top_k:
        kth_best = logits.topk(min(config.top_k, logits.size(1)), 1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth_best, -torch.inf)
    if config.top_p < 1:
        sorted_logits, order = logits.sort(1, descending=True)  # (N, V)
        probs = sorted_logits.softmax(1)
        outside = probs.cumsum(1) - probs >= config.top_p  # mass before the token reaches top_p
        logits = logits.scatter(1, order, sorted_logits.masked_fill(outside, -torch.inf))
    return logits
