"""Callbacks that Lightning lacks: stop on a non-finite loss, random states in checkpoints, freeze
the encoder; a ModelCheckpoint whose last.ckpt is always the latest state; test and predict with an
ensemble."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import torch
from torch import Tensor


class StopOnNonFiniteLoss(L.Callback):
    """Stop training with a clear error as soon as the training loss is NaN or infinite.

    The check runs before the backward pass, so neither the weights nor the optimizer state take
    the bad step: the last checkpoint is usable to resume from (with a lower learning rate, say).
    Lightning's own checks act too late for that: ``EarlyStopping(check_finite=True)`` looks at
    the end of an epoch or validation, after the NaN has reached the weights and any checkpoint
    written since; ``Trainer(detect_anomaly=True)`` traces every operation and is slow. Under DDP
    all ranks stop together (one boolean all-reduce a step), so none waits for a stopped one.
    ``s2s`` adds it to every run.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor):
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        where = f"{loss.item()}" if not finite else "not finite on another rank"
        raise FloatingPointError(
            f"training loss {where} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}): stopped before the update, so the last checkpoint is "
            "usable; resume from it (--ckpt_path last) with a lower learning rate or gradient "
            "clipping"
        )


class RandomStateInCheckpoint(L.Callback):
    """Checkpoints carry the random number generators' states, restored on resume, so that a
    resumed run with dropout retraces the uninterrupted one (Lightning saves none of them).

    Torch's CPU generator, the current CUDA device's when there is one, and Python's ``random``;
    not NumPy's, which s2s does not use and whose state (an array) ``torch.load(weights_only=True)``
    refuses. Under DDP the checkpoint holds rank 0's states, which every rank gets back.
    ``s2s`` adds it to every run.
    """

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state(state_dict["cuda"])


class FreezeEncoder(L.Callback):
    """Keep the model's ``encoder`` fixed for the first ``epochs`` epochs (fine-tuning: let a new
    decoder-side task settle before the encoder adapts).

    The encoder's gradients are dropped before every optimizer step of those epochs; optimizers
    skip parameters without gradients, and gradient clipping never sees them. Unlike Lightning's
    ``BaseFinetuning`` (``requires_grad=False``) this is correct under DDP, which registers the
    parameters to synchronise once, when it wraps the model, and would never synchronise an
    encoder unfrozen later.

    Args:
        epochs: Epochs (from the first, counting any already trained) with a frozen encoder.
    """

    def __init__(self, epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"FreezeEncoder needs epochs >= 1, got {epochs}")
        self.epochs = epochs

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(getattr(pl_module, "encoder", None), torch.nn.Module):
            raise ValueError(f"FreezeEncoder: {type(pl_module).__name__} has no `encoder` module")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if trainer.current_epoch < self.epochs:
            for param in pl_module.encoder.parameters():
                param.grad = None


class ModelCheckpoint(L.pytorch.callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``last.ckpt`` is the latest state at every save point.

    With a ``monitor``, Lightning rewrites ``last.ckpt`` at the end of a validation (or training
    epoch) only when the monitored metric improves, so resuming with ``--ckpt_path last`` after a
    kill, or after a run ended by ``max_steps``/``max_time``, would silently go back to the last
    improvement. This one also writes it when the metric got worse.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: L.Trainer) -> None:
        """Save ``last.ckpt`` unless this step was saved already (or saving is off now)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class EnsembleWith(L.Callback):
    """Test and predict with the model and the models of ``checkpoints`` decoding as one
    :class:`~s2s.decoding.ensemble.Ensemble` (``s2s test --ckpt_path A --ensemble [B, C]``).

    The members are loaded when testing or predicting starts, on the model's device and in its
    dtype; they must be models of the same class with the same vocabularies (and, for captioners,
    the same image preprocessing), else the run stops with one line naming the checkpoint.
    """

    def __init__(self, checkpoints: list[str]) -> None:
        self.checkpoints = list(checkpoints)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._join(trainer, pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._join(trainer, pl_module)

    def _join(self, trainer: L.Trainer, model: L.LightningModule) -> None:
        from s2s.scripts import check_members, load_models  # the scripts import the models

        members = load_models(self.checkpoints, model.device, model.dtype, "s2s")
        for path, member in zip(self.checkpoints, members, strict=True):
            if type(member) is not type(model):
                raise SystemExit(
                    f"s2s: {path} holds a {type(member).__name__}, not a "
                    f"{type(model).__name__}: cannot ensemble"
                )
        check_members([str(trainer.ckpt_path), *self.checkpoints], [model, *members], "s2s")
        model.ensemble_members = members
