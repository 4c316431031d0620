"""Shared fixtures: a tiny copy-task corpus, a recipe for it, and a checkpoint trained on it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tiny import caption_recipe, config, run_cli, write_config, write_lines, write_scenes

# The tests' models are tiny: one thread is faster than two, and much faster on a busy machine.
torch.set_num_threads(1)

SYMBOLS = ["a", "b", "c", "d", "e", "f", "g", "h"]


def copy_pairs(n: int, seed: int) -> list[str]:
    """``n`` sentences of 3-6 random symbols; source and target are the same (a copy task)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(SYMBOLS, k=rng.randint(3, 6))) for _ in range(n)]


def write_corpus(root: Path, splits: dict[str, list[str]]) -> Path:
    """``{root}/{split}.src`` and ``.tgt`` for each split, both sides equal (a copy task)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        for lang in ("src", "tgt"):
            write_lines(root / f"{split}.{lang}", lines)
    return root


def copy_task_config(run_dir: Path, data_dir: Path, cache_dir: Path, max_steps: int) -> dict:
    """:func:`tiny.config` for a 64-unit Bahdanau-attention model on the copy task in
    ``data_dir``, logging to CSV and saving ``last.ckpt`` under ``run_dir``."""
    return config(
        run_dir,
        data_dir,
        model={
            "encoder": {"embedding_size": 64, "hidden_size": 64, "dropout": 0.0},
            "decoder": {"embedding_size": 64, "hidden_size": 64, "dropout": 0.0},
            "optim": {"lr": 0.01},
            "search": {"beam_size": 3, "max_len_a": 1.5, "max_len_b": 5},
        },
        data={
            "src_lang": "src",
            "tgt_lang": "tgt",
            "tokenizer": {"vocab_size": 300, "cache_dir": str(cache_dir)},
            "max_tokens": 256,
            "eval_max_tokens": 256,
        },
        max_epochs=None,
        max_steps=max_steps,
        gradient_clip_val=1.0,
        log_every_n_steps=10,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger={
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(run_dir), "name": "logs"},
        },
        callbacks=[
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(run_dir / "checkpoints"), "filename": "last"},
            }
        ],
    )


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
    cfg = copy_task_config(root / "run", data_dir, root / "cache", max_steps=150)
    run_cli("fit", "--config", str(write_config(root / "config.yaml", cfg)))
    return root


@pytest.fixture(scope="session")
def caption_run(tmp_path_factory) -> tuple[Path, Path]:
    """The scene images (``tiny.SCENES``) and the checkpoint of a captioner that ``s2s fit``
    trained on them (Bahdanau attention). Tests must not write into them."""
    root = tmp_path_factory.mktemp("caption_run")
    tsv = write_scenes(root / "images")
    run_cli(
        "fit",
        "--config",
        str(write_config(root / "config.yaml", caption_recipe(root, tsv, "bahdanau"))),
    )
    return root / "images", root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def lm_ckpt(tmp_path_factory) -> Path:
    """A character language model after a few steps of ``s2s fit`` (quality does not matter)."""
    root = tmp_path_factory.mktemp("lm_run")
    text = write_lines(root / "train.txt", [f"the {w} runs in the park" for w in "abcdefgh"] * 4)
    recipe = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 5,
            "default_root_dir": str(root),
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(root / "checkpoints"), "filename": "lm"},
                }
            ],
        },
        "model": {
            "class_path": "s2s.models.LanguageModel",
            "init_args": {"embedding_size": 8, "hidden_size": 16, "num_layers": 1},
        },
        "data": {
            "class_path": "s2s.data.TextStreamData",
            "init_args": {
                "train_file": str(text),
                "val_file": str(text),
                "tokenizer": {"type": "char", "cache_dir": str(root / "cache")},
                "batch_size": 2,
                "tbptt_steps": 8,
            },
        },
    }
    run_cli("fit", "--config", str(write_config(root / "lm.yaml", recipe)))
    return root / "checkpoints" / "lm.ckpt"
