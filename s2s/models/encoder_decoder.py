"""Training, evaluation and decoding shared by every encoder-decoder model (translator, captioner).

A subclass supplies ``encode(batch) -> EncoderOutput`` and an ``RNNDecoder``; this class turns
them into a :class:`~s2s.decoding.interface.StepDecoder`, trains with teacher forcing, and
evaluates by decoding whole validation/test sets with corpus BLEU and chrF. Batches are any object
with ``tgt`` (B, T), ``indices`` (B,) and ``refs`` (one reference or a list of references per item).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from s2s.checkpoint import TokenizersInCheckpoint, read_checkpoint
from s2s.decoding import Hypothesis, SearchConfig, beam_search, greedy
from s2s.metrics import CorpusScores, corpus_scores
from s2s.nn.decoder import DecoderState, RNNDecoder
from s2s.nn.encoder import EncoderOutput
from s2s.optim import OptimConfig, configure_optimizers
from s2s.tokenizer import PAD_ID

log = logging.getLogger(__name__)


@dataclass
class _Decoded:
    """Hypotheses of one evaluation batch, kept until the epoch's corpus scores."""

    indices: list[int]
    hyps: list[str]
    refs: list[list[str]]


class EncoderDecoderModule(TokenizersInCheckpoint, L.LightningModule):
    """Base LightningModule; subclasses build ``self.decoder`` and implement :meth:`encode`.

    Tokenizers travel inside checkpoints, so a checkpoint alone restores a usable model.
    """

    decoder: RNNDecoder

    def __init__(
        self,
        label_smoothing: float,
        teacher_forcing_ratio: float,
        optim: OptimConfig,
        search: SearchConfig,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1 or not 0 < teacher_forcing_ratio <= 1:
            raise ValueError("need 0 <= label_smoothing < 1 and 0 < teacher_forcing_ratio <= 1")
        self.label_smoothing = label_smoothing
        self.teacher_forcing_ratio = teacher_forcing_ratio
        self.optim = optim
        self.search = search
        self.init_from = init_from
        self._decoded: list[_Decoded] = []
        self._nll = torch.zeros(2)  # summed validation NLL, target tokens
        # Target tokens these weights were trained on, all ranks: checkpointed, so a resumed (or
        # fine-tuned) run goes on counting.
        self.tokens_trained = 0

    # --- the model
    def encode(self, batch: Any) -> EncoderOutput:
        raise NotImplementedError

    def forward(self, batch: Any) -> Tensor:
        """Teacher-forced logits (B, T-1, V) predicting ``batch.tgt[:, 1:]``."""
        return self.forward_with_attention(batch)[0]

    def forward_with_attention(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward`'s logits and the decoder's attention (B, T-1, S), None without."""
        state = self.decoder.init_state(self.encode(batch))
        ratio = self.teacher_forcing_ratio if self.training else 1.0
        return self.decoder.forward_with_attention(
            batch.tgt[:, :-1], state, teacher_forcing_ratio=ratio
        )

    def attention_penalty(self, attention: Tensor | None, target_mask: Tensor) -> Tensor | float:
        """A term added to the training loss from the attention (B, T, S) of the real target steps
        ``target_mask`` (B, T); none here (the captioner's regularises attention)."""
        return 0.0

    # --- the step interface used by s2s.decoding
    def start(self, batch: Any) -> tuple[DecoderState, Tensor]:
        enc = self.encode(batch)
        return self.decoder.init_state(enc), enc.mask.sum(1)

    def step(self, tokens: Tensor, state: DecoderState):
        return self.decoder.step(tokens, state)

    def reorder(self, state: DecoderState, index: Tensor) -> DecoderState:
        return state.select(index)

    # --- training
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        logits, attention = self.forward_with_attention(batch)
        target = batch.tgt[:, 1:]
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            target.flatten(),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
        )
        ntokens = (target != PAD_ID).sum()
        self.log("train/loss", loss, prog_bar=True, batch_size=int(ntokens))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(ntokens)  # all the ranks' tokens, not this rank's share
        self.tokens_trained += int(ntokens)
        self.log(
            "train/tokens",
            float(self.tokens_trained),
            on_step=False,
            on_epoch=True,
            reduce_fx="max",
        )
        return loss + self.attention_penalty(attention, target != PAD_ID)

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optim)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["tokens_trained"] = self.tokens_trained

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.tokens_trained = checkpoint.get("tokens_trained", 0)

    # --- evaluation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        target = batch.tgt[:, 1:]
        logits = self(batch).flatten(0, 1).float()
        nll = F.cross_entropy(logits, target.flatten(), ignore_index=PAD_ID, reduction="sum")
        self._nll += torch.stack([nll.detach().cpu(), (target != PAD_ID).sum().cpu().float()])
        s = self.search
        hyps = greedy(self, batch, max_len_a=s.max_len_a, max_len_b=s.max_len_b, min_len=s.min_len)
        self._collect(batch, hyps)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._collect(batch, [nbest[0] for nbest in beam_search(self, batch, self.search)])

    def on_validation_epoch_start(self) -> None:
        self._decoded.clear()
        self._nll.zero_()

    def on_test_epoch_start(self) -> None:
        self._decoded.clear()

    def on_validation_epoch_end(self) -> None:
        nll, ntokens = self.trainer.strategy.reduce(self._nll.to(self.device), reduce_op="sum")
        scores, _, extra = self._corpus_scores()
        loss = float(nll / ntokens.clamp(min=1))
        self.log_dict(
            {
                "val/loss": loss,
                "val/ppl": math.exp(min(loss, 50.0)),
                "val/bleu": scores.bleu,
                "val/chrf": scores.chrf,
                **{f"val/{name}": value for name, value in extra.items()},
            },
            prog_bar=True,
        )

    def on_test_epoch_end(self) -> None:
        scores, hyps, extra = self._corpus_scores()
        self.log_dict(
            {
                "test/bleu": scores.bleu,
                "test/chrf": scores.chrf,
                **{f"test/{name}": value for name, value in extra.items()},
            }
        )
        # Every rank asks: under DDP, trainer.log_dir is a broadcast from rank 0.
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir
        if self.trainer.is_global_zero:
            out = Path(log_dir) / "test_hypotheses.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
            print("".join(f"{name} = {value:.2f}\n" for name, value in extra.items()), end="")
            print(f"{scores}\nhypotheses: {out}")

    def _collect(self, batch: Any, hyps: list[Hypothesis]) -> None:
        refs = [[r] if isinstance(r, str) else list(r) for r in batch.refs]
        texts = [self.tokenizers["tgt"].decode(h.tokens) for h in hyps]
        self._decoded.append(_Decoded(batch.indices.tolist(), texts, refs))

    def extra_scores(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
        """Corpus metrics a model adds to BLEU and chrF at validation and test; none here."""
        return {}

    def _corpus_scores(self) -> tuple[CorpusScores, list[str], dict[str, float]]:
        """Scores over the whole split: every rank's hypotheses, each example exactly once; then
        the hypotheses and :meth:`extra_scores`."""
        parts = _all_gather(self._decoded)
        items = sorted(
            (i, h, r)
            for part in parts
            for d in part
            for i, h, r in zip(d.indices, d.hyps, d.refs, strict=True)
        )
        indices = [i for i, _, _ in items]
        if len(set(indices)) != len(indices):
            raise RuntimeError("an evaluation example was decoded twice: check the batch sampler")
        hyps, refs = [h for _, h, _ in items], [r for _, _, r in items]
        return corpus_scores(hyps, refs), hyps, self.extra_scores(hyps, refs)

    # --- checkpoints
    def setup(self, stage: str) -> None:
        if self.init_from:  # a --ckpt_path is restored after this, replacing these weights
            self._load_weights_and_tokenizers(self.init_from)
        super().setup(stage)  # the data's tokenizers, checked against the checkpoint's

    def _load_weights_and_tokenizers(self, path: str) -> None:
        """Start from checkpoint ``path``: its weights, and its tokenizers the data must match."""
        ckpt = read_checkpoint(path)
        self.on_load_checkpoint(ckpt)
        try:
            self.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise ValueError(
                f"{path}: its weights do not fit this model; fine-tuning needs the checkpoint's "
                f"architecture and vocabularies ({e})"
            ) from None
        log.info("Starting from the weights and tokenizers of %s", path)


def _all_gather(obj: Any) -> list[Any]:
    """``obj`` from every process (a one-item list without distributed training)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
