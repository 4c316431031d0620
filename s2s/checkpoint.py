"""Rebuilding a trained model from its checkpoint alone: class, hyperparameters, weights."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import lightning as L
import torch

CLASS_KEY = "s2s_class"  # the checkpoint entry naming the model class


def class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint's contents; a missing, truncated or foreign file is a clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or CLASS_KEY not in ckpt:
        raise ValueError(f"{path}: not an s2s checkpoint (no {CLASS_KEY!r} entry)")
    return ckpt


def load_model(path: str | Path, map_location: Any = "cpu") -> L.LightningModule:
    """The model saved in ``path``, in eval mode."""
    ckpt = read_checkpoint(path, map_location)
    module_name, _, name = ckpt[CLASS_KEY].rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    model = cls(**ckpt["hyper_parameters"])
    model.on_load_checkpoint(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(map_location).eval()
