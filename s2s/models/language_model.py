"""Recurrent language model trained with truncated backpropagation through time.

Mikolov et al. (2010), "Recurrent neural network based language model"; dropout between layers as
in Zaremba et al. (2014); optional weight tying (Press & Wolf, 2017; Inan et al., 2017). Truncated
BPTT (Williams & Peng, 1990): the model reads a stream in chunks (``s2s.data.text_stream``),
carries its hidden state from each chunk to the next and detaches it there, so gradients reach
back at most one chunk while the state sees the whole stream. The model generates through the
step interface of :mod:`s2s.decoding` (``s2s-sample``).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s.checkpoint import TokenizersInCheckpoint
from s2s.data.text_stream import Prompts, StreamChunk
from s2s.decoding.interface import Layout, Step
from s2s.models.perplexity import TokenNLL
from s2s.nn.rnn import CellType, RNNState, make_rnn, select_state
from s2s.optim import OptimConfig, configure_optimizers
from s2s.tokenizer import PAD_ID


@dataclass
class LMState:
    """Decoding state; row i is one hypothesis."""

    hidden: RNNState  # (layers, N, H)
    log_probs: Tensor | None  # (N, V) the prediction after the prompt, until the first step

    def select(self, index: Tensor) -> LMState:
        """The state of rows ``index`` (N',)."""
        log_probs = None if self.log_probs is None else self.log_probs.index_select(0, index)
        return LMState(select_state(self.hidden, index), log_probs)


def detach(state: RNNState) -> RNNState:
    """The same values, cut from the graph that computed them."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


class LanguageModel(TokenizersInCheckpoint, L.LightningModule):
    """Character-, word- or subword-level RNN language model over a text stream.

    Args:
        tgt_vocab_size: Vocabulary size (linked from the data module in recipes).
        embedding_size: Size of the token embeddings.
        hidden_size: Size of each RNN layer.
        cell: Recurrent cell.
        num_layers: Stacked RNN layers.
        dropout: Dropout on embeddings, between RNN layers and before the output layer.
        tie_embeddings: Share the embedding with the output layer; needs
            ``embedding_size == hidden_size``.
        optim: Optimiser and learning-rate schedule (the plateau schedule watches ``val/ppl``).
    """

    tokenizer_names = ("tgt",)

    def __init__(
        self,
        tgt_vocab_size: int,
        embedding_size: int = 256,
        hidden_size: int = 256,
        cell: CellType = "lstm",
        num_layers: int = 2,
        dropout: float = 0.2,
        tie_embeddings: bool = False,
        optim: OptimConfig = OptimConfig(),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embedding = nn.Embedding(tgt_vocab_size, embedding_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, embedding_size, hidden_size, num_layers, dropout)
        self.output = nn.Linear(hidden_size, tgt_vocab_size)
        if tie_embeddings:
            if embedding_size != hidden_size:
                raise ValueError(
                    f"tie_embeddings needs embedding_size ({embedding_size}) == "
                    f"hidden_size ({hidden_size})"
                )
            self.output.weight = self.embedding.weight
        self.optim = optim
        # Truncated BPTT: the detached state after the last chunk read in each stage ("train",
        # "val", "test"); Lightning calls the step methods once per chunk, so it lives here.
        self._carried: dict[str, RNNState] = {}
        self._nll = TokenNLL()

    def forward(self, inputs: Tensor, state: RNNState | None = None) -> tuple[Tensor, RNNState]:
        """Logits (B, T, V) of the token after each of ``inputs`` (B, T), and the state after the
        last one; ``state`` None starts from zeros."""
        emb = self.dropout(self.embedding(inputs))  # (B, T, E)
        out, state = self.rnn(emb, state)  # (B, T, H)
        return self.output(self.dropout(out)), state

    def chunk_logits(self, chunk: StreamChunk, stage: str) -> Tensor:
        """Logits (B, T, V) of ``chunk``, read from the state the previous chunk of ``stage`` left.

        The state is carried by value and detached: the next chunk's gradients stop here.
        """
        state = None if chunk.first else self._carried.get(stage)
        logits, state = self(chunk.inputs, state)
        self._carried[stage] = detach(state)
        return logits

    # --- the step interface used by s2s.decoding
    def start(self, batch: Prompts) -> tuple[LMState, Tensor]:
        """Read each prompt (BOS and its tokens); the source lengths are the prompt lengths.

        The prediction after the prompt is kept for the first :meth:`step`, which decoding calls
        with BOS: the model has read BOS already.
        """
        emb = self.embedding(batch.ids)  # (B, P, E)
        lengths = batch.lengths.cpu()
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, hidden = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)  # (B, P, H)
        last = out[torch.arange(out.size(0)), lengths - 1]  # (B, H)
        log_probs = self.output(last).float().log_softmax(-1)  # (B, V)
        return LMState(hidden, log_probs), batch.lengths - 1

    def step(self, tokens: Tensor, state: LMState) -> Step:
        if state.log_probs is not None:  # the first step: start read the prompt
            return Step(state.log_probs, LMState(state.hidden, None), None)
        logits, hidden = self(tokens[:, None], state.hidden)  # (N, 1, V)
        return Step(logits[:, 0].float().log_softmax(-1), LMState(hidden, None), None)

    def reorder(self, state: LMState, index: Tensor, layout: Layout | None = None) -> LMState:
        return state.select(index)  # no memory: the layout does not matter

    # --- training and evaluation
    def training_step(self, batch: StreamChunk, batch_idx: int) -> Tensor:
        logits = self.chunk_logits(batch, "train")
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten())
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.targets.numel())
        return loss

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optim, monitor="val/ppl", mode="min")

    def _evaluate(self, batch: StreamChunk, stage: str) -> None:
        self._nll.update(self.chunk_logits(batch, stage).flatten(0, 1), batch.targets.flatten())

    def _log_perplexity(self, stage: str) -> None:
        self.log_dict(self._nll.logs(stage), prog_bar=True)

    def validation_step(self, batch: StreamChunk, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: StreamChunk, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._nll.reset()

    def on_test_epoch_start(self) -> None:
        self._nll.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_perplexity("val")

    def on_test_epoch_end(self) -> None:
        self._log_perplexity("test")
