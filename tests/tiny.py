"""A tiny synthetic corpus, the one translator config builder of the tests (conftest.py's copy
run overrides it), a quiet Trainer, and helpers to train in a few seconds.

Shared by the tests of DDP, resuming, callbacks, fine-tuning, precision, the tools and bad
input. The corpus is one template ("the {adj} {noun} {verb} in the park .") so that a few dozen
steps give non-zero BLEU. Subprocess runs import :class:`RecordBatches` from here
(``PYTHONPATH=tests``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import torch
import yaml
from PIL import Image

from s2s.cli import main as s2s_main
from s2s.data import TranslationData
from s2s.tokenizer import TokenizerConfig

TESTS = Path(__file__).parent
NOUNS = [("Hund", "dog"), ("Katze", "cat"), ("Mann", "man"), ("Frau", "woman"), ("Kind", "child")]
ADJS = [("kleine", "little"), ("große", "big"), ("alte", "old"), ("junge", "young")]
VERBS = [("läuft", "runs"), ("schläft", "sleeps"), ("spielt", "plays")]
PAIRS = [
    (f"der {a} {n} {v} im Park .", f"the {ae} {ne} {ve} in the park .")
    for n, ne in NOUNS
    for a, ae in ADJS
    for v, ve in VERBS
]  # 60 pairs, split 36 / 12 / 12 by position modulo 5 so every split mixes all words
SPLITS = {"train": [0, 1, 2], "val": [3], "test": [4]}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_corpus(root: Path) -> Path:
    """``root/{train,val,test}.{de,en}``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for split, residues in SPLITS.items():
        pairs = [p for i, p in enumerate(PAIRS) if i % 5 in residues]
        write_lines(root / f"{split}.de", [de for de, _ in pairs])
        write_lines(root / f"{split}.en", [en for _, en in pairs])
    return root


def config(
    work: Path,
    data_dir: Path,
    *,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    **trainer: Any,
) -> dict[str, Any]:
    """A CLI config of a 16-unit attention translator on ``data_dir``; ``model``, ``data`` and
    ``trainer`` override (or add) model and data init_args and trainer arguments."""
    return {
        "seed_everything": 1,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(work),
            **trainer,
        },
        "model": {
            "class_path": "s2s.models.Seq2Seq",
            "init_args": {
                # no dropout, no random state: resumed runs retrace uninterrupted ones
                "encoder": {"embedding_size": 16, "hidden_size": 16, "dropout": 0.0},
                "decoder": {"embedding_size": 16, "hidden_size": 16, "dropout": 0.0},
                "label_smoothing": 0.0,
                "optim": {"lr": 0.02},
                "search": {"beam_size": 2, "max_len_a": 0.0, "max_len_b": 12},
                **(model or {}),
            },
        },
        "data": {
            "class_path": "s2s.data.TranslationData",
            "init_args": {
                "data_dir": str(data_dir),
                "test_split": "test",
                "tokenizer": {
                    "type": "bpe",  # whole words on this corpus: 8-10 tokens a sentence
                    "vocab_size": 400,
                    "cache_dir": str(work / "tokenizers"),
                },
                "max_len": 30,
                "max_tokens": 40,
                "eval_max_tokens": 200,
                **(data or {}),
            },
        },
    }


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """A one-CPU Trainer without logger, checkpoints, progress bar or summary; ``kwargs``
    override or add."""
    quiet = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**quiet | kwargs)


def checkpointing(dirpath: Path, **kwargs: Any) -> dict[str, Any]:
    """An s2s ModelCheckpoint callback entry for ``config(..., callbacks=[...])``."""
    return {
        "class_path": "s2s.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(dirpath), "enable_version_counter": False, **kwargs},
    }


def translation_data(init_args: dict[str, Any]) -> TranslationData:
    """The data module of a config's ``data.init_args`` (a dict), built in Python."""
    tokenizer = TokenizerConfig(**init_args.get("tokenizer", {}))
    return TranslationData(**init_args | {"tokenizer": tokenizer})


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def run_cli(*args: str) -> None:
    """``s2s ARGS`` in this process."""
    argv = sys.argv
    sys.argv = ["s2s"]  # LightningCLI warns about pytest's own arguments
    try:
        s2s_main(list(args))
    finally:
        sys.argv = argv


