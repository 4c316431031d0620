import contextlib
import os
import sys
from types import SimpleNamespace

import pytest

from s2s.io import DataError, read_line_runs


@pytest.fixture
def stdin_pipe(monkeypatch):
    """The write end of a pipe that is stdin."""
    read, write = os.pipe()
    with os.fdopen(read, "rb") as stdin_bytes:
        monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=stdin_bytes))
        yield write
        with contextlib.suppress(OSError):  # a test may have closed it
            os.close(write)


def test_stdin_runs_end_where_input_stops(stdin_pipe):
    runs = read_line_runs("-", max_lines=3)
    os.write(stdin_pipe, b"a\nb\n")
    assert next(runs) == ["a", "b"]  # not waiting for a third line
    os.write(stdin_pipe, b"c\nd\ne\nf\ng\nh")  # the last line is not complete yet
    assert next(runs) == ["c", "d", "e"]  # full
    assert next(runs) == ["f", "g"]
    os.write(stdin_pipe, b"i\r\n\n")
    assert next(runs) == ["hi", ""]
    os.write(stdin_pipe, b"j")
    os.close(stdin_pipe)
    assert list(runs) == [["j"]]  # the end of input completes the last line


def test_bad_utf8_on_stdin_names_its_line(stdin_pipe):
    runs = read_line_runs("-", max_lines=2)
    os.write(stdin_pipe, b"a\nb\nc\n")
    assert next(runs) == ["a", "b"]
    assert next(runs) == ["c"]
    os.write(stdin_pipe, b"d\n\xff\n")
    with pytest.raises(DataError, match=r"^<stdin>:5: invalid UTF-8 \(byte 0"):
        next(runs)


def test_file_runs_are_full(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("a\nb\nc\n", encoding="utf-8")
    assert list(read_line_runs(path, max_lines=2)) == [["a", "b"], ["c"]]


def test_missing_file_fails_before_the_first_run(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_line_runs(tmp_path / "nope.txt", max_lines=2)
