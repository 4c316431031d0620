"""Checkpoint files: written atomically, read with clear errors, and rebuilt into a model from the
file alone (class, hyperparameters, weights, tokenizers).

A checkpoint is data. It is read with ``torch.load(weights_only=True)``, so no pickled code runs,
and every class it names (the model, and any class path in its hyperparameters) must be one of
s2s's own (:data:`MODEL_CLASSES`, :data:`BACKBONE_CLASSES`), checked before anything is
imported: a crafted file naming ``subprocess.Popen`` is refused, whichever command reads it.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import instantiate_module
from lightning.pytorch.plugins import TorchCheckpointIO

from s2s.io import atomic_write
from s2s.tokenizer import Tokenizer

CLASS_KEY = "s2s_class"  # the checkpoint entry naming the model class

# s2s's models, under their full names (CLASS_KEY) and their package aliases (LightningCLI's
# `_class_path` keeps a recipe's spelling). tests/test_checkpoint_trust.py checks it is complete.
MODEL_CLASSES = frozenset(
    name
    for module, cls in [
        ("seq2seq", "Seq2Seq"),
        ("captioner", "Captioner"),
        ("language_model", "LanguageModel"),
        ("classifier", "SequenceClassifier"),
        ("tagger", "SequenceTagger"),
    ]
    for name in (f"s2s.models.{module}.{cls}", f"s2s.models.{cls}")
)
# The captioner's own class-path backbones: with the models, all that a checkpoint may name.
BACKBONE_CLASSES = frozenset(
    {"s2s.nn.image_encoder.ConvNet"}
    | {f"s2s.nn.image_encoder.EfficientNetLite{v}" for v in range(3)}
)


def class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class TokenizersInCheckpoint:
    """LightningModule mixin: a checkpoint alone restores a usable model, tokenizers included.

    At setup the tokenizers named ``tokenizer_names`` come from the data module
    (``datamodule.{name}_tokenizer``); a checkpoint stores them with the model's class path.
    Fine-tuning on data tokenized differently from the checkpoint is an error.
    """

    tokenizer_names: tuple[str, ...] = ("tgt",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizers: dict[str, Tokenizer] = {}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)  # type: ignore[attr-defined]
        if datamodule is None:
            return
        for name in self.tokenizer_names:
            tok = getattr(datamodule, f"{name}_tokenizer")
            if name in self.tokenizers and self.tokenizers[name] != tok:
                raise ValueError(
                    f"the data's {name} tokenizer differs from the checkpoint's: fine-tuning must "
                    "keep the tokenizer the model was trained with"
                )
            self.tokenizers[name] = tok

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CLASS_KEY] = class_path(self)
        checkpoint["tokenizers"] = {name: tok.proto for name, tok in self.tokenizers.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokenizers = {
            name: Tokenizer(proto) for name, proto in checkpoint.get("tokenizers", {}).items()
        }


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, read as data (``weights_only``); a missing, truncated or foreign
    file, or one naming a class outside s2s's own, is a clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or CLASS_KEY not in ckpt:
        raise ValueError(f"{path}: not an s2s checkpoint (no {CLASS_KEY!r} entry)")
    check_trusted(ckpt, path)
    return ckpt


def check_trusted(ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint that names a class outside s2s's models and backbones: building it
    would import and call whatever the file says."""
    if ckpt[CLASS_KEY] not in MODEL_CLASSES:
        raise ValueError(
            f"{path}: refused: its model class {ckpt[CLASS_KEY]!r} is not one of s2s's models; "
            "s2s builds nothing else from a checkpoint"
        )
    for key, value in _class_paths(ckpt.get("hyper_parameters", {}), "hyper_parameters"):
        if value not in MODEL_CLASSES | BACKBONE_CLASSES:
            raise ValueError(
                f"{path}: refused: {key} names {value!r}, not one of s2s's own classes; "
                "s2s builds nothing else from a checkpoint"
            )


