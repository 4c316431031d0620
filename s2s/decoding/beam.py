"""Batched beam search: all sentences and all their beams advance together as tensors.

Rows are sentence-major: the ``k = beam_size`` beams of active sentence ``i`` are rows
``i * k ... i * k + k - 1`` (at the first step, where the k beams are one, each sentence is one
row, so the encoder's state is stepped once before it is expanded). At each step the best ``k``
extensions of a sentence are kept; those that end in EOS become finished hypotheses, and the
active beams are the best ``k`` extensions that do not. A sentence stops once no active beam can
beat its ``n_best``-th finished hypothesis (see :func:`best_possible`); stopped sentences are
dropped from the state, and the batch stops when all have. Outputs are rebuilt once at the end
from per-step back-pointers (:class:`_Trail`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from s2s.decoding.config import SearchConfig
from s2s.decoding.constraints import mask_log_probs_, max_lengths
from s2s.decoding.interface import Hypothesis, Layout, StepDecoder
from s2s.decoding.scoring import coverage_penalty, length_penalty
from s2s.tokenizer import BOS_ID, EOS_ID

_VOCAB_BLOCK = 64  # vocabulary entries per block in top_extensions


@torch.no_grad()
def beam_search(model: StepDecoder, batch: Any, config: SearchConfig) -> list[list[Hypothesis]]:
    """Per batch item, up to ``config.n_best`` hypotheses, best normalized score first."""
    k = config.beam_size
    state, src_lengths = model.start(batch)
    batch_size, device = src_lengths.size(0), src_lengths.device
    # Per active sentence (Ba, ...); rows (Ba * w, ...), w = 1 at the first step, then k.
    items = torch.arange(batch_size, device=device)
    src_lens = src_lengths
    max_lens = max_lengths(src_lengths, config.max_len_a, config.max_len_b)
    scores = torch.full((batch_size, k), -torch.inf, device=device)
    scores[:, 0] = 0.0  # the k beams start identical: expand only one
    best = _Finished.empty(batch_size, config.n_best, device)
    tokens = torch.full((batch_size,), BOS_ID, device=device)
    parents = torch.full((batch_size,), -1, device=device)
    history = tokens.new_empty(batch_size, 0) if config.no_repeat_ngram_size else None
    coverage = None  # (Ba * w, S) attention summed over steps, for the coverage penalty

    trail, done_items, done_best = _Trail(), [], []
    first_forced = int(max_lens.min())
    for t in range(int(max_lens.max()) + 1):
        width = tokens.numel() // items.numel()  # rows per sentence
        log_probs, state, attn = model.step(tokens, state)
        offset = trail.add(tokens, parents, attn)
        if config.coverage_penalty:
            if attn is None:
                raise ValueError("coverage_penalty needs a model whose step returns attention")
            coverage = attn.float() if coverage is None else coverage + attn
        log_probs = mask_log_probs_(
            log_probs.float(),
            t,
            min_len=config.min_len,
            force_eos=(max_lens <= t).repeat_interleave(width) if t >= first_forced else None,
            history=history,
            no_repeat_ngram_size=config.no_repeat_ngram_size,
        )
        eos_scores, scores, rows, tokens = _extend(log_probs, scores)
        best = best.add(_finished(eos_scores, scores, t, offset, coverage, src_lens, config))

        stopped = best_possible(scores, max_lens, config.length_penalty) <= best.norm[:, -1]
        active = (~stopped).nonzero().squeeze(1)  # the one host sync per step
        sources = None  # the state's sentences, unless some stop
        if active.numel() < items.numel():
            sources = active
            done_items.append(items[stopped])
            done_best.append(best[stopped])
            if active.numel() == 0:
                break
            items, src_lens, max_lens, scores, best = (
                x[active] for x in (items, src_lens, max_lens, scores, best)
            )
            rows, tokens = rows[active], tokens[active]
        rows, tokens = rows.view(-1), tokens.view(-1)  # (Ba * k,)
        parents = offset + rows
        state = model.reorder(state, rows, Layout(k, sources))
        if history is not None:
            history = torch.cat([history[rows], tokens[:, None]], 1)
        if coverage is not None:
            coverage = coverage[rows]
    return _results(batch_size, done_items, done_best, trail, src_lengths)


def best_possible(scores: Tensor, max_lens: Tensor, alpha: float) -> Tensor:
    """Per sentence (Ba,), the highest normalized score any of its active beams can still reach.

    Log-probabilities only decrease, and for alpha >= 0 the length penalty only grows, so a beam
    scoring s <= 0 can reach at most s / lp(max length + EOS); the coverage penalty is <= 0 and can
    only lower that. The bound is exact for alpha = 0 and loose (later stops) for alpha > 0.
    """
    return scores.max(1).values / length_penalty(max_lens + 1, alpha)


def _extend(log_probs: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Score every one-token extension of the beams ``scores`` (Ba, k), log_probs (Ba * w, V).

    ``w`` is the number of beams stepped per sentence: k, or 1 at the first step, where only the
    first beam is live. Returns the EOS extensions' scores (Ba, w), and the best k other
    extensions: their scores (Ba, k), the rows they extend (Ba, k) and their last tokens (Ba, k)
    (-inf scores where there are fewer than k). Overwrites ``log_probs``' EOS column.
    """
    n_sent, k = scores.shape
    n_rows, vocab = log_probs.shape
    width = n_rows // n_sent
    scores = scores[:, :width]
    eos_scores = scores + log_probs[:, EOS_ID].view(n_sent, width)
    log_probs[:, EOS_ID] = -torch.inf
    top_scores, top = top_extensions(log_probs.view(n_sent, width, vocab), scores, k)
    rows = top // vocab + torch.arange(0, n_rows, width, device=top.device)[:, None]
    return eos_scores, top_scores, rows, top % vocab


