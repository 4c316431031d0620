"""Attention over a memory of encoder states (source tokens or image regions).

Each module scores queries against precomputed keys and returns the context vector (the weighted
average of the memory) and the weights. Keys depend only on the memory, so decoding computes them
once per source with :meth:`Attention.keys` and reuses them at every step.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

AttentionType = Literal["none", "bahdanau", "luong_dot", "luong_general"]

_BLOCK = 1 << 20  # elements of Bahdanau's query x key sum built at once: 4 MiB in fp32


class Attention(nn.Module):
    """Base class: ``forward`` works for one query per row (N, Hq) or many (N, T, Hq)."""

    def keys(self, memory: Tensor) -> Tensor:
        """The query-independent part of the scores, once per memory: (N, S, Hm) -> (N, S, *)."""
        raise NotImplementedError

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """Unnormalised scores (N, T, Hq), (N, S, *) -> (N, T, S)."""
        raise NotImplementedError

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Context (N, [T,] Hm) and weights (N, [T,] S); ``mask`` (N, S) is True where real."""
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)  # (N, 1, Hq)
        scores = self.scores(query, keys).masked_fill(~mask.unsqueeze(1), -torch.inf)
        weights = torch.softmax(scores, dim=-1)  # (N, T, S)
        context = torch.bmm(weights, memory)  # (N, T, Hm)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


class BahdanauAttention(Attention):
    """Additive attention: v^T tanh(W_q q + W_k k).

    Bahdanau, Cho & Bengio (2015), "Neural Machine Translation by Jointly Learning to Align and
    Translate".
    """

    def __init__(self, query_size: int, memory_size: int, hidden_size: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(memory_size, hidden_size, bias=False)
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)
        self.energy = nn.Linear(hidden_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (N, S, A)

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        q = 2 * self.query_proj(query).unsqueeze(2)  # (N, T, 1, A)
        k = 2 * keys.unsqueeze(1)  # (N, 1, S, A)
        # The (N, T, S, A) sum is the largest tensor of a step: built a block of rows at a time,
        # each block stays in cache from the sum to the energy projection.
        rows = max(1, _BLOCK // (q.size(1) * k.size(2) * q.size(3)))
        blocks = [self._energy(qb, kb) for qb, kb in zip(q.split(rows), k.split(rows), strict=True)]
        return torch.cat(blocks) if len(blocks) > 1 else blocks[0]  # (N, T, S)

    def _energy(self, q: Tensor, k: Tensor) -> Tensor:
        """v^T tanh(q/2 + k/2) for doubled projections ``q`` (n, T, 1, A), ``k`` (n, 1, S, A).

        tanh(x) = 2 sigmoid(2x) - 1, in place on the sum: on CPU several times faster than
        torch.tanh of it.
        """
        hidden = torch.add(q, k).sigmoid_()  # (n, T, S, A)
        return 2 * self.energy(hidden).squeeze(-1) - self.energy.weight.sum()  # (n, T, S)


class LuongDotAttention(Attention):
    """Multiplicative attention q^T k, for queries and memory of the same size.

    Luong, Pham & Manning (2015), "Effective Approaches to Attention-based Neural Machine
    Translation" ("dot").
    """

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        if query_size != memory_size:
            raise ValueError(
                f"luong_dot attention needs equal decoder ({query_size}) and encoder output "
                f"({memory_size}) sizes; use luong_general or bahdanau otherwise"
            )

    def keys(self, memory: Tensor) -> Tensor:
        return memory

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # (N, T, S)


class LuongGeneralAttention(LuongDotAttention):
    """Bilinear attention q^T W k (Luong et al. 2015, "general"); W k is precomputed as the keys."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        nn.Module.__init__(self)
        self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (N, S, Hq)


def make_attention(kind: AttentionType, query_size: int, memory_size: int) -> Attention | None:
    """The attention module for ``kind``; None for ``"none"`` (a fixed context vector)."""
    if kind == "none":
        return None
    if kind == "bahdanau":
        return BahdanauAttention(query_size, memory_size, hidden_size=query_size)
    if kind == "luong_dot":
        return LuongDotAttention(query_size, memory_size)
    if kind == "luong_general":
        return LuongGeneralAttention(query_size, memory_size)
    raise ValueError(
        f"unknown attention {kind!r}; expected none, bahdanau, luong_dot, luong_general"
    )
