"""Throughput of ``s2s serve`` under concurrent clients: batched against one request at a time.

For each ``--max-batch-size`` (default: 1, then 16), back to back, the script starts ``s2s serve
--ckpt CKPT`` on a free loopback port, lets ``--clients`` threads send ``--requests`` requests in
all (each a single sentence of ``--input``, in turn, with the model's own search settings), and
prints requests/s, sentences/s, p50 and p95 latency, and how many answers differ from
``s2s-translate``'s output for the same sentences (run in this process first) or never came.
The last line is ``batched_speedup=X``: the throughput of the last setting over the first's.

    python tools/bench_serve.py --ckpt runs/multi30k_de_en_attn/checkpoints/best.ckpt \\
        --input data/multi30k/test_2016_flickr.de.gz --requests 400

Run it on an otherwise idle machine: the server and the clients share its cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from s2s.io import read_lines
from s2s.scripts.translate import main as translate


class ServerProcess:
    """``s2s serve ARGS`` in its own process group, its output in ``log``; ready (``/health``
    answers ok) when the constructor returns. :meth:`stop` ends it, workers included."""

    def __init__(
        self, *args: str, log: Path, env: dict[str, str] | None = None, startup_s: float = 120
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url, self.log = f"http://127.0.0.1:{self.port}", log
        command = [sys.executable, "-m", "s2s.cli", "serve", *args, "--port", str(self.port)]
        with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
            self.process = subprocess.Popen(
                command, stdout=out, stderr=out, env=env, start_new_session=True
            )
        deadline = time.monotonic() + startup_s
        while not self.healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"s2s serve exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"s2s serve was not ready after {startup_s} s")
            time.sleep(0.3)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200 and r.read() == b"ok"
        except OSError:
            return False

    def post(self, path: str, body: bytes | dict) -> tuple[int, dict]:
        """The status and JSON answer of a POST (an error status too)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> None:
        """SIGTERM to the whole group (LitServe's workers too), SIGKILL after 15 s."""
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="translator checkpoint")
    p.add_argument("--input", required=True, help="source sentences, one per line")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=320, help="requests in all, per setting")
    p.add_argument("--max-batch-size", type=int, nargs="+", default=[1, 16])
    p.add_argument("--batch-timeout", type=float, default=0.01)
    return p.parse_args(argv)


def reference(ckpt: str, sentences: list[str]) -> list[str]:
    """``s2s-translate``'s output for ``sentences``."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write("".join(s + "\n" for s in sentences))
        f.flush()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            translate(["--ckpt", ckpt, "--input", f.name])
    return out.getvalue().splitlines()


def run_clients(server: ServerProcess, sentences: list[str], clients: int) -> dict:
    """Every sentence sent as one request, ``clients`` at a time; latencies and answers."""
    answers: list[str | None] = [None] * len(sentences)
    latencies: list[float] = []

    def client(c: int) -> None:
        for i in range(c, len(sentences), clients):
            start = time.perf_counter()
            status, answer = server.post("/translate", {"text": [sentences[i]]})
            latencies.append(time.perf_counter() - start)
            if status == 200:
                answers[i] = answer["translations"][0][0]["text"]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "answers": answers}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lines = [line for line in read_lines(args.input) if line.strip()]
    sentences = [lines[i % len(lines)] for i in range(args.requests)]
    expected = reference(args.ckpt, sentences)
    print(
        f"{args.requests} requests of one sentence, {args.clients} clients, {os.cpu_count()} CPUs"
    )
    throughput = []
    for size in args.max_batch_size:
        with tempfile.TemporaryDirectory() as tmp:
            options = ["--max-batch-size", str(size), "--batch-timeout", str(args.batch_timeout)]
            server = ServerProcess("--ckpt", args.ckpt, *options, log=Path(tmp) / "serve.log")
            try:
                server.post("/translate", {"text": sentences[:1]})  # warm-up
                result = run_clients(server, sentences, args.clients)
            finally:
                server.stop()
        pairs = list(zip(result["answers"], expected, strict=True))
        wrong = sum(a is not None and a != e for a, e in pairs)
        lost = sum(a is None for a, _ in pairs)
        rps = args.requests / result["seconds"]
        throughput.append(rps)
        print(
            f"max_batch_size={size:<3d} requests/s={rps:7.2f} sentences/s={rps:7.2f} "
            f"p50={percentile(result['latencies'], 0.5) * 1000:7.0f} ms "
            f"p95={percentile(result['latencies'], 0.95) * 1000:7.0f} ms "
            f"wrong={wrong} lost={lost}"
        )
    print(f"batched_speedup={throughput[-1] / throughput[0]:.2f}")


if __name__ == "__main__":
    main()
