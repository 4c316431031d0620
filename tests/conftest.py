"""Shared fixtures: a tiny copy-task corpus, a recipe for it, and a checkpoint trained on it."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
import yaml

from s2s.cli import main as s2s_main

# The tests' models are tiny: one thread is faster than two, and much faster on a busy machine.
torch.set_num_threads(1)

SYMBOLS = ["a", "b", "c", "d", "e", "f", "g", "h"]


def copy_pairs(n: int, seed: int) -> list[str]:
    """``n`` sentences of 3-6 random symbols; source and target are the same (a copy task)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(SYMBOLS, k=rng.randint(3, 6))) for _ in range(n)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_corpus(root: Path, splits: dict[str, list[str]]) -> Path:
    """``{root}/{split}.src`` and ``.tgt`` for each split, both sides equal (a copy task)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        for lang in ("src", "tgt"):
            write_lines(root / f"{split}.{lang}", lines)
    return root


def tiny_recipe(run_dir: Path, data_dir: Path, cache_dir: Path, max_steps: int) -> dict:
    """A LightningCLI config for a small attention model on ``data_dir``, writing under run_dir."""
    return {
        "seed_everything": 1,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": max_steps,
            "gradient_clip_val": 1.0,
            "log_every_n_steps": 10,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(run_dir),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run_dir), "name": "logs"},
            },
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(run_dir / "checkpoints"), "filename": "last"},
                }
            ],
        },
        "model": {
            "class_path": "s2s.models.Seq2Seq",
            "init_args": {
                "embedding_size": 64,
                "hidden_size": 64,
                "attention": "bahdanau",
                "dropout": 0.0,
                "label_smoothing": 0.0,
                "optim": {"lr": 0.01},
                "search": {"beam_size": 3, "max_len_a": 1.5, "max_len_b": 5},
            },
        },
        "data": {
            "class_path": "s2s.data.TranslationData",
            "init_args": {
                "data_dir": str(data_dir),
                "src_lang": "src",
                "tgt_lang": "tgt",
                "test_split": "test",
                "tokenizer": {"vocab_size": 300, "cache_dir": str(cache_dir)},
                "max_tokens": 256,
                "eval_max_tokens": 256,
            },
        },
    }


@pytest.fixture
def copy_corpus(tmp_path) -> Path:
    """A small copy-task corpus in ``tmp_path/data``: train (40 pairs), val and test (4 each)."""
    return write_corpus(
        tmp_path / "data",
        {"train": copy_pairs(40, seed=0), "val": copy_pairs(4, seed=1), "test": copy_pairs(4, 2)},
    )


@pytest.fixture(scope="session")
def copy_run(tmp_path_factory) -> Path:
    """A run folder after ``s2s fit`` on the copy task: ``config.yaml``, ``checkpoints/last.ckpt``.

    Trained once per session; tests must not write into it.
    """
    root = tmp_path_factory.mktemp("copy_run")
    data_dir = write_corpus(
        root / "data",
        {
            "train": copy_pairs(600, seed=0),
            "val": copy_pairs(20, seed=1),
            "test": copy_pairs(30, seed=2),
        },
    )
    config = tiny_recipe(root / "run", data_dir, root / "cache", max_steps=150)
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["s2s"])  # LightningCLI warns about pytest's own arguments
        s2s_main(["fit", "--config", str(config_path)])
    return root
