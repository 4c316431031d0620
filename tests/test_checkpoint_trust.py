"""Checkpoints are data: a crafted checkpoint naming a class outside s2s's own is refused, with a
message naming the file, by every command that reads checkpoints, and nothing it names runs.

Each crafted file would run ``touch MARKER`` (``subprocess.Popen``) if s2s built what it names.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny import load_tool, run_cli, write_config

import s2s.models
from s2s.checkpoint import MODEL_CLASSES, CheckpointIO, class_path, load_model, read_checkpoint
from s2s.scripts import caption, sample, translate


def popen(marker: Path) -> dict:
    return {"class_path": "subprocess.Popen", "init_args": {"args": ["touch", str(marker)]}}


def crafted(copy_run: Path, marker: Path) -> dict[str, dict]:
    """name -> checkpoint contents, each naming ``subprocess.Popen`` in another place."""
    real = torch.load(copy_run / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    hparams = real["hyper_parameters"]
    touch = {"args": ["touch", str(marker)]}
    return {
        "model class": {"s2s_class": "subprocess.Popen", "hyper_parameters": touch},
        "LightningCLI class path": {
            **real,
            "hyper_parameters": {**hparams, "_class_path": "subprocess.Popen", **touch},
        },
        "nested class path": {**real, "hyper_parameters": {**hparams, "optim": popen(marker)}},
        "captioner backbone": {
            "s2s_class": "s2s.models.captioner.Captioner",
            "hyper_parameters": {
                "tgt_vocab_size": 10,
                "backbone": "subprocess.Popen",
                "backbone_args": touch,
            },
        },
    }


@pytest.fixture(
    params=["model class", "LightningCLI class path", "nested class path", "captioner backbone"]
)
def hostile(request, copy_run, tmp_path) -> tuple[Path, Path]:
    """(checkpoint path, marker path) of one crafted checkpoint."""
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.ckpt"
    torch.save(crafted(copy_run, marker)[request.param], path)
    return path, marker


REFUSED = "refused: .* not one of s2s's"


def test_readers_refuse_it(hostile):
    path, marker = hostile
    for read in (read_checkpoint, load_model, CheckpointIO().load_checkpoint):
        with pytest.raises(ValueError, match=f"{path}: {REFUSED}"):
            read(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "main", "args"),
    [
        ("s2s-translate", translate.main, ["--ckpt", "{ckpt}"]),
        ("s2s-caption", caption.main, ["--ckpt", "{ckpt}", "{ckpt}"]),
        ("s2s-sample", sample.main, ["--ckpt", "{ckpt}"]),
        ("export", "export", ["{ckpt}", "--output", "{tmp}/out"]),
        ("bench_decode", "bench_decode", ["--ckpt", "{ckpt}"]),
        ("average_checkpoints", "average_checkpoints", ["{ckpt}", "--output", "{tmp}/avg.ckpt"]),
    ],
)
def test_scripts_and_tools_refuse_it(hostile, tmp_path, monkeypatch, name, main, args):
    path, marker = hostile
    if isinstance(main, str):
        main = load_tool(main).main
    monkeypatch.setattr(sys, "stdin", open(__file__, encoding="utf-8"))  # noqa: SIM115
    argv = [a.format(ckpt=path, tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit, match=f"{name}: {path}: {REFUSED}"):
        main(argv)
    assert not marker.exists() and not (tmp_path / "avg.ckpt").exists()


@pytest.mark.parametrize("how", ["test --ckpt_path", "fit --ckpt_path", "fit --model.init_from"])
def test_the_cli_refuses_it(hostile, copy_run, tmp_path, how):
    path, marker = hostile
    subcommand, option = how.split()
    cfg = yaml.safe_load((copy_run / "config.yaml").read_text(encoding="utf-8"))
    cfg["trainer"].update(default_root_dir=str(tmp_path / "run"), logger=False)
    cfg["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    cfg_path = write_config(tmp_path / "config.yaml", cfg)
    with pytest.raises(ValueError, match=f"{path}: {REFUSED}"):
        run_cli(subcommand, "--config", str(cfg_path), option, str(path))
    assert not marker.exists()


def test_every_model_is_trusted_and_nothing_else():
    """The allow-list holds exactly s2s's concrete models, by full name and package alias."""
    models = [getattr(s2s.models, n) for n in s2s.models.__all__ if n != "EncoderDecoderModule"]
    full = {f"{m.__module__}.{m.__qualname__}" for m in models}
    assert full | {f"s2s.models.{m.__qualname__}" for m in models} == MODEL_CLASSES


def test_a_real_checkpoint_still_loads(copy_run):
    model = load_model(copy_run / "run" / "checkpoints" / "last.ckpt")
    assert class_path(model) in MODEL_CLASSES
