"""The recurrent decoder shared by the translator and the captioner.

A Luong-style decoder with input feeding (Luong et al. 2015): at step t the RNN reads the previous
token and the previous attentional vector, its output queries the memory, and
``tanh(W [h_t; context_t])`` is both the input to the output layer and next step's feed. With
``attention="none"`` the context is the encoder summary at every step, which is the fixed context
vector of Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder".

Teacher-forced training computes all that does not depend on the previous step at once
(embeddings, attention keys) and keeps only the recurrence in a Python loop. With
``input_feeding=False`` the RNN reads only the previous token, so nothing is left in the loop: the
RNN runs as one fused call over the whole target and attention scores every step in one batched
call; decoding is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from s2s.decoding.interface import Layout, Step
from s2s.nn.attention import AttentionType, make_attention
from s2s.nn.encoder import EncoderOutput, check_sizes
from s2s.nn.rnn import CellType, RNNState, make_rnn, select_state
from s2s.tokenizer import PAD_ID


@dataclass
class DecoderState:
    """Everything a decoder step needs; row i is one hypothesis.

    The memory, its keys and mask are held once per source, not per row: row i reads memory entry
    ``i // group``. Beam search keeps the beams of a sentence in consecutive rows and says so
    (:class:`~s2s.decoding.interface.Layout`), so expanding and reordering beams copies no memory,
    and attention runs the beams of a source as one multi-query call.
    """

    hidden: RNNState  # (layers, N, H)
    feed: Tensor  # (N, H) previous attentional vector
    memory: Tensor  # (M, S, Hm) with N = M * group
    keys: Tensor | None  # (M, S, *) precomputed attention keys, None without attention
    mask: Tensor  # (M, S) True at real memory positions
    group: int = 1  # consecutive rows per memory entry

    def select(self, index: Tensor, layout: Layout | None = None) -> DecoderState:
        """The state of rows ``index`` (N'): any rows, repeated or dropped, in any order. Without
        a ``layout`` each row gets its own memory entry."""
        if layout is None:
            layout = Layout(1, index // self.group)
        entries = self.memory.size(0) if layout.sources is None else layout.sources.numel()
        if index.numel() != entries * layout.group:
            raise ValueError(
                f"{index.numel()} rows cannot be {entries} sources x {layout.group} rows each"
            )

        def pick(x: Tensor) -> Tensor:
            return x if layout.sources is None else x.index_select(0, layout.sources)

        return DecoderState(
            hidden=select_state(self.hidden, index),
            feed=self.feed.index_select(0, index),
            memory=pick(self.memory),
            keys=None if self.keys is None else pick(self.keys),
            mask=pick(self.mask),
            group=layout.group,
        )


@dataclass(frozen=True)
class DecoderConfig:
    """The RNN decoder's options (``model.decoder`` in recipes).

    Args:
        embedding_size: Size of the target embeddings.
        hidden_size: RNN size.
        cell: Recurrent cell.
        num_layers: Stacked RNN layers.
        attention: ``none`` conditions every step on the encoder summary (one fixed context
            vector); the others attend over all memory positions at every step.
        dropout: Dropout on embeddings, between RNN layers and on the attentional vector.
        tie_embeddings: Share the target embedding with the output layer (Press & Wolf, 2017);
            needs ``embedding_size == hidden_size``.
        input_feeding: The RNN also reads the previous step's attentional vector (Luong et al.
            2015 report it gains BLEU). Off, teacher-forced training needs no per-token loop and
            runs faster (see the README's speed table).
    """

    embedding_size: int = 256
    hidden_size: int = 256
    cell: CellType = "lstm"
    num_layers: int = 1
    attention: AttentionType = "bahdanau"
    dropout: float = 0.3
    tie_embeddings: bool = False
    input_feeding: bool = True

    def __post_init__(self) -> None:
        check_sizes(self)
        if self.tie_embeddings and self.embedding_size != self.hidden_size:
            raise ValueError(
                f"tie_embeddings needs embedding_size ({self.embedding_size}) == "
                f"hidden_size ({self.hidden_size})"
            )


class RNNDecoder(nn.Module):
    """Conditional RNN language model over a memory of ``memory_size`` features per position;
    implements the decoding step."""

    def __init__(self, vocab_size: int, memory_size: int, config: DecoderConfig) -> None:
        super().__init__()
        c = config
        self.cell = c.cell
        self.num_layers = c.num_layers
        self.hidden_size = c.hidden_size
        self.input_feeding = c.input_feeding
        self.embedding = nn.Embedding(vocab_size, c.embedding_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(c.dropout)
        rnn_input = c.embedding_size + (c.hidden_size if c.input_feeding else 0)
        self.rnn = make_rnn(c.cell, rnn_input, c.hidden_size, c.num_layers, c.dropout)
        self.attention = make_attention(c.attention, c.hidden_size, memory_size)
        self.bridge = nn.Linear(memory_size, c.hidden_size)
        self.combine = nn.Linear(c.hidden_size + memory_size, c.hidden_size, bias=False)
        self.output = nn.Linear(c.hidden_size, vocab_size)
        if c.tie_embeddings:
            self.output.weight = self.embedding.weight

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        """The state before the first token: the encoder summary initialises every layer."""
        h = torch.tanh(self.bridge(enc.summary))  # (B, H)
        h = h.unsqueeze(0).repeat(self.num_layers, 1, 1).contiguous()  # (layers, B, H)
        hidden: RNNState = (h, torch.zeros_like(h)) if self.cell == "lstm" else h
        if self.attention is None:  # the summary is the context at every step
            memory, keys = enc.summary.unsqueeze(1), None  # (B, 1, Hm)
            mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        else:
            memory, keys, mask = enc.memory, self.attention.keys(enc.memory), enc.mask
        feed = h.new_zeros(h.shape[1:])  # (B, H)
        return DecoderState(hidden=hidden, feed=feed, memory=memory, keys=keys, mask=mask)

    def _advance(self, emb: Tensor, state: DecoderState) -> tuple[DecoderState, Tensor | None]:
        """One recurrent step from embedded tokens (N, E); returns the new state and attention."""
        x = torch.cat([emb, state.feed], dim=-1) if self.input_feeding else emb  # (N, E [+ H])
        out, hidden = self.rnn(x.unsqueeze(1), state.hidden)  # (N, 1, H)
        query = out.view(-1, state.group, out.size(-1))  # (M, group, H): one query per row
        feed, weights = self._attend(query, state)  # (M, group, H), (M, group, S)
        weights = None if weights is None else weights.flatten(0, 1)  # (N, S)
        return replace(state, hidden=hidden, feed=feed.flatten(0, 1)), weights

    def _attend(self, query: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """Attentional vectors (M, Q, H) and attention weights (M, Q, S) for RNN outputs ``query``
        (M, Q, H): Q queries per memory entry (the rows of a beam group, or every target step)."""
        if self.attention is None:  # the summary (M, 1, Hm) is every query's context
            context, weights = state.memory.expand(-1, query.size(1), -1), None
        else:
            context, weights = self.attention(query, state.keys, state.memory, state.mask)
        feed = self.dropout(torch.tanh(self.combine(torch.cat([query, context], dim=-1))))
        return feed, weights

    def forward(
        self, tgt_in: Tensor, state: DecoderState, teacher_forcing_ratio: float = 1.0
    ) -> Tensor:
        """Logits (B, T, V) for every position of ``tgt_in`` (B, T) (BOS y1 .. yn).

        With ``teacher_forcing_ratio`` < 1, each step reads the model's own previous prediction
        instead of the reference token with probability 1 - ratio (scheduled sampling), which
        always steps token by token.
        """
        return self.forward_with_attention(tgt_in, state, teacher_forcing_ratio)[0]

    def forward_with_attention(
        self, tgt_in: Tensor, state: DecoderState, teacher_forcing_ratio: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward`'s logits (B, T, V) and the attention (B, T, S) of every step (None
        without attention), for losses that regularise attention."""
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        if not self.input_feeding and teacher_forcing_ratio == 1.0:
            out, _ = self.rnn(emb, state.hidden)  # (B, T, H): one fused call over all steps
            feeds, attention = self._attend(out, state)  # (B, T, H), (B, T, S)
            return self.output(feeds), attention  # (B, T, V)
        feeds, weights = [], []
        for t, step_emb in enumerate(emb.unbind(1)):  # unbind: one backward copy, not one per step
            if t > 0 and teacher_forcing_ratio < 1.0:
                own = self.dropout(self.embedding(self.output(feeds[-1]).argmax(-1)))
                use_own = torch.rand(own.size(0), 1, device=own.device) >= teacher_forcing_ratio
                step_emb = torch.where(use_own, own, step_emb)
            state, step_weights = self._advance(step_emb, state)
            feeds.append(state.feed)
            weights.append(step_weights)
        attention = None if self.attention is None else torch.stack(weights, dim=1)  # (B, T, S)
        return self.output(torch.stack(feeds, dim=1)), attention  # (B, T, V)

    def step(self, tokens: Tensor, state: DecoderState) -> Step:
        """One decoding step for previous tokens (N,)."""
        state, weights = self._advance(self.embedding(tokens), state)
        logits = self.output(state.feed).float()  # (N, V)
        if logits.requires_grad:  # autograd has no in-place log-softmax
            return Step(torch.log_softmax(logits, dim=-1), state, weights)
        # In place when decoding: a beam step's (N, V) is tens of MB, and a second fresh tensor
        # of that size costs its page faults, a tenth of a beam-5 step on CPU (bench_decode.py).
        return Step(torch.log_softmax(logits, dim=-1, out=logits), state, weights)


# Checkpoints keep the config in their hyperparameters; let torch.load(weights_only=True) read it.
torch.serialization.add_safe_globals([DecoderConfig])
