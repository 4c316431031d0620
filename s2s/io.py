"""Reading text (files, gzip files or stdin) with errors that name the file and line; writing
files atomically."""

from __future__ import annotations

import gzip
import os
import select
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


def decode_lines(raw_lines: Iterable[bytes], name: str, first_lineno: int = 1) -> list[str]:
    """UTF-8 lines without line endings; ``name`` and the line numbers from ``first_lineno``
    label errors."""
    lines = []
    for lineno, raw in enumerate(raw_lines, start=first_lineno):
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


def read_line_runs(path: str | Path, max_lines: int) -> Iterator[list[str]]:
    """The lines of ``path`` (as :func:`read_lines` reads them) in consecutive runs of at most
    ``max_lines``.

    A file is read (and checked) at once. Stdin is read as it comes: a run ends where no more
    input is available without waiting, so a program fed line by line (a terminal, a pipe from
    an interactive producer) gets each line as soon as it arrives, while input available all at
    once still fills runs. A bad line of stdin is an error only when its run is reached.
    """
    if str(path) != "-":
        lines = read_lines(path)
        return (lines[i : i + max_lines] for i in range(0, len(lines), max_lines))
    return _available_runs(sys.stdin.buffer.fileno(), "<stdin>", max_lines)


def _available_runs(fd: int, name: str, max_lines: int) -> Iterator[list[str]]:
    """Runs of complete lines read from file descriptor ``fd``: full ones, or whatever is
    complete when reading more would wait. Reads the descriptor itself, below Python's buffers,
    which would hide available input from ``select``."""
    lines: list[bytes] = []
    pending = b""  # a line not yet complete
    lineno = 1
    eof = False
    while not eof:
        block = os.read(fd, 1 << 16)  # waits for input
        eof = not block
        *complete, pending = (pending + block).split(b"\n")
        lines += [*complete, pending] if eof and pending else complete
        while lines and (eof or len(lines) >= max_lines or not _readable(fd)):
            run, lines = lines[:max_lines], lines[max_lines:]
            yield decode_lines(run, name, first_lineno=lineno)
            lineno += len(run)


def _readable(fd: int) -> bool:
    """Whether reading ``fd`` would return at once (input or end of input)."""
    return bool(select.select([fd], [], [], 0)[0])


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
