import sys
from pathlib import Path

import pytest
import yaml

from s2s.cli import main as s2s_main
from s2s.scripts.sample import main


@pytest.fixture(scope="module")
def lm_ckpt(tmp_path_factory) -> Path:
    """``s2s fit`` of a char LM on lines of "hello world": the data's vocabulary is linked."""
    root = tmp_path_factory.mktemp("hello_lm")
    (root / "train.txt").write_text("hello world\n" * 60, encoding="utf-8")
    (root / "val.txt").write_text("hello world\n" * 8, encoding="utf-8")
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 150,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "default_root_dir": str(root),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(root / "ckpt"), "filename": "lm"},
                }
            ],
        },
        "model": {
            "class_path": "s2s.models.LanguageModel",
            "init_args": {
                "embedding_size": 32,
                "hidden_size": 32,
                "num_layers": 1,
                "dropout": 0.0,
                "optim": {"lr": 0.01},
            },
        },
        "data": {
            "class_path": "s2s.data.TextStreamData",
            "init_args": {
                "train_file": str(root / "train.txt"),
                "val_file": str(root / "val.txt"),
                "tokenizer": {"type": "char", "vocab_size": 300, "cache_dir": str(root / "cache")},
                "batch_size": 4,
                "eval_batch_size": 2,
                "tbptt_steps": 16,
            },
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = sys.argv
    sys.argv = ["s2s"]  # LightningCLI warns about pytest's own arguments
    try:
        s2s_main(["fit", "--config", str(root / "config.yaml")])
    finally:
        sys.argv = argv
    return root / "ckpt" / "lm.ckpt"


def sample(capsys, *args: str) -> list[str]:
    main(list(args))
    return capsys.readouterr().out.splitlines()


def test_low_temperature_continues_the_prompt(lm_ckpt, capsys):
    args = ["--ckpt", str(lm_ckpt), "--prompt", "hello w", "--temperature", "0.05"]
    assert sample(capsys, *args) == ["hello world"]
    assert sample(capsys, *args, "--bf16") == ["hello world"]


def test_samples_are_seeded_and_one_per_line(lm_ckpt, capsys):
    args = ["--ckpt", str(lm_ckpt), "--num-samples", "3", "--temperature", "3", "--max-len", "8"]
    first = sample(capsys, *args, "--seed", "1")
    assert len(first) == 3
    assert all(len(line.replace(" ", "")) <= 8 for line in first)
    assert sample(capsys, *args, "--seed", "1") == first
    assert sample(capsys, *args, "--seed", "2") != first


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top-p", "0"], "top_p must be in"),
        (["--num-samples", "0"], "--num-samples must be >= 1"),
    ],
)
def test_bad_options_exit_with_a_message(lm_ckpt, args, message):
    with pytest.raises(SystemExit, match=message):
        main(["--ckpt", str(lm_ckpt), *args])


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"nothing\.ckpt: no such checkpoint"):
        main(["--ckpt", str(tmp_path / "nothing.ckpt")])


def test_a_translator_checkpoint_is_refused(copy_run):
    with pytest.raises(SystemExit, match="holds a Seq2Seq, not a LanguageModel"):
        main(["--ckpt", str(copy_run / "run" / "checkpoints" / "last.ckpt")])
