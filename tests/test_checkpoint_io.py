"""Checkpoint files are written atomically and read with clear errors, in and out of the CLI."""

import errno
import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins import TorchCheckpointIO
from tiny import config, write_config, write_corpus

from s2s.checkpoint import CLASS_KEY, CheckpointIO, read_checkpoint, save_checkpoint
from s2s.cli import make_cli

OLD = {CLASS_KEY: "s2s.models.seq2seq.Seq2Seq", "state_dict": {"w": torch.arange(1000.0)}}
NEW = {CLASS_KEY: "s2s.models.seq2seq.Seq2Seq", "state_dict": {"w": -torch.arange(1000.0)}}


class Killed(BaseException):
    """Stands for the run dying in the middle of a save."""


def half_then_die(obj, f, *args, **kwargs):
    """torch.save that writes half of the file, then dies."""
    buffer = io.BytesIO()
    torch.serialization.save(obj, buffer)  # the real save: only torch.save is patched
    half = buffer.getvalue()[: buffer.tell() // 2]
    if isinstance(f, io.IOBase):
        f.write(half)
    else:
        with open(f, "wb") as out:
            out.write(half)
    raise Killed


@pytest.mark.parametrize(
    "checkpoint_io", [CheckpointIO(), TorchCheckpointIO()], ids=["s2s", "lightning"]
)
def test_death_during_save_leaves_the_previous_checkpoint(checkpoint_io, tmp_path, monkeypatch):
    """Ours, and Lightning's own (it serialises to memory first, then renames a temporary file)."""
    path = tmp_path / "last.ckpt"
    checkpoint_io.save_checkpoint(OLD, path)
    monkeypatch.setattr(torch, "save", half_then_die)
    with pytest.raises(Killed):
        checkpoint_io.save_checkpoint(NEW, path)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], OLD["state_dict"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
    checkpoint_io.save_checkpoint(NEW, path)
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], NEW["state_dict"]["w"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 cut short", "not a readable checkpoint"),
        (None, r"not an s2s checkpoint \(no 's2s_class' entry\)"),
    ],
)
def test_load_errors_name_the_file(content, message, tmp_path):
    path = tmp_path / "bad.ckpt"
    if content is None:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        CheckpointIO().load_checkpoint(path)


def test_the_cli_installs_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["s2s"])
    cfg = write_config(tmp_path / "c.yaml", config(tmp_path, write_corpus(tmp_path / "data")))
    cli = make_cli(["--config", str(cfg)], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, CheckpointIO)


def test_a_full_disk_is_a_clear_error_and_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(OLD, path)

    def disk_full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match=f"no space left on device to save {re.escape(str(path))}"):
        save_checkpoint(NEW, path)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], OLD["state_dict"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_file_and_its_rename_are_flushed_to_disk(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        fsync(fd)

    def record_replace(src, dst):
        events.append(("replace", Path(dst).name))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    save_checkpoint(NEW, tmp_path / "last.ckpt")
    tmp = f".last.ckpt.{socket.gethostname()}.{os.getpid()}.tmp"
    assert events == [("fsync", tmp), ("replace", "last.ckpt"), ("fsync", tmp_path.name)]


def test_temporary_files_of_dead_writers_are_removed_at_the_next_save(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = socket.gethostname()
    stale = tmp_path / f".step=5.ckpt.{host}.{int(dead.stdout)}.tmp"  # its writer has exited
    live = tmp_path / f".step=5.ckpt.{host}.{os.getppid()}.tmp"  # maybe still being written
    for tmp in (stale, live):
        tmp.write_bytes(b"partial")
    save_checkpoint(NEW, tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "last.ckpt"])
