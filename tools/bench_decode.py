"""Decoding speed of the translator on the Multi30k test set: greedy, batched beam search, and a
one-sentence-at-a-time beam search reference, measured in the same run.

The model is the trained attention recipe's checkpoint when it exists, else a random model of the
same size (the recipe's hyperparameters, its tokenizer trained on the bundled data); the first
line says which. The test sources are batched with ``make_batches`` as ``s2s-translate`` does
(``--max-tokens`` as its default), and the search options are the model's (the recipe's: beam 5,
length penalty 1.0, length limit ``1.5 * source + 10``); greedy uses the same length limits.

The reference (:func:`reference_beam_search`) is the plain way to write the same search: one
sentence at a time, its beams stepped together as one small batch, hypotheses in Python lists.
It is slow, so it decodes only the first ``--ref-sentences`` test sentences, and speeds are
compared per sentence; its outputs are checked against the batched search's on those sentences.
Measurements are interleaved so that changes in machine load hit all three alike: in round r,
greedy and beam search decode batch r and the reference its r-th share of its sentences. The
rounds are repeated ``--repeats`` times and each round's fastest time counts, the one least
disturbed by other work; one untimed warm-up of each method comes first. Still, run it on an
otherwise idle machine: with two threads, another busy process slows the reference's many small
operations far more than the batched ones.

Speed is sentences per second of decoding (encoding included; tokenization and detokenization
not). Each line also gives the decoder rows stepped per sentence (the work: beam search steps k
rows per sentence where greedy steps one), the time per row, and the share of the time spent in
the model's calls (encode, step, reorder; the rest is the search's own bookkeeping). The line
before the last two bounds both ratios by batched beam search's model-call time alone: however
cheap its bookkeeping, it cannot do better than that with this model's step. Peak memory is the
process's peak resident set size (``ru_maxrss``) before decoding (model and data loaded) and at
the end. With a trained model, corpus BLEU of greedy and beam search on the test set follow.

    python tools/bench_decode.py                    # under a minute on an idle machine here
    python tools/bench_decode.py --ckpt path/to/best.ckpt --beam 10

The last two lines are ``beam{k}_speedup_vs_reference=X`` (batched beam search's sentences/s over
the reference's) and ``beam{k}_cost_vs_greedy=Y`` (its time per sentence over greedy's).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from s2s.checkpoint import load_model
from s2s.data import TranslationData
from s2s.data.translation import TranslationBatch, make_batches
from s2s.decoding import Hypothesis, SearchConfig, beam_search, greedy
from s2s.decoding.constraints import mask_log_probs_, max_lengths
from s2s.decoding.interface import Layout, Step, StepDecoder
from s2s.decoding.scoring import length_penalty
from s2s.io import read_lines
from s2s.metrics import corpus_scores
from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderConfig
from s2s.nn.encoder import EncoderConfig
from s2s.optim import OptimConfig
from s2s.tokenizer import BOS_ID, EOS_ID, TokenizerConfig

CKPT = Path("runs/multi30k_de_en_attn/checkpoints/best.ckpt")
RECIPE = Path("recipes/multi30k_de_en_attn.yaml")
TEST = "data/multi30k/test_2016_flickr"
MAX_SRC_LEN = 250  # as s2s-translate


class ModelMeter:
    """A StepDecoder that counts the rows its model steps and times the model's calls (encode,
    step, reorder): the work that any search over these rows must do, apart from its own
    bookkeeping."""

    def __init__(self, model: StepDecoder) -> None:
        self.model, self.rows, self.seconds = model, 0, 0.0

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        out = call(*args)
        self.seconds += time.perf_counter() - start
        return out

    def start(self, batch: Any) -> tuple[Any, Tensor]:
        return self._timed(self.model.start, batch)

    def step(self, tokens: Tensor, state: Any) -> Step:
        self.rows += tokens.numel()
        return self._timed(self.model.step, tokens, state)

    def reorder(self, state: Any, index: Tensor, layout: Layout | None = None) -> Any:
        return self._timed(self.model.reorder, state, index, layout)


@dataclass
class Meter:
    """Per round, the fastest repeat's decoding time and the part of it spent in model calls; and
    one repeat's sentences and decoder rows stepped."""

    rounds: int
    sentences: int = 0
    rows: int = 0

    def __post_init__(self) -> None:
        self.best = [(float("inf"), 0.0)] * self.rounds  # (seconds, model seconds)

    @property
    def seconds(self) -> float:
        return sum(total for total, _ in self.best)

    @property
    def model_seconds(self) -> float:
        return sum(model for _, model in self.best)

    @property
    def per_s(self) -> float:
        return self.sentences / self.seconds

    def time(
        self,
        r: int,
        decode: Callable[[list[TranslationBatch]], Any],
        batches: list[TranslationBatch],
        meter: ModelMeter,
        count: bool,
    ) -> Any:
        """``decode(batches)`` as round ``r``; with ``count``, adds its sentences and rows."""
        rows, model_seconds = meter.rows, meter.seconds
        start = time.perf_counter()
        out = decode(batches)
        self.best[r] = min(
            self.best[r], (time.perf_counter() - start, meter.seconds - model_seconds)
        )
        if count:
            self.sentences += sum(len(b.indices) for b in batches)
            self.rows += meter.rows - rows
        return out


