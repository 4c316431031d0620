"""Reading text (files, gzip files or stdin) with errors that name the file and line; writing
files atomically."""

from __future__ import annotations

import gzip
import os
import socket
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class DataError(ValueError):
    """Bad input data: the message names the file (and line where it applies)."""


def plain_or_gz(path: Path, what: str) -> Path:
    """``path``, else ``path.gz``: data files may be stored either way; ``what`` (which file was
    wanted) completes the error when neither exists."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{path}[.gz]: no such file ({what})")


def decode_lines(raw_lines: Iterable[bytes], name: str) -> list[str]:
    """UTF-8 lines without line endings; ``name`` labels errors."""
    lines = []
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as e:
            reason = f"invalid UTF-8 (byte {e.start}: {e.reason})"
            raise DataError(f"{name}:{lineno}: {reason}") from None
    return lines


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file (``.gz`` is decompressed; ``-`` is stdin)."""
    if str(path) == "-":
        return decode_lines(sys.stdin.buffer, "<stdin>")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return decode_lines(f, str(path))
    except (OSError, EOFError, zlib.error) as e:  # truncated or corrupt gzip
        raise DataError(f"{path}: cannot read ({e})") from None


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only once written and flushed to disk: a run killed (or
    a machine crashed) while writing leaves the previous file whole.

    The temporary file ``.{name}.{host}.{pid}.tmp`` sits next to ``path``, so the rename is atomic
    (same file system); it is removed when writing fails.
    """
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a crash
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # folders cannot be opened elsewhere
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_parallel(src: str | Path, tgt: str | Path) -> tuple[list[str], list[str]]:
    """Line-aligned source and target files; a line-count mismatch is an error."""
    src_lines, tgt_lines = read_lines(src), read_lines(tgt)
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{src} has {len(src_lines)} lines but {tgt} has {len(tgt_lines)}: "
            "parallel files must be line-aligned"
        )
    return src_lines, tgt_lines
