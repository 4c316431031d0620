"""The recurrent decoder shared by the translator and the captioner.

A Luong-style decoder with input feeding (Luong et al. 2015): at step t the RNN reads the previous
token and the previous attentional vector, its output queries the memory, and
``tanh(W [h_t; context_t])`` is both the input to the output layer and next step's feed. With
``attention="none"`` the context is the encoder summary at every step, which is the fixed context
vector of Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from s2s.decoding.interface import Step
from s2s.nn.attention import AttentionType, make_attention
from s2s.nn.encoder import EncoderOutput
from s2s.nn.rnn import CellType, RNNState, make_rnn, select_state
from s2s.tokenizer import PAD_ID


@dataclass
class DecoderState:
    """Everything a decoder step needs; row i is one hypothesis."""

    hidden: RNNState  # (layers, N, H)
    feed: Tensor  # (N, H) previous attentional vector
    memory: Tensor  # (N, S, Hm)
    keys: Tensor | None  # (N, S, *) precomputed attention keys, None without attention
    mask: Tensor  # (N, S) True at real memory positions

    def select(self, index: Tensor) -> DecoderState:
        """The state of rows ``index`` (N',)."""
        return DecoderState(
            hidden=select_state(self.hidden, index),
            feed=self.feed.index_select(0, index),
            memory=self.memory.index_select(0, index),
            keys=None if self.keys is None else self.keys.index_select(0, index),
            mask=self.mask.index_select(0, index),
        )


class RNNDecoder(nn.Module):
    """Conditional RNN language model over a memory; implements the decoding step."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        memory_size: int,
        cell: CellType = "lstm",
        num_layers: int = 1,
        attention: AttentionType = "bahdanau",
        dropout: float = 0.0,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, embedding_size + hidden_size, hidden_size, num_layers, dropout)
        self.attention = make_attention(attention, hidden_size, memory_size)
        self.bridge = nn.Linear(memory_size, hidden_size)
        self.combine = nn.Linear(hidden_size + memory_size, hidden_size, bias=False)
        self.output = nn.Linear(hidden_size, vocab_size)
        if tie_embeddings:
            if embedding_size != hidden_size:
                raise ValueError(
                    f"tie_embeddings needs embedding_size ({embedding_size}) == "
                    f"decoder hidden_size ({hidden_size})"
                )
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
        x = torch.cat([emb, state.feed], dim=-1).unsqueeze(1)  # (N, 1, E + H)
        out, hidden = self.rnn(x, state.hidden)
        query = out.squeeze(1)  # (N, H)
        if self.attention is None:
            context, weights = state.memory[:, 0], None
        else:
            context, weights = self.attention(query, state.keys, state.memory, state.mask)
        feed = self.dropout(torch.tanh(self.combine(torch.cat([query, context], dim=-1))))
        return replace(state, hidden=hidden, feed=feed), weights

    def forward(
        self, tgt_in: Tensor, state: DecoderState, teacher_forcing_ratio: float = 1.0
    ) -> Tensor:
        """Logits (B, T, V) for every position of ``tgt_in`` (B, T) (BOS y1 .. yn).

        With ``teacher_forcing_ratio`` < 1, each step reads the model's own previous prediction
        instead of the reference token with probability 1 - ratio (scheduled sampling).
        """
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        feeds = []
        for t in range(tgt_in.size(1)):
            step_emb = emb[:, t]
            if t > 0 and teacher_forcing_ratio < 1.0:
                own = self.dropout(self.embedding(self.output(feeds[-1]).argmax(-1)))
                use_own = torch.rand(own.size(0), 1, device=own.device) >= teacher_forcing_ratio
                step_emb = torch.where(use_own, own, step_emb)
            state, _ = self._advance(step_emb, state)
            feeds.append(state.feed)
        return self.output(torch.stack(feeds, dim=1))  # (B, T, V)

    def step(self, tokens: Tensor, state: DecoderState) -> Step:
        """One decoding step for previous tokens (N,)."""
        state, weights = self._advance(self.embedding(tokens), state)
        log_probs = torch.log_softmax(self.output(state.feed).float(), dim=-1)  # (N, V)
        return Step(log_probs, state, weights)
