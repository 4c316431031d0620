"""Translate text with a trained s2s checkpoint, one sentence per line (stdin to stdout by default).

Every input line gives exactly one output line (an empty line gives an empty line); with
``--n-best N`` each input line gives N consecutive lines, best first. Outputs are written and
flushed batch by batch, in input order, so an interrupted run keeps the lines it finished. Stdin
is translated as it comes: a line fed alone (a terminal, an interactive pipe) is answered before
the next one arrives, while input available at once is batched.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TextIO

from s2s.data.translation import make_batches
from s2s.decoding import Hypothesis, SamplingConfig, SearchConfig, decode
from s2s.decoding.ensemble import Ensemble
from s2s.io import DataError, read_line_runs
from s2s.models.seq2seq import Seq2Seq
from s2s.scripts import (
    add_device_arguments,
    load_ensemble_of_type,
    members,
    sampling_config,
    search_config,
)
from s2s.tokenizer import EOS_ID
from s2s.visualize import save_attention_heatmap

CHUNK_LINES = 1000  # most consecutive input lines batched together: a kill loses their work


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="s2s-translate", description=__doc__)
    p.add_argument(
        "--ckpt",
        required=True,
        action="append",
        help="checkpoint written by `s2s fit`; repeated, the models decode as one ensemble",
    )
    p.add_argument("--input", default="-", help="text file (plain or .gz); - for stdin")
    p.add_argument("--output", default="-", help="output file; - for stdout")
    p.add_argument("--beam", type=int, help="beam size (default: the recipe's)")
    p.add_argument("--n-best", type=int, default=1, help="hypotheses written per input line")
    p.add_argument("--length-penalty", type=float, help="GNMT alpha; larger favours longer output")
    p.add_argument("--max-len", type=int, help="absolute output length limit in subwords")
    p.add_argument("--sample", action="store_true", help="sample instead of beam search")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="seed for --sample")
    p.add_argument("--max-tokens", type=int, default=8000, help="tokens per batch")
    p.add_argument("--max-src-len", type=int, default=250, help="longer inputs are truncated")
    p.add_argument("--attention-png", type=Path, help="write one attention heatmap per sentence")
    add_device_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    decoder, model = load_ensemble_of_type(args, Seq2Seq, "s2s-translate")
    search = search_config(model.search, args, "s2s-translate")
    config = sampling_config(search, args, "s2s-translate") if args.sample else search
    if args.attention_png and any(m.decoder.attention is None for m in members(decoder)):
        sys.exit("s2s-translate: this model has no attention to draw")
    try:
        runs = read_line_runs(args.input, CHUNK_LINES)
        with open_output(args.output) as out:
            if args.attention_png:
                args.attention_png.mkdir(parents=True, exist_ok=True)
            write_translations(model, decoder, runs, config, args, out)
    except DataError as e:
        sys.exit(f"s2s-translate: {e}")


def write_translations(
    model: Seq2Seq,
    decoder: Seq2Seq | Ensemble,
    runs: Iterable[list[str]],
    config: SearchConfig | SamplingConfig,
    args: argparse.Namespace,
    out: TextIO,
) -> None:
    """The translations of consecutive runs of input lines into ``out``, flushed batch by batch
    (a killed run keeps every line written so far; a streaming reader gets its answers).
    ``decoder`` decodes (``model`` or an ensemble with it); ``model``'s tokenizers serve."""
    start = 0  # line number of the run's first line, from 0
    for lines in runs:
        for done in translations(model, decoder, lines, config, args):
            for i, nbest in done:
                # An empty line gives empty lines, whatever the model would make of it.
                out.writelines(tgt_text(model, lines[i], hyp) + "\n" for hyp in nbest)
                if args.attention_png and lines[i].strip():
                    draw_attention(model, lines[i], nbest[0], args, start + i)
            out.flush()
        start += len(lines)


def open_output(path: str) -> AbstractContextManager[TextIO]:
    """The output stream, opened before decoding so that a bad path fails at once."""
    if path == "-":
        return nullcontext(sys.stdout)
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        sys.exit(f"s2s-translate: {path}: cannot write output ({e.strerror})")


def translations(
    model: Seq2Seq,
    decoder: Seq2Seq | Ensemble,
    lines: list[str],
    config: SearchConfig | SamplingConfig,
    args: argparse.Namespace,
) -> Iterator[list[tuple[int, list[Hypothesis]]]]:
    """After each batch, the lines newly translated in input order: (index in ``lines``, n-best).

    Lines are batched by length, so the translated prefix of ``lines`` grows batch by batch.
    """
    outputs: list[list[Hypothesis] | None] = [None] * len(lines)
    done = 0
    src_tok = model.tokenizers["src"]
    for batch in make_batches(lines, src_tok, max_tokens=args.max_tokens, max_len=args.max_src_len):
        batch.src = batch.src.to(args.device)
        batch.src_lengths = batch.src_lengths.to(args.device)
        for i, nbest in zip(batch.indices.tolist(), decode(decoder, batch, config), strict=True):
            outputs[i] = nbest
        first = done
        while done < len(lines) and outputs[done] is not None:
            done += 1
        yield [(i, outputs[i]) for i in range(first, done)]


def tgt_text(model: Seq2Seq, line: str, hyp: Hypothesis) -> str:
    """The output line of ``hyp``: empty for a blank input line."""
    return model.tokenizers["tgt"].decode(hyp.tokens) if line.strip() else ""


def draw_attention(
    model: Seq2Seq, line: str, hyp: Hypothesis, args: argparse.Namespace, i: int
) -> None:
    """``{--attention-png}/{i + 1:05d}.png``: the attention of ``hyp`` over ``line``."""
    src_tok, tgt_tok = model.tokenizers["src"], model.tokenizers["tgt"]
    src_ids = [*src_tok.encode(line)[: args.max_src_len], EOS_ID]
    save_attention_heatmap(
        hyp.attention,
        src_tok.pieces(src_ids),
        tgt_tok.pieces([*hyp.tokens, EOS_ID]),
        args.attention_png / f"{i + 1:05d}.png",
    )


if __name__ == "__main__":
    main()
