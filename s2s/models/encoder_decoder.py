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

from s2s.checkpoint import CLASS_KEY, class_path
from s2s.decoding import Hypothesis, SearchConfig, beam_search, greedy
from s2s.metrics import CorpusScores, corpus_scores
from s2s.nn.decoder import DecoderState, RNNDecoder
from s2s.nn.encoder import EncoderOutput
from s2s.optim import OptimConfig, configure_optimizers
from s2s.tokenizer import PAD_ID, Tokenizer

log = logging.getLogger(__name__)


@dataclass
class _Decoded:
    """Hypotheses of one evaluation batch, kept until the epoch's corpus scores."""

    indices: list[int]
    hyps: list[str]
    refs: list[list[str]]


class EncoderDecoderModule(L.LightningModule):
    """Base LightningModule; subclasses build ``self.decoder`` and implement :meth:`encode`.

    Tokenizers travel inside checkpoints, so a checkpoint alone restores a usable model.
    """

    decoder: RNNDecoder
    tokenizer_names: tuple[str, ...] = ("tgt",)

    def __init__(
        self,
        label_smoothing: float,
        teacher_forcing_ratio: float,
        optim: OptimConfig,
        search: SearchConfig,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1 or not 0 < teacher_forcing_ratio <= 1:
            raise ValueError("need 0 <= label_smoothing < 1 and 0 < teacher_forcing_ratio <= 1")
        self.label_smoothing = label_smoothing
        self.teacher_forcing_ratio = teacher_forcing_ratio
        self.optim = optim
        self.search = search
        self.tokenizers: dict[str, Tokenizer] = {}
        self._decoded: list[_Decoded] = []
        self._nll = torch.zeros(2)  # summed validation NLL, target tokens

    # --- the model
    def encode(self, batch: Any) -> EncoderOutput:
        raise NotImplementedError

    def forward(self, batch: Any) -> Tensor:
        """Teacher-forced logits (B, T-1, V) predicting ``batch.tgt[:, 1:]``."""
        state = self.decoder.init_state(self.encode(batch))
        ratio = self.teacher_forcing_ratio if self.training else 1.0
        return self.decoder(batch.tgt[:, :-1], state, teacher_forcing_ratio=ratio)

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
        logits = self(batch)
        target = batch.tgt[:, 1:]
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            target.flatten(),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
        )
        ntokens = int((target != PAD_ID).sum())
        self.log("train/loss", loss, prog_bar=True, batch_size=ntokens)
        self.log("train/tokens", float(ntokens), reduce_fx="sum", on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.optim)

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
        scores, _ = self._corpus_scores()
        loss = float(nll / ntokens.clamp(min=1))
        self.log_dict(
            {
                "val/loss": loss,
                "val/ppl": math.exp(min(loss, 50.0)),
                "val/bleu": scores.bleu,
                "val/chrf": scores.chrf,
            },
            prog_bar=True,
        )

    def on_test_epoch_end(self) -> None:
        scores, hyps = self._corpus_scores()
        self.log_dict({"test/bleu": scores.bleu, "test/chrf": scores.chrf})
        if self.trainer.is_global_zero:
            log_dir = self.trainer.log_dir or self.trainer.default_root_dir
            out = Path(log_dir) / "test_hypotheses.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
            print(f"{scores}\nhypotheses: {out}")

    def _collect(self, batch: Any, hyps: list[Hypothesis]) -> None:
        refs = [[r] if isinstance(r, str) else list(r) for r in batch.refs]
        texts = [self.tokenizers["tgt"].decode(h.tokens) for h in hyps]
        self._decoded.append(_Decoded(batch.indices.tolist(), texts, refs))

    def _corpus_scores(self) -> tuple[CorpusScores, list[str]]:
        """Scores over the whole split: every rank's hypotheses, each example exactly once."""
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
        hyps = [h for _, h, _ in items]
        return corpus_scores(hyps, [r for _, _, r in items]), hyps

    # --- checkpoints
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        for name in self.tokenizer_names:
            tok = getattr(datamodule, f"{name}_tokenizer")
            if name in self.tokenizers and self.tokenizers[name] != tok:
                raise ValueError(
                    f"the data's {name} tokenizer differs from the checkpoint's: fine-tuning must "
                    "keep the tokenizer the model was trained with"
                )
            self.tokenizers[name] = tok

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CLASS_KEY] = class_path(self)
        checkpoint["tokenizers"] = {name: tok.proto for name, tok in self.tokenizers.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokenizers = {
            name: Tokenizer(proto) for name, proto in checkpoint.get("tokenizers", {}).items()
        }


def _all_gather(obj: Any) -> list[Any]:
    """``obj`` from every process (a one-item list without distributed training)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
