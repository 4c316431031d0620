"""Train and test one recipe in several precisions, side by side: does each run on this hardware,
and is the quality the same at the same step?

    python tools/precision_check.py --accelerator gpu --epochs 2 --out /tmp/precisions

writes a config per precision under OUT (the recipe with its run folders moved there, the trainer
options applied, no time limit), runs ``s2s fit`` then ``s2s test`` on its best checkpoint, and
prints each precision's exit codes, wall times and test scores.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def precision_config(recipe: dict[str, Any], out: Path, args: argparse.Namespace, p: str) -> dict:
    """``recipe`` for precision ``p``, every run folder under ``out / p``."""
    cfg = yaml.safe_load(yaml.safe_dump(recipe))  # a deep copy
    trainer, run = cfg["trainer"], str(out / p)
    trainer.pop("max_time", None)
    trainer.update(
        accelerator=args.accelerator,
        devices=1,
        precision=p,
        max_epochs=args.epochs,
        default_root_dir=run,
        enable_progress_bar=False,
    )
    if isinstance(trainer.get("logger"), dict):
        trainer["logger"]["init_args"]["save_dir"] = run
    for callback in trainer.get("callbacks", []):
        if "dirpath" in callback.get("init_args", {}):
            callback["init_args"]["dirpath"] = f"{run}/checkpoints"
    return cfg


def s2s(*args: str, log: Path) -> tuple[int, float, str]:
    """Exit code, seconds and output of ``s2s ARGS`` (its output also written to ``log``)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "s2s.cli", *args], capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr, encoding="utf-8")
    return done.returncode, time.perf_counter() - start, done.stdout


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, default=Path("recipes/multi30k_de_en_demo.yaml"))
    p.add_argument("--accelerator", default="gpu")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--precisions", nargs="+", default=PRECISIONS)
    p.add_argument("--out", type=Path, required=True, help="folder for configs, runs and logs")
    args = p.parse_args(argv)
    recipe = yaml.safe_load(args.recipe.read_text(encoding="utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    for precision in args.precisions:
        config = args.out / f"{precision}.yaml"
        config.write_text(yaml.safe_dump(precision_config(recipe, args.out, args, precision)))
        fit_rc, fit_s, _ = s2s(
            "fit", "--config", str(config), log=args.out / f"{precision}.fit.log"
        )
        best = args.out / precision / "checkpoints" / "best.ckpt"
        test_rc, test_s, out = s2s(
            "test",
            "--config",
            str(config),
            "--ckpt_path",
            str(best),
            log=args.out / f"{precision}.test.log",
        )
        scores = dict(re.findall(r"(test/[\w-]+)[\s│]+([-\d.]+)", out))  # Lightning's table
        print(
            f"{precision}: fit rc {fit_rc} {fit_s:.0f} s, test rc {test_rc} {test_s:.0f} s, "
            + ", ".join(f"{k} {float(v):.2f}" for k, v in sorted(scores.items()))
        )


if __name__ == "__main__":
    main()
