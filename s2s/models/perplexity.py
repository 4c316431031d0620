"""The evaluation NLL per token and perplexity that every generating model logs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

MAX_LOG_PPL = 50.0  # exp of a larger mean NLL overflows a float


class TokenNLL(Metric):
    """Summed negative log-likelihood and token count over an epoch, summed across DDP ranks;
    :meth:`compute` gives the mean NLL per token."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor, ignore_index: int = -100) -> None:
        """Adds the NLL of ``target`` (N,) under ``logits`` (N, V); ``ignore_index`` positions
        (padding) count neither."""
        nll = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
        self.nll += nll.detach()
        self.tokens += (target != ignore_index).sum()

    def compute(self) -> Tensor:
        return self.nll / self.tokens.clamp(min=1)

    def logs(self, stage: str) -> dict[str, float]:
        """``{stage}/loss`` (mean NLL per token) and ``{stage}/ppl`` (its exp)."""
        loss = float(self.compute())
        return {f"{stage}/loss": loss, f"{stage}/ppl": math.exp(min(loss, MAX_LOG_PPL))}
