"""Average the weights of a run's last N checkpoints into one checkpoint.

Averaging the last few checkpoints of a run usually scores a little better than any one of them
(Vaswani et al. 2017, "Attention Is All You Need"; fairseq's ``average_checkpoints.py``).

    python tools/average_checkpoints.py runs/X/checkpoints/*.ckpt --last 5 --output runs/X/avg.ckpt

"Last" is by training step (each checkpoint's ``global_step``); files of the same step count once,
so ``last.ckpt`` next to the step checkpoint it copies does not weigh twice. Every input must hold
the same model: class, parameter names and shapes, tokenizers. The output is the newest input with
the averaged weights and without optimizer and scheduler state: ``load_model``, ``s2s-translate``
and ``s2s test --ckpt_path`` read it; training cannot resume from it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from s2s.checkpoint import CLASS_KEY, read_checkpoint, save_checkpoint

TRAINING_STATE = ("optimizer_states", "lr_schedulers")


def latest(paths: Sequence[Path], n: int | None) -> list[Path]:
    """The ``n`` (all if None) checkpoints of the highest distinct steps, oldest first.

    Each is first checked to hold the same model as the first in name order, so that two models
    saved at the same step are an error, not one of them silently dropped.
    """
    paths = sorted(paths)
    reference = read_checkpoint(paths[0])
    by_step: dict[int, Path] = {}
    for path in paths:
        ckpt = read_checkpoint(path)
        difference = _model_difference(reference, ckpt)
        if difference:
            raise ValueError(f"{path} and {paths[0]}: not the same model ({difference})")
        if "global_step" not in ckpt:
            raise ValueError(f"{path}: no 'global_step' entry, so no training step to order by")
        by_step[ckpt["global_step"]] = path
    steps = sorted(by_step)
    return [by_step[s] for s in steps[-n if n else 0 :]]


def _model_difference(reference: dict[str, Any], ckpt: dict[str, Any]) -> str | None:
    """How the model of ``ckpt`` differs from that of ``reference``: class, parameter names and
    shapes, tokenizers; None if it does not."""
    if ckpt[CLASS_KEY] != reference[CLASS_KEY]:
        return f"{ckpt[CLASS_KEY]} vs {reference[CLASS_KEY]}"
    shapes = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    expected = {k: tuple(v.shape) for k, v in reference["state_dict"].items()}
    for name in sorted(shapes.keys() | expected.keys()):
        if shapes.get(name) != expected.get(name):
            return f"parameter {name}: {shapes.get(name)} vs {expected.get(name)}"
    if ckpt.get("tokenizers") != reference.get("tokenizers"):
        return "different tokenizers"
    return None


def average(paths: Sequence[Path]) -> dict[str, Any]:
    """The last of ``paths`` (checkpoints of one model, see :func:`latest`) with its
    floating-point weights replaced by the mean over all.

    Sums in float64, reading one checkpoint at a time; integer buffers keep the last's values.
    """
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        ckpt = read_checkpoint(path)
        if not total:
            total = {k: v.double() for k, v in ckpt["state_dict"].items()}
            continue
        for name, value in ckpt["state_dict"].items():
            total[name] += value.double()
    # ckpt is the newest: it keeps its own metadata and integer buffers.
    ckpt["state_dict"] = {
        name: (total[name] / len(paths)).to(value.dtype) if value.is_floating_point() else value
        for name, value in ckpt["state_dict"].items()
    }
    for key in TRAINING_STATE:
        ckpt.pop(key, None)
    return ckpt


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints of one run")
    p.add_argument("--last", type=int, help="average the N latest (default: all)")
    p.add_argument("--output", type=Path, required=True, help="the averaged checkpoint")
    args = p.parse_args(argv)
    if args.last is not None and args.last < 1:
        p.error("--last must be at least 1")
    try:
        paths = latest(args.checkpoints, args.last)
        save_checkpoint(average(paths), args.output)
    except ValueError as e:
        sys.exit(f"average_checkpoints: {e}")
    print(f"averaged {len(paths)} checkpoints -> {args.output}")
    for path in paths:
        print(f"  {path}")


if __name__ == "__main__":
    main()
