"""Step decoders for the decoding tests: hand-scripted probabilities, a tiny random GRU, and tiny
random translators (the real ``Seq2Seq``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from s2s.data import Example, TranslationBatch, collate
from s2s.decoding.interface import Layout, Step, StepDecoder
from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderConfig
from s2s.nn.encoder import EncoderConfig
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID

Script = dict[tuple[int, ...], dict[int, float]]


class ScriptedDecoder:
    """A StepDecoder whose next-token probabilities are written by hand, keyed by prefix.

    ``batch`` is a list of scripts, one per sentence. A script maps an output prefix (tuple of
    ids) to ``{token: probability}``; unlisted tokens have probability 0 and unlisted prefixes
    end with certainty (``{EOS: 1}``). ``attention`` optionally maps prefixes to the attention
    of the step that follows them (default uniform over the padded width). ``rows`` records the
    row count of every step.
    """

    vocab_size = 7

    def __init__(
        self,
        attention: dict[tuple[int, ...], list[float]] | None = None,
        src_lengths: Sequence[int] | None = None,
    ) -> None:
        self.attention = attention
        self.src_lengths = src_lengths
        self.rows: list[int] = []

    def start(self, batch: list[Script]) -> tuple[list[tuple[int, tuple[int, ...]]], Tensor]:
        lengths = self.src_lengths or [2] * len(batch)
        self.scripts = batch
        self.width = max(lengths)
        return [(i, ()) for i in range(len(batch))], torch.tensor(lengths)

    def step(self, tokens: Tensor, state: list[tuple[int, tuple[int, ...]]]) -> Step:
        self.rows.append(len(state))
        state = [
            (i, prefix if token == BOS_ID else (*prefix, token))
            for (i, prefix), token in zip(state, tokens.tolist(), strict=True)
        ]
        log_probs = torch.full((len(state), self.vocab_size), -torch.inf)
        attention = torch.zeros(len(state), self.width)
        for row, (i, prefix) in enumerate(state):
            for token, p in self.scripts[i].get(prefix, {EOS_ID: 1.0}).items():
                log_probs[row, token] = math.log(p)
            weights = (self.attention or {}).get(prefix, [1.0 / self.width] * self.width)
            attention[row, : len(weights)] = torch.tensor(weights)
        return Step(log_probs, state, attention)

    def reorder(self, state: list, index: Tensor, layout: Layout | None = None) -> list:
        return [state[i] for i in index.tolist()]


class TinyAttentionGRU(nn.Module):
    """A random GRU encoder-decoder with dot-product attention, as a StepDecoder.

    ``batch`` is ``(src (B, S) ids right-padded with PAD, lengths (B,))``. The encoder is
    unidirectional and attention masks padding, so an input decodes the same in any batch.
    """

    def __init__(self, vocab_size: int, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(vocab_size, dim)
        self.encoder = nn.GRU(dim, dim, batch_first=True)
        self.embed = nn.Embedding(vocab_size, dim)
        self.cell = nn.GRUCell(dim, dim)
        self.out = nn.Linear(2 * dim, vocab_size)
        generator = torch.Generator().manual_seed(seed)
        for p in self.parameters():
            p.data.normal_(0.0, 0.7, generator=generator)
        self.out.bias.data[EOS_ID] += 1.0  # so that outputs end at varied lengths

    @torch.no_grad()
    def start(self, batch: tuple[Tensor, Tensor]) -> tuple[tuple[Tensor, ...], Tensor]:
        src, lengths = batch
        memory, _ = self.encoder(self.src_embed(src))  # (B, S, D)
        hidden = memory[torch.arange(src.size(0)), lengths - 1]  # (B, D) at the last real token
        padding = torch.arange(src.size(1)) >= lengths[:, None]  # (B, S)
        return (hidden, memory, padding), lengths

    @torch.no_grad()
    def step(self, tokens: Tensor, state: tuple[Tensor, ...]) -> Step:
        hidden, memory, padding = state
        hidden = self.cell(self.embed(tokens), hidden)  # (N, D)
        scores = torch.einsum("nsd,nd->ns", memory, hidden).masked_fill(padding, -torch.inf)
        attention = scores.softmax(1)  # (N, S)
        context = torch.einsum("ns,nsd->nd", attention, memory)
        log_probs = self.out(torch.cat([hidden, context], 1)).log_softmax(1)  # (N, V)
        return Step(log_probs, (hidden, memory, padding), attention)

    def reorder(
        self, state: tuple[Tensor, ...], index: Tensor, layout: Layout | None = None
    ) -> tuple[Tensor, ...]:
        return tuple(x.index_select(0, index) for x in state)


def tiny_seq2seq(cell: str, attention: str) -> Callable[..., Seq2Seq]:
    """A factory ``(vocab_size, seed) -> random Seq2Seq`` with 8-unit layers, in eval mode."""

    def make(vocab_size: int, seed: int = 0) -> Seq2Seq:
        torch.manual_seed(seed)
        sizes = dict(embedding_size=8, hidden_size=8, cell=cell)
        model = Seq2Seq(
            vocab_size,
            vocab_size,
            EncoderConfig(**sizes),
            DecoderConfig(**sizes, attention=attention),
        )
        for p in model.parameters():
            p.data.normal_(0.0, 0.7)
        model.decoder.output.bias.data[EOS_ID] += 1.0  # so that outputs end at varied lengths
        return model.eval()

    return make


def translation_batch(sources: list[list[int]]) -> TranslationBatch:
    """``sources`` as the translator's batch (each source then EOS, PAD-padded)."""
    return collate([Example(i, src) for i, src in enumerate(sources)])


def make_batch(sources: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad ``sources`` with PAD into a (B, S) batch with lengths."""
    width = max(map(len, sources))
    src = torch.tensor([s + [PAD_ID] * (width - len(s)) for s in sources])
    return src, torch.tensor([len(s) for s in sources])


def random_sources(n: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """n sources of 1-7 random non-special ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 8, (n,), generator=g).tolist()
    return [torch.randint(4, vocab_size, (m,), generator=g).tolist() for m in lengths]


@pytest.fixture
def scripted() -> type[ScriptedDecoder]:
    return ScriptedDecoder


RandomModel = Callable[[int, int], tuple[StepDecoder, Callable[[list[list[int]]], Any]]]


@pytest.fixture(
    params=[
        pytest.param((TinyAttentionGRU, make_batch), id="tiny_gru"),
        pytest.param((tiny_seq2seq("lstm", "bahdanau"), translation_batch), id="seq2seq_bahdanau"),
        pytest.param((tiny_seq2seq("gru", "luong_general"), translation_batch), id="seq2seq_luong"),
    ]
)
def random_model(request: pytest.FixtureRequest) -> RandomModel:
    """A factory ``(vocab_size, seed) -> (random model, sources -> its batch)``.

    The invariant tests run once per param: add ``(model factory, batch maker)`` pairs to cover
    other models.
    """
    model_class, make = request.param
    return lambda vocab_size, seed: (model_class(vocab_size, seed=seed).eval(), make)


@pytest.fixture(name="random_sources")
def random_sources_fixture() -> Callable[..., list[list[int]]]:
    return random_sources
