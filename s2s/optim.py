"""Optimiser and learning-rate schedule: linear warmup, then halving when validation BLEU stalls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser settings (``model.optim`` in recipes).

    Args:
        optimizer: Adam, or AdamW (decoupled weight decay).
        lr: Peak learning rate.
        weight_decay: L2 (Adam) or decoupled (AdamW) weight decay.
        warmup_steps: Optimizer steps of linear warmup from ``lr / warmup_steps`` to ``lr``.
        plateau_patience: Validations without a BLEU gain before the LR is multiplied by
            ``plateau_factor``.
        plateau_factor: LR decay factor on a plateau.
        min_lr: The LR never decays below this.
    """

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    min_lr: float = 1e-5

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.min_lr < 0 or not 0 < self.plateau_factor < 1:
            raise ValueError(f"invalid optimiser settings: {self}")
        if self.warmup_steps < 0 or self.plateau_patience < 0:
            raise ValueError(f"warmup_steps and plateau_patience must be >= 0: {self}")


def configure_optimizers(
    params: Iterable[Any],
    config: OptimConfig,
    monitor: str = "val/bleu",
    mode: Literal["min", "max"] = "max",
) -> tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
    """What ``LightningModule.configure_optimizers`` returns for ``config``.

    ``params`` may be parameter groups with their own ``lr``. Warmup is a chainable ``LinearLR``
    that leaves the LR alone once it ends, so the plateau schedule's reductions persist. The
    plateau schedule watches ``monitor``, which improves upwards (``max``) or downwards (``min``,
    e.g. perplexity).
    """
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = cls(params, lr=config.lr, weight_decay=config.weight_decay)
    schedulers = [
        {
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode=mode,
                factor=config.plateau_factor,
                patience=config.plateau_patience,
                min_lr=config.min_lr,
            ),
            "monitor": monitor,
            "interval": "epoch",
            "strict": False,  # runs without validation keep a constant LR
        }
    ]
    if config.warmup_steps > 0:
        warmup = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1 / config.warmup_steps, total_iters=config.warmup_steps
        )
        schedulers.append({"scheduler": warmup, "interval": "step"})
    return [optimizer], schedulers


# Checkpoints keep the config in their hyperparameters; let torch.load(weights_only=True) read it.
torch.serialization.add_safe_globals([OptimConfig])
