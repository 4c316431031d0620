"""``s2s-translate`` and ``s2s-sample --input -`` answer a line fed alone before the next one is
sent, as an interactive user or a pipeline stage needs (subprocesses on real pipes)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest
from tiny import subprocess_env


class Lines:
    """Lines of a pipe as they arrive, read below Python's buffering (whose buffer ``select``
    cannot see); a line that does not come within ``timeout`` seconds fails the test."""

    def __init__(self, pipe, timeout: float = 120) -> None:
        self.fd, self.timeout, self.pending = pipe.fileno(), timeout, b""

    def next(self) -> str:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                pytest.fail(f"no output line within {self.timeout} s")
            block = os.read(self.fd, 1 << 16)
            if not block:
                pytest.fail("the output ended")
            self.pending += block
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


def converse(module: str, args: list[str], prompts: list[str], lines_per_prompt: int) -> list:
    """Send each prompt only after the answers to the previous one have arrived."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=subprocess_env(),
    )
    answers, lines = [], Lines(process.stdout)
    try:
        for prompt in prompts:
            process.stdin.write(prompt.encode() + b"\n")
            process.stdin.flush()
            answers.append([lines.next() for _ in range(lines_per_prompt)])
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    assert lines.pending == b"" and process.stdout.read() == b""
    return answers


def test_translate_answers_each_line_before_the_next(copy_run, tmp_path, capsys):
    from s2s.scripts.translate import main as translate

    ckpt = str(copy_run / "run" / "checkpoints" / "last.ckpt")
    lines = ["a b c d", "e f g"]
    answers = converse("s2s.scripts.translate", ["--ckpt", ckpt], lines, 1)
    source = tmp_path / "src.txt"
    source.write_text("".join(line + "\n" for line in lines))
    translate(["--ckpt", ckpt, "--input", str(source)])  # all at once: the same translations
    assert [a[0] for a in answers] == capsys.readouterr().out.splitlines()


def test_sample_answers_each_prompt_before_the_next(lm_ckpt, capsys):
    from s2s.scripts.sample import main as sample

    options = ["--ckpt", str(lm_ckpt), "--num-samples", "2", "--max-len", "12", "--seed", "3"]
    answers = converse("s2s.scripts.sample", [*options, "--input", "-"], ["the", "a b"], 2)
    for prompt, got in zip(["the", "a b"], answers, strict=True):
        sample([*options, "--prompt", prompt])  # alone: the same samples
        assert got == capsys.readouterr().out.splitlines()
        assert all(text.startswith(prompt) for text in got)
