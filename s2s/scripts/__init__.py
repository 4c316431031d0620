"""Console scripts that decode with a trained checkpoint."""

from __future__ import annotations

import argparse
import sys
from typing import TypeVar

import lightning as L
import torch

from s2s.checkpoint import load_model

M = TypeVar("M", bound=L.LightningModule)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--bf16``, for ``load_model(..., map_location=args.device,
    dtype=args.dtype)``."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--bf16",
        dest="dtype",
        action="store_const",
        const=torch.bfloat16,
        help="decode with bfloat16 weights: faster where the hardware has bfloat16 matrix "
        "products (AVX512-BF16 or AMX CPUs, recent GPUs), slower elsewhere; outputs may differ "
        "slightly from float32's",
    )


def load_model_of_type(args: argparse.Namespace, model_type: type[M], prog: str) -> M:
    """The model of ``args.ckpt`` on ``args.device`` in ``args.dtype``; exits with one line naming
    the file if it cannot be read or holds another kind of model than the script decodes with."""
    try:
        model = load_model(args.ckpt, map_location=args.device, dtype=args.dtype)
    except ValueError as e:
        sys.exit(f"{prog}: {e}")
    if not isinstance(model, model_type):
        sys.exit(f"{prog}: {args.ckpt} holds a {type(model).__name__}, not a {model_type.__name__}")
    return model
