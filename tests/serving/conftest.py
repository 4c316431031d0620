"""A real ``s2s serve`` process with a translator, a captioner and a language model, shared by
the server and page tests."""

from __future__ import annotations

import pytest
from tiny import load_tool, subprocess_env

ServerProcess = load_tool("bench_serve").ServerProcess


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
