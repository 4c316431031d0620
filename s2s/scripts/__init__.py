"""Console scripts that decode with a trained checkpoint."""

from __future__ import annotations

import argparse

import torch


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