def _class_paths(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(location, value) of every class path in a nested hyperparameter structure: any value of
    a ``class_path`` key, and a ``backbone`` with a dot (without one it names a torchvision model,
    looked up in torchvision's registry)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("_class_path", "class_path") or (
                key == "backbone" and isinstance(value, str) and "." in value
            ):
                yield f"{where}.{key}", value
            else:
                yield from _class_paths(value, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _class_paths(value, f"{where}[{i}]")


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` atomically (:func:`~s2s.io.atomic_write`).

    Temporary files of earlier saves whose writer died are removed first (they are as large as a
    checkpoint); a full disk is an ``OSError`` naming the file instead of a bare ``ENOSPC``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_files(path.parent)
    try:
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on device to save {path}") from None
        raise


def _remove_stale_tmp_files(folder: Path) -> None:
    """Remove ``save_checkpoint``'s temporary files in ``folder`` left by dead processes of this
    host (another host's processes cannot be checked; POSIX only: elsewhere ``os.kill(pid, 0)``
    signals the process)."""
    if os.name != "posix":
        return
    for tmp in folder.glob(f".*.{socket.gethostname()}.*.tmp"):
        pid = tmp.name.removesuffix(".tmp").rpartition(".")[2]
        if pid.isdigit() and not _process_exists(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class CheckpointIO(TorchCheckpointIO):
    """How ``s2s`` runs save and load checkpoint files (the CLI installs it as a trainer plugin).

    Lightning's own save is atomic only when the system temp folder shares the checkpoint's file
    system: it renames a file from there, which becomes an interruptible copy across file systems
    (node-local ``/tmp`` on most clusters). This one saves with :func:`save_checkpoint`, and loads
    with :func:`read_checkpoint`: as data, s2s's classes only, with errors naming the file where
    Lightning fails with a bare ``KeyError`` on a foreign file. Remote URLs (``s3://``) keep
    Lightning's transfer, with the same rules.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        # A checkpoint is data: never unpickled as code, whatever weights_only asks.
        if "://" in str(path):
            ckpt = super().load_checkpoint(path, map_location, weights_only=True)
            check_trusted(ckpt, path)
            return ckpt
        return read_checkpoint(path, map_location)


def regroup_flat_options(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` of a checkpoint written before the RNN options became the ``encoder`` and
    ``decoder`` groups (EncoderConfig, DecoderConfig), with its flat options moved into them: a
    flat option goes to every group that has a field of its name, ``encoder_layers`` and
    ``decoder_layers`` to their group's ``num_layers``. Newer hyperparameters are returned as
    they are."""
    params = inspect.signature(cls).parameters
    groups = [g for g in ("encoder", "decoder") if g in params and g not in hparams]
    if not groups:
        return hparams
    moved = {f"{g}_layers" for g in groups}
    for group in groups:
        default = params[group].default
        options = {f.name: hparams[f.name] for f in fields(default) if f.name in hparams}
        if f"{group}_layers" in hparams:
            options["num_layers"] = hparams[f"{group}_layers"]
        moved |= options.keys()
        # the CLI's hyperparameters hold groups as dicts, a model built in Python as configs
        grouped = {**asdict(default), **options}
        hparams[group] = grouped if "_instantiator" in hparams else type(default)(**grouped)
    return {k: v for k, v in hparams.items() if k not in moved}


def load_model(
    path: str | Path, map_location: Any = "cpu", dtype: torch.dtype | None = None
) -> L.LightningModule:
    """The model saved in ``path``, in eval mode; its floating-point weights cast to ``dtype``
    when given (bfloat16 decodes faster on hardware with bfloat16 matrix products)."""
    ckpt = read_checkpoint(path, map_location)  # refuses any class but s2s's own
    module_name, _, name = ckpt[CLASS_KEY].rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    hparams = regroup_flat_options(cls, dict(ckpt["hyper_parameters"]))
    if hparams.pop("_instantiator", None):
        # Built by LightningCLI: nested configs were saved as dicts, and jsonargparse turns them
        # back into their dataclasses (OptimConfig, SearchConfig).
        model = instantiate_module(cls, hparams)
    else:
        model = cls(**hparams)
    model.on_load_checkpoint(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device=map_location, dtype=dtype).eval()