@torch.no_grad()
def reference_beam_search(model: StepDecoder, batch: Any, config: SearchConfig) -> Hypothesis:
    """The best hypothesis for a one-sentence ``batch``, by the search of :func:`beam_search`
    written plainly.

    At each step the k beams are stepped as one k-row batch; of all their one-token extensions the
    best k that end in EOS and rank among the best k overall become finished hypotheses, and the
    best k that do not become the next beams. The search stops when no beam can beat the best
    finished hypothesis, or at the length limit.
    """
    if config.coverage_penalty or config.no_repeat_ngram_size:
        raise ValueError("the reference has no coverage penalty or n-gram blocking")
    k, alpha = config.beam_size, config.length_penalty
    state, src_lengths = model.start(batch)
    max_len = int(max_lengths(src_lengths, config.max_len_a, config.max_len_b))
    beams: list[tuple[list[int], float]] = [([], 0.0)]  # (tokens, log-probability)
    best = Hypothesis([], -float("inf"), -float("inf"))
    for t in range(max_len + 1):
        prev = torch.tensor([tokens[-1] if tokens else BOS_ID for tokens, _ in beams])
        log_probs, state, _ = model.step(prev, state)
        log_probs = mask_log_probs_(
            log_probs.float(),
            t,
            min_len=config.min_len,
            force_eos=torch.full((len(beams),), t >= max_len),
            history=None,
            no_repeat_ngram_size=0,
        )
        top = log_probs.topk(min(k + 1, log_probs.size(1)), 1)  # a row's k+1 hold k non-EOS
        candidates = sorted(
            (
                (score + lp, row, token)
                for row, (_, score) in enumerate(beams)
                for lp, token in zip(
                    top.values[row].tolist(), top.indices[row].tolist(), strict=True
                )
                if lp > -float("inf")
            ),
            key=lambda c: -c[0],
        )
        for score, row, token in candidates[:k]:
            norm = score / length_penalty(t + 1, alpha)
            if token == EOS_ID and norm > best.normalized_score:
                best = Hypothesis(beams[row][0], score, norm)
        extended = [c for c in candidates if c[2] != EOS_ID][:k]
        if not extended or extended[0][0] / length_penalty(max_len + 1, alpha) <= (
            best.normalized_score
        ):
            break
        state = model.reorder(state, torch.tensor([row for _, row, _ in extended]))
        beams = [(beams[row][0] + [token], score) for score, row, token in extended]
    return best