def top_extensions(log_probs: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per sentence, the k best of ``scores[:, r] + log_probs[:, r, v]`` (Ba, k), best first, and
    their indices ``r * V + v`` (Ba, k); log_probs (Ba, w, V), scores (Ba, w). Missing
    extensions (w * V < k) score -inf at index w * V - 1.

    The same as a top-k over the (Ba, w * V) sum, without building it: each row's vocabulary is
    cut into blocks of ``_VOCAB_BLOCK``; the k best extensions lie in the k blocks of highest
    maximum (each of those holds an extension at least as good as any outside them) or in a row's
    last, partial block. On CPU a max per block and a top-k over k blocks take a small part of the
    time of the full sum and top-k, which were the dearest part of a beam step outside the model.
    """
    n_sent, width, vocab = log_probs.shape
    full = vocab - vocab % _VOCAB_BLOCK
    sent = torch.arange(n_sent, device=log_probs.device)[:, None]
    values, indices = [], []
    if full:
        blocks = log_probs[..., :full].unflatten(-1, (-1, _VOCAB_BLOCK))  # (Ba, w, nb, B), a view
        n_blocks = blocks.size(2)
        maxima = blocks.amax(-1) + scores[..., None]  # (Ba, w, nb)
        best = maxima.flatten(1).topk(min(k, width * n_blocks), 1).indices  # (Ba, kb)
        row, block = best // n_blocks, best % n_blocks
        values.append((blocks[sent, row, block] + scores.gather(1, row)[..., None]).flatten(1))
        offset = torch.arange(_VOCAB_BLOCK, device=best.device)
        indices.append((row * vocab + block * _VOCAB_BLOCK)[..., None].add(offset).flatten(1))
    if full < vocab:  # each row's partial block: every one is a candidate
        values.append((log_probs[..., full:] + scores[..., None]).flatten(1))
        row_starts = torch.arange(width, device=scores.device)[:, None] * vocab
        tail = row_starts + torch.arange(full, vocab, device=scores.device)  # (w, V - full)
        indices.append(tail.flatten().expand(n_sent, -1))
    values, indices = torch.cat(values, 1), torch.cat(indices, 1)
    if values.size(1) < k:  # a tiny vocabulary: pad with impossible extensions
        values = F.pad(values, (0, k - values.size(1)), value=-torch.inf)
        indices = F.pad(indices, (0, k - indices.size(1)), value=width * vocab - 1)
    top_scores, top = values.topk(k, 1)
    return top_scores, indices.gather(1, top)


def _finished(
    eos_scores: Tensor,
    active_scores: Tensor,
    t: int,
    offset: int,
    coverage: Tensor | None,
    src_lens: Tensor,
    config: SearchConfig,
) -> _Finished:
    """The EOS extensions at step t that rank among their sentence's k best extensions (Ba, w)."""
    k = config.beam_size
    kth_best = torch.cat([active_scores, eos_scores], 1).topk(k, 1).values[:, -1:]  # (Ba, 1)
    kept = (eos_scores >= kth_best) & (eos_scores > -torch.inf)
    norm = eos_scores / length_penalty(t + 1, config.length_penalty)
    if coverage is not None:
        width = eos_scores.size(1)
        per_row = coverage_penalty(
            coverage, src_lens.repeat_interleave(width), config.coverage_penalty
        )
        norm = norm + per_row.view_as(norm)
    rows = offset + torch.arange(eos_scores.numel(), device=eos_scores.device).view_as(norm)
    return _Finished(
        norm.masked_fill(~kept, -torch.inf), eos_scores.masked_fill(~kept, -torch.inf), rows
    )


@dataclass
class _Finished:
    """Finished hypotheses per sentence, best first; -inf marks an empty slot."""

    norm: Tensor  # (Ba, n) normalized score, for ranking
    score: Tensor  # (Ba, n) log-probability
    row: Tensor  # (Ba, n) trail row that emitted EOS

    @staticmethod
    def empty(n_sent: int, n: int, device: torch.device) -> _Finished:
        norm = torch.full((n_sent, n), -torch.inf, device=device)
        return _Finished(norm, norm.clone(), torch.zeros_like(norm, dtype=torch.long))

    def add(self, other: _Finished) -> _Finished:
        """The best n of both."""
        norm, index = torch.cat([self.norm, other.norm], 1).topk(self.norm.size(1), 1)
        score = torch.cat([self.score, other.score], 1).gather(1, index)
        return _Finished(norm, score, torch.cat([self.row, other.row], 1).gather(1, index))

    def __getitem__(self, index: Tensor) -> _Finished:
        """The sentences at ``index`` (indices or a mask)."""
        return _Finished(self.norm[index], self.score[index], self.row[index])


class _Trail:
    """Every step's rows: the token each was fed, its parent row and its attention."""

    def __init__(self) -> None:
        self.tokens: list[Tensor] = []
        self.parents: list[Tensor] = []
        self.attention: list[Tensor] = []
        self.size = 0

    def add(self, tokens: Tensor, parents: Tensor, attention: Tensor | None) -> int:
        """Append one step's rows; return the trail row of its first."""
        self.tokens.append(tokens)
        self.parents.append(parents)
        if attention is not None:
            self.attention.append(attention)
        offset, self.size = self.size, self.size + tokens.numel()
        return offset

    def backtrack(self) -> _Backtrack:
        attention = torch.cat(self.attention).cpu() if self.attention else None
        return _Backtrack(
            torch.cat(self.tokens).tolist(), torch.cat(self.parents).tolist(), attention
        )


@dataclass
class _Backtrack:
    tokens: list[int]
    parents: list[int]
    attention: Tensor | None  # (trail rows, S)

    def hypothesis(self, row: int, score: float, norm: float, src_len: int) -> Hypothesis:
        """The hypothesis whose EOS was emitted by trail ``row``."""
        path = []  # rows from EOS back to BOS
        while row >= 0:
            path.append(row)
            row = self.parents[row]
        path.reverse()
        tokens = [self.tokens[r] for r in path[1:]]  # what the rows after BOS were fed
        attention = None if self.attention is None else self.attention[path, :src_len]
        return Hypothesis(tokens, score, norm, attention)


def _results(
    batch_size: int,
    items: list[Tensor],
    best: list[_Finished],
    trail: _Trail,
    src_lengths: Tensor,
) -> list[list[Hypothesis]]:
    backtrack = trail.backtrack()
    src_lens = src_lengths.tolist()
    results: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    for chunk_items, chunk in zip(items, best, strict=True):
        for i, norms, scores, rows in zip(
            chunk_items.tolist(),
            chunk.norm.tolist(),
            chunk.score.tolist(),
            chunk.row.tolist(),
            strict=True,
        ):
            results[i] = [
                backtrack.hypothesis(row, score, norm, src_lens[i])
                for norm, score, row in zip(norms, scores, rows, strict=True)
                if score > -torch.inf
            ]
    return results
