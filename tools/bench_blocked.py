"""What the two blocked computations of s2s buy over their plain forms, measured in one run.

s2s computes two things in blocks where the plain code would build one large tensor:

- beam search's top-k over every extension (``s2s.decoding.beam.top_extensions``: a max per
  vocabulary block, then a top-k over the best blocks), where the plain form sums the beam scores
  with all ``k x V`` log-probabilities and takes the top-k of that;
- Bahdanau attention's ``v^T tanh(W_q q + W_k k)`` (``BahdanauAttention.scores``: the
  query x key sum built a cache-sized block of rows at a time, tanh by an in-place sigmoid),
  where the plain form builds the whole sum and applies ``torch.tanh``.

Part 1 decodes the Multi30k test set with beam search four ways (s2s as it is, each plain form
alone, both plain), batch by batch in rotating order so that changes in machine load hit all alike;
each batch's fastest of ``--repeats`` decodings counts. Part 2 trains two identical copies of the
attention recipe's model with the plain loop of ``bench_train.py``, alternating batch by batch, one
with each form of Bahdanau attention; the ratio is the median over batches. The model is the
attention recipe's trained checkpoint when it exists, else a random model of its size (as
``bench_decode.py``).

    python tools/bench_blocked.py --threads 1        # about 15 minutes here beside other work

The last lines are ``{variant}_over_s2s=X``: each plain variant's decoding time over s2s's, and
``plain_bahdanau_train_over_s2s=Y`` for training; above 1 the blocked form is faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
import yaml
from bench_decode import CKPT, MAX_SRC_LEN, RECIPE, TEST, random_model
from bench_train import PlainLoop, build_model
from torch import Tensor

import s2s.decoding.beam as beam
from s2s.checkpoint import load_model
from s2s.data import TranslationData
from s2s.data.translation import make_batches
from s2s.decoding import beam_search
from s2s.io import read_lines
from s2s.nn.attention import BahdanauAttention
from s2s.tokenizer import TokenizerConfig


def plain_top_extensions(log_probs: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``top_extensions`` as one top-k over the whole (Ba, w * V) sum."""
    width, vocab = log_probs.shape[1:]
    total = (log_probs + scores[..., None]).flatten(1)
    if total.size(1) < k:
        total = F.pad(total, (0, k - total.size(1)), value=-torch.inf)
    values, indices = total.topk(k, 1)
    return values, indices.clamp(max=width * vocab - 1)


def plain_bahdanau_scores(self: BahdanauAttention, query: Tensor, keys: Tensor) -> Tensor:
    """``BahdanauAttention.scores`` on the whole (N, T, S, A) sum, with ``torch.tanh``."""
    hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))
    return self.energy(hidden).squeeze(-1)


S2S_TOP_K, S2S_SCORES = beam.top_extensions, BahdanauAttention.scores
VARIANTS: dict[str, tuple[Callable, Callable]] = {
    "s2s": (S2S_TOP_K, S2S_SCORES),
    "plain_top_k": (plain_top_extensions, S2S_SCORES),
    "plain_bahdanau": (S2S_TOP_K, plain_bahdanau_scores),
    "plain_both": (plain_top_extensions, plain_bahdanau_scores),
}


@contextmanager
def variant(name: str) -> Iterator[None]:
    """Beam search and Bahdanau attention computed in the forms of ``VARIANTS[name]``."""
    beam.top_extensions, BahdanauAttention.scores = VARIANTS[name]
    try:
        yield
    finally:
        beam.top_extensions, BahdanauAttention.scores = S2S_TOP_K, S2S_SCORES


def decoding(repeats: int) -> dict[str, float]:
    """Seconds each variant takes to beam-search the test set (per batch, the fastest repeat)."""
    model = load_model(CKPT) if CKPT.is_file() else random_model()
    print(f"model: {CKPT if CKPT.is_file() else f'RANDOM model of {RECIPE}'}; {model.search}")
    lines = read_lines(f"{TEST}.de.gz")
    batches = make_batches(lines, model.tokenizers["src"], max_tokens=8000, max_len=MAX_SRC_LEN)
    names = list(VARIANTS)
    seconds = dict.fromkeys(names, 0.0)
    outputs: dict[str, list[list[int]]] = {name: [] for name in names}
    for name in names:  # warm-up
        with variant(name):
            beam_search(model, batches[-1], model.search)
    for i, batch in enumerate(batches):
        best = dict.fromkeys(names, float("inf"))
        for r in range(repeats):
            shift = (i + r) % len(names)
            for name in names[shift:] + names[:shift]:
                with variant(name):
                    start = time.perf_counter()
                    nbests = beam_search(model, batch, model.search)
                    best[name] = min(best[name], time.perf_counter() - start)
                if r == 0:
                    outputs[name] += [nbest[0].tokens for nbest in nbests]
        for name in names:
            seconds[name] += best[name]
    for name in names:
        same = sum(a == b for a, b in zip(outputs[name], outputs["s2s"], strict=True))
        print(
            f"decode {name}: {len(lines) / seconds[name]:.1f} sent/s, "
            f"{same}/{len(lines)} hypotheses as s2s's"
        )
    return seconds


def training(n_batches: int, warmup: int) -> float:
    """Median over batches of a training step's time with plain Bahdanau over s2s's."""
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    args = dict(recipe["data"]["init_args"])
    args["tokenizer"] = TokenizerConfig(**args.get("tokenizer", {}))
    data = TranslationData(**args)
    data.setup("fit")
    batches = iter(data.train_dataloader())
    loops = {name: PlainLoop(build_model(recipe, data), 1.0, False) for name in ("s2s", "plain")}
    forms = {"s2s": "s2s", "plain": "plain_bahdanau"}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for i in range(n_batches):
        batch = next(batches)
        for name in list(loops)[:: 1 if i % 2 else -1]:
            with variant(forms[name]):
                start = time.perf_counter()
                loops[name].train_step(batch)
                times[name].append(time.perf_counter() - start)
    ratios = [p / s for p, s in zip(times["plain"][warmup:], times["s2s"][warmup:], strict=True)]
    print(f"train: {n_batches - warmup} timed batches per form")
    return statistics.median(ratios)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="decodings of each batch")
    parser.add_argument("--train-batches", type=int, default=30, help="training batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training batches")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads")
    seconds = decoding(args.repeats)
    train_ratio = training(args.train_batches, args.warmup)
    for name in list(VARIANTS)[1:]:
        print(f"{name}_over_s2s={seconds[name] / seconds['s2s']:.3f}")
    print(f"plain_bahdanau_train_over_s2s={train_ratio:.3f}")


if __name__ == "__main__":
    main()