def random_model() -> Seq2Seq:
    """A random translator of the attention recipe's size, with its tokenizer (trained on the
    bundled data, or read from the tokenizer cache)."""
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    data_args = dict(recipe["data"]["init_args"])
    data_args["tokenizer"] = TokenizerConfig(**data_args.get("tokenizer", {}))
    data = TranslationData(**data_args)
    args = dict(recipe["model"]["init_args"])
    args["encoder"] = EncoderConfig(**args.get("encoder", {}))
    args["decoder"] = DecoderConfig(**args.get("decoder", {}))
    args["optim"] = OptimConfig(**args.get("optim", {}))
    args["search"] = SearchConfig(**args.get("search", {}))
    torch.manual_seed(0)
    model = Seq2Seq(data.src_vocab_size, data.tgt_vocab_size, **args)
    model.tokenizers = {"src": data.src_tokenizer, "tgt": data.tgt_tokenizer}
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt", type=Path, help=f"checkpoint (default: {CKPT} if it exists, else random)"
    )
    parser.add_argument("--beam", type=int, help="beam size (default: the model's)")
    parser.add_argument("--max-tokens", type=int, default=8000, help="tokens per batch")
    parser.add_argument(
        "--ref-sentences", type=int, default=100, help="the reference decodes the first n sentences"
    )
    parser.add_argument("--repeats", type=int, default=3, help="times each round is decoded")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--bf16",
        dest="dtype",
        action="store_const",
        const=torch.bfloat16,
        default=torch.float32,
        help="decode with bfloat16 weights, as s2s-translate --bf16",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    ckpt = args.ckpt or (CKPT if CKPT.is_file() else None)
    try:
        model = (load_model(ckpt) if ckpt else random_model()).to(args.dtype)
    except ValueError as e:
        sys.exit(f"bench_decode: {e}")
    search = model.search if args.beam is None else replace(model.search, beam_size=args.beam)
    search = replace(search, n_best=1)
    k = search.beam_size
    params = sum(p.numel() for p in model.parameters()) / 1e6
    trained = f"trained checkpoint {ckpt}" if ckpt else f"RANDOM model of {RECIPE} (untrained)"
    print(
        f"model: {trained}, {params:.2f}M parameters, {args.dtype}; "
        f"{torch.get_num_threads()} threads"
    )

    src_tok, tgt_tok = model.tokenizers["src"], model.tokenizers["tgt"]
    lines, refs = read_lines(f"{TEST}.de.gz"), read_lines(f"{TEST}.en.gz")
    batches = make_batches(lines, src_tok, max_tokens=args.max_tokens, max_len=MAX_SRC_LEN)
    subset = list(range(min(args.ref_sentences, len(lines))))
    singles = [
        make_batches([lines[i]], src_tok, max_tokens=10**9, max_len=MAX_SRC_LEN)[0] for i in subset
    ]
    for i, one in zip(subset, singles, strict=True):
        one.indices[0] = i  # the position in the test set, not in its one-line input
    print(
        f"{TEST}: {len(lines)} sentences in {len(batches)} batches of <= {args.max_tokens} "
        f"tokens; the reference decodes the first {len(subset)}"
    )
    print(f"search: {search}")

    s, meter = search, ModelMeter(model)
    names = ("greedy", f"beam {k} batched", f"beam {k} reference")
    methods: dict[str, Callable[[list[TranslationBatch]], list[Hypothesis]]] = {
        names[0]: lambda bs: [
            h
            for b in bs
            for h in greedy(
                meter, b, max_len_a=s.max_len_a, max_len_b=s.max_len_b, min_len=s.min_len
            )
        ],
        names[1]: lambda bs: [nbest[0] for b in bs for nbest in beam_search(meter, b, s)],
        names[2]: lambda bs: [reference_beam_search(meter, b, s) for b in bs],
    }
    # Round r: greedy and beam search decode batch r, the reference its share of the subset.
    rounds = [([b], [b], singles[r :: len(batches)]) for r, b in enumerate(batches)]
    for name, part in zip(names, ([batches[-1]], [batches[-1]], singles[:1]), strict=True):
        methods[name](part)  # warm-up
    peak_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    meters = {name: Meter(len(rounds)) for name in names}
    outputs: dict[str, dict[int, Hypothesis]] = {name: {} for name in names}
    for repeat in range(args.repeats):
        for r, parts in enumerate(rounds):
            for name, part in zip(names, parts, strict=True):
                hyps = meters[name].time(r, methods[name], part, meter, count=repeat == 0)
                indices = [int(i) for b in part for i in b.indices]
                outputs[name].update(zip(indices, hyps, strict=True))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    for name, m in meters.items():
        print(
            f"{name:<18} {m.per_s:7.1f} sentences/s ({m.sentences} in {m.seconds:.1f} s); "
            f"{m.rows / m.sentences:5.1f} decoder rows stepped per sentence, "
            f"{1e6 * m.seconds / m.rows:5.0f} us per row, {m.model_seconds / m.seconds:4.0%} of "
            "the time in model calls"
        )
    print(f"peak RSS: {peak_loaded:.0f} MiB with model and data loaded, {peak:.0f} MiB at the end")
    beam_out, ref_out = outputs[names[1]], outputs[names[2]]
    agree = sum(beam_out[i].tokens == ref_out[i].tokens for i in subset)
    print(f"reference and batched beam search agree on {agree}/{len(subset)} subset sentences")
    if ckpt:
        for name in names[:2]:
            hyps = [tgt_tok.decode(outputs[name][i].tokens) for i in range(len(lines))]
            print(f"test BLEU {name}: {corpus_scores(hyps, [[r] for r in refs]).bleu:.2f}")
    greedy_m, beam_m, ref_m = meters.values()
    beam_model = beam_m.model_seconds / beam_m.sentences  # per sentence
    print(
        f"with beam {k} batched's bookkeeping free (its model calls only): "
        f"beam{k}_speedup_vs_reference <= {ref_m.seconds / ref_m.sentences / beam_model:.2f}, "
        f"beam{k}_cost_vs_greedy >= {beam_model / (greedy_m.seconds / greedy_m.sentences):.2f}"
    )
    print(f"beam{k}_speedup_vs_reference={beam_m.per_s / ref_m.per_s:.2f}")
    print(f"beam{k}_cost_vs_greedy={greedy_m.per_s / beam_m.per_s:.2f}")


if __name__ == "__main__":
    main()