def run_cli_subprocess(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``s2s ARGS`` in a fresh interpreter (DDP launches its ranks from its command line)."""
    return subprocess.run(
        [sys.executable, "-m", "s2s.cli", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def subprocess_env() -> dict[str, str]:
    """The environment of subprocess runs: this folder importable, one thread per process (as
    conftest.py sets for this one: tiny models on a busy machine run 10x faster)."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def load_tool(name: str) -> ModuleType:
    """The script ``tools/{name}.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, TESTS.parent / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class RecordBatches(L.Callback):
    """Writes, per rank, the example indices of every training and validation batch to
    ``{out}/rank{r}.json``: ``{"train": [[...], ...], "val": [[...], ...]}``."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.seen: dict[str, list[list[int]]] = {"train": [], "val": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen["train"].append(batch.indices.tolist())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dl_idx=0) -> None:
        if not trainer.sanity_checking:
            self.seen["val"].append(batch.indices.tolist())

    def on_fit_end(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.seen), encoding="utf-8")


# --- a captioner: two-colour scenes, captioned "{left} left of {right}"

SCENES = {"rg.png": ("red", "green"), "gr.png": ("green", "red"), "by.png": ("blue", "yellow")}
RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
CAPTIONS = {name: f"{a} left of {b}" for name, (a, b) in SCENES.items()}


def write_scenes(images: Path, scenes: dict[str, tuple[str, str]] = SCENES) -> Path:
    """``scenes`` (name: left and right colour) as 32x32 PNGs in ``images``, with their captions
    in ``captions.tsv``; returns the TSV."""
    images.mkdir(parents=True, exist_ok=True)
    for name, (left, right) in scenes.items():
        img = Image.new("RGB", (32, 32), RGB[left])
        img.paste(RGB[right], (16, 0, 32, 32))
        img.save(images / name)
    tsv = images / "captions.tsv"
    tsv.write_text("".join(f"{n}\t{a} left of {b}\n" for n, (a, b) in scenes.items()))
    return tsv


def caption_recipe(root: Path, tsv: Path, attention: str) -> dict:
    """A recipe that learns the scenes in 120 steps, saved as ``root/checkpoints/last.ckpt``."""
    source = {"class_path": "s2s.data.TsvCaptions", "init_args": {"file": str(tsv)}}
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 120,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "default_root_dir": str(root),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(root / "checkpoints"), "filename": "last"},
                }
            ],
        },
        "model": {
            "class_path": "s2s.models.Captioner",
            "init_args": {
                "backbone": "s2s.nn.image_encoder.ConvNet",
                "backbone_args": {"channels": [8, 16]},
                "image_size": 32,
                "decoder": {
                    "embedding_size": 16,
                    "hidden_size": 32,
                    "attention": attention,
                    "dropout": 0.0,
                },
                "optim": {"lr": 0.03},
                "search": {"beam_size": 2, "max_len_b": 8},
            },
        },
        "data": {
            "class_path": "s2s.data.CaptionData",
            "init_args": {
                "train": source,
                "val": source,
                "tokenizer": {"type": "bpe", "vocab_size": 320, "cache_dir": str(root / "cache")},
                "batch_size": 4,
            },
        },
    }


def flat_options_checkpoint(path: Path, out: Path) -> Path:
    """``path`` as s2s wrote it before the encoder and decoder option groups: flat options."""
    ckpt = torch.load(path, weights_only=True)
    hparams = ckpt["hyper_parameters"]
    # the CLI saves the groups as dicts, a model built in Python as configs
    encoder, decoder = (
        asdict(g) if is_dataclass(g) else dict(g)
        for g in (hparams.pop("encoder"), hparams.pop("decoder"))
    )
    assert {k: encoder[k] for k in ("embedding_size", "hidden_size", "cell", "dropout")} == {
        k: decoder[k] for k in ("embedding_size", "hidden_size", "cell", "dropout")
    }  # one flat value each could hold them
    hparams |= {
        "encoder_layers": encoder.pop("num_layers"),
        "decoder_layers": decoder.pop("num_layers"),
        **encoder,
        **decoder,
    }
    torch.save(ckpt, out)
    return out
