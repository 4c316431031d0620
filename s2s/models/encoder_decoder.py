"""Training, evaluation and decoding shared by every encoder-decoder model (translator, captioner).

A subclass supplies ``encode(batch) -> EncoderOutput`` and an ``RNNDecoder``; this class turns
them into a :class:`~s2s.decoding.interface.StepDecoder`, trains with teacher forcing, and
evaluates by decoding whole validation/test sets with corpus BLEU and chrF, and predicts
(``s2s predict``) by writing the test-time hypotheses to a file. Batches are any object with
``tgt`` (B, T), ``indices`` (B,) and ``refs`` (one reference or a list of references per item);
prediction needs only ``indices``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from s2s.checkpoint import TokenizersInCheckpoint, read_checkpoint
from s2s.decoding import Hypothesis, SearchConfig, beam_search, greedy
from s2s.decoding.ensemble import Ensemble
from s2s.decoding.interface import Layout
from s2s.metrics import CorpusScores, corpus_scores
from s2s.models.perplexity import TokenNLL
from s2s.nn.decoder import DecoderState, RNNDecoder
from s2s.nn.encoder import EncoderOutput
from s2s.optim import OptimConfig, configure_optimizers
from s2s.tokenizer import PAD_ID

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        self._nll = TokenNLL()
        # Target tokens these weights were trained on, all ranks: checkpointed, so a resumed (or
        # fine-tuned) run goes on counting.
        self.tokens_trained = 0
        # Test and predict decode as one ensemble with these (s2s.callbacks.EnsembleWith).
        self.ensemble_members: list[EncoderDecoderModule] = []

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

    def reorder(
        self, state: DecoderState, index: Tensor, layout: Layout | None = None
    ) -> DecoderState:
        return state.select(index, layout)

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
        self._nll.update(self(batch).flatten(0, 1), target.flatten(), ignore_index=PAD_ID)
        s = self.search
        hyps = greedy(self, batch, max_len_a=s.max_len_a, max_len_b=s.max_len_b, min_len=s.min_len)
        self._collect(batch, hyps)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._collect(batch, self._best_hypotheses(batch))

    def predict_step(self, batch: Any, batch_idx: int) -> list[tuple[int, str]]:
        """``(position in the data, detokenized hypothesis)`` of each item, decoded as
        :meth:`test_step` decodes; :class:`HypothesesFile` writes them in the data's order."""
        texts = self._texts(self._best_hypotheses(batch))
        return list(zip(batch.indices.tolist(), texts, strict=True))

    def configure_callbacks(self) -> list[L.Callback]:
        return [HypothesesFile()]

    def _best_hypotheses(self, batch: Any) -> list[Hypothesis]:
        """The best hypothesis of the beam search of each item, with the model's search options
        (as one ensemble with :attr:`ensemble_members`, if any)."""
        decoder = Ensemble([self, *self.ensemble_members]) if self.ensemble_members else self
        return [nbest[0] for nbest in beam_search(decoder, batch, self.search)]

    def _texts(self, hyps: list[Hypothesis]) -> list[str]:
        return [self.tokenizers["tgt"].decode(h.tokens) for h in hyps]

    def on_validation_epoch_start(self) -> None:
        self._decoded.clear()
        self._nll.reset()

    def on_test_epoch_start(self) -> None:
        self._decoded.clear()

    def on_validation_epoch_end(self) -> None:
        scores, _, extra = self._corpus_scores()
        self.log_dict(
            {
                **self._nll.logs("val"),
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
                "test/bleu_lc_tok": scores.bleu_lc_tok,
                **{f"test/{name}": value for name, value in extra.items()},
            }
        )
        out = write_log_file(self.trainer, "test_hypotheses.txt", hyps)
        self.print("".join(f"{name} = {value:.2f}\n" for name, value in extra.items()), end="")
        self.print(f"{scores}\nhypotheses: {out}")
        self.write_test_outputs(hyps)

    def write_test_outputs(self, hyps: list[str]) -> None:
        """Files a model writes beside ``test_hypotheses.txt`` (``hyps`` in the data's order);
        none here."""

    def _collect(self, batch: Any, hyps: list[Hypothesis]) -> None:
        refs = [[r] if isinstance(r, str) else list(r) for r in batch.refs]
        self._decoded.append(_Decoded(batch.indices.tolist(), self._texts(hyps), refs))

    def extra_scores(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
        """Corpus metrics a model adds to BLEU and chrF at validation and test; none here."""
        return {}

    def _corpus_scores(self) -> tuple[CorpusScores, list[str], dict[str, float]]:
        """Scores over the whole split: every rank's hypotheses, each example exactly once; then
        the hypotheses and :meth:`extra_scores`."""
        items = _in_data_order(
            (i, (h, r))
            for part in _all_gather(self._decoded)
            for d in part
            for i, h, r in zip(d.indices, d.hyps, d.refs, strict=True)
        )
        hyps, refs = [h for h, _ in items], [r for _, r in items]
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


class HypothesesFile(BasePredictionWriter):
    """Writes the hypotheses of ``s2s predict``, every rank's, one line per input in the data's
    order, to ``<log dir>/predictions.txt`` (beside ``s2s test``'s ``test_hypotheses.txt``)."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: Sequence[list[tuple[int, str]]],
        batch_indices: Sequence[Any],
    ) -> None:
        hyps = _in_data_order(item for part in _all_gather(predictions) for b in part for item in b)
        out = write_log_file(trainer, "predictions.txt", hyps)
        pl_module.print(f"predictions: {out}")


def write_log_file(trainer: L.Trainer, name: str, lines: list[str]) -> Path:
    """``lines`` into ``<log dir>/name``, written by rank 0. Every rank must call it: under DDP,
    ``trainer.log_dir`` is a broadcast from rank 0."""
    out = Path(trainer.log_dir or trainer.default_root_dir) / name
    if trainer.is_global_zero:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out


def _in_data_order(items: Iterable[tuple[int, T]]) -> list[T]:
    """The values of ``(position in the data, value)`` pairs in the data's order."""
    items = sorted(items, key=lambda item: item[0])
    positions = [i for i, _ in items]
    if len(set(positions)) != len(positions):
        raise RuntimeError("an example was decoded twice: check the batch sampler")
    return [value for _, value in items]


def _all_gather(obj: Any) -> list[Any]:
    """``obj`` from every process (a one-item list without distributed training)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
