"""A real ``s2s serve`` process with a translator, a captioner and a language model, shared by
the server and page tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import load_tool, run_cli, subprocess_env, write_config, write_lines

ServerProcess = load_tool("bench_serve").ServerProcess


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


@pytest.fixture(scope="session")
def server(copy_run, caption_run, lm_ckpt, tmp_path_factory):
    """One server with all three kinds of model; batches of up to 8 requests."""
    ckpts = [copy_run / "run" / "checkpoints" / "last.ckpt", caption_run[1], lm_ckpt]
    args = [a for ckpt in ckpts for a in ("--ckpt", str(ckpt))]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    options = ["--max-batch-size", "8", "--batch-timeout", "0.05", "--max-sentences", "8"]
    server = ServerProcess(*args, *options, log=log, env=subprocess_env())
    yield server
    server.stop()
    assert server.process.returncode is not None
