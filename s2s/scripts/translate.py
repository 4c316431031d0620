"""Translate text with a trained s2s checkpoint, one sentence per line (stdin to stdout by default).

Every input line gives exactly one output line (an empty line gives an empty line); with
``--n-best N`` each input line gives N consecutive lines: beam search's best first, or N
independent samples with ``--sample``. ``--print-scores`` writes each hypothesis as
``SCORE<TAB>NORMALIZED<TAB>TEXT``: its total log-probability (EOS included) and the score that
ranked it (after the length penalty; the score itself for samples). Outputs are written and
flushed batch by batch, in input order, so an interrupted run keeps the lines it finished. Stdin
is translated as it comes: a line fed alone (a terminal, an interactive pipe) is answered before
the next one arrives, while input available at once is batched.

``--score REFERENCE_FILE`` translates nothing: it scores given translations of the input (line i
of the file translates input line i; the two must have as many lines) by forced decoding, and
writes per input line ``TOTAL<TAB>LP1 LP2 ... LPn LPeos``: the reference's total log-probability,
then that of each of its n target subwords and of EOS, which sum to the total. An empty input line
gives an empty line, as in translation; an empty reference is scored (its EOS only).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TextIO, TypeVar

from jsonargparse import Namespace

from s2s.data.translation import (
    LINES_MAX_LEN,
    LINES_MAX_TOKENS,
    TranslationBatch,
    in_input_order,
)
from s2s.decoding import Hypothesis, SamplingConfig, SearchConfig, decode, force_decode
from s2s.decoding.ensemble import Ensemble
from s2s.io import DataError, read_line_runs, read_lines
from s2s.models.seq2seq import Seq2Seq
from s2s.scripts import (
    add_checkpoints_argument,
    add_device_arguments,
    load_ensemble_of_type,
    members,
    sampling_config,
    script_parser,
    search_config,
)
from s2s.tokenizer import EOS_ID
from s2s.visualize import save_attention_heatmap

CHUNK_LINES = 1000  # most consecutive input lines batched together: a kill loses their work
T = TypeVar("T")


def parse_args(argv: list[str] | None) -> Namespace:
    p = script_parser("s2s-translate", __doc__)
    add_checkpoints_argument(p, "translator")
    p.add_argument("--input", default="-", help="text file (plain or .gz); - for stdin")
    p.add_argument("--output", default="-", help="output file; - for stdout")
    p.add_argument("--beam", type=int, help="beam size (default: the recipe's)")
    p.add_argument("--n-best", type=int, default=1, help="hypotheses written per input line")
    p.add_argument(
        "--print-scores",
        action="store_true",
        help="write SCORE<TAB>NORMALIZED<TAB>TEXT per hypothesis",
    )
    p.add_argument(
        "--score",
        metavar="REFERENCE_FILE",
        help="write the log-probabilities of these translations of the input instead of "
        "translating (one per input line)",
    )
    p.add_argument("--length-penalty", type=float, help="GNMT alpha; larger favours longer output")
    p.add_argument("--max-len", type=int, help="absolute output length limit in subwords")
    p.add_argument("--sample", action="store_true", help="sample instead of beam search")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="seed for --sample")
    p.add_argument("--max-tokens", type=int, default=LINES_MAX_TOKENS, help="tokens per batch")
    p.add_argument(
        "--max-src-len", type=int, default=LINES_MAX_LEN, help="longer inputs are truncated"
    )
    p.add_argument("--attention-png", type=Path, help="write one attention heatmap per sentence")
    add_device_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    check_score_options(args)
    decoder, model = load_ensemble_of_type(args, Seq2Seq, "s2s-translate")
    try:
        if args.score:
            run_scoring(model, decoder, args)
        else:
            run_translation(model, decoder, args)
    except DataError as e:
        sys.exit(f"s2s-translate: {e}")


def run_translation(model: Seq2Seq, decoder: Seq2Seq | Ensemble, args: Namespace) -> None:
    """Translate ``args.input`` into ``args.output`` as the options say."""
    search = search_config(model.search, args, "s2s-translate")
    config = search
    if args.sample:
        config = replace(sampling_config(search, args, "s2s-translate"), num_samples=args.n_best)
    if args.attention_png and any(m.decoder.attention is None for m in members(decoder)):
        sys.exit("s2s-translate: this model has no attention to draw")
    runs = read_line_runs(args.input, CHUNK_LINES)
    with open_output(args.output) as out:
        if args.attention_png:
            args.attention_png.mkdir(parents=True, exist_ok=True)
        write_translations(model, decoder, runs, config, args, out)


def run_scoring(model: Seq2Seq, decoder: Seq2Seq | Ensemble, args: Namespace) -> None:
    """Score the references ``args.score`` of ``args.input`` into ``args.output``."""
    lines, references = read_references(args.input, args.score)
    with open_output(args.output) as out:
        write_scores(model, decoder, lines, references, args, out)


def check_score_options(args: Namespace) -> None:
    """Exits with one line if ``--score`` comes with an option that only translation has."""
    translation_only = {
        "--beam": args.beam is not None,
        "--length-penalty": args.length_penalty is not None,
        "--max-len": args.max_len is not None,
        "--sample": args.sample,
        "--n-best": args.n_best != 1,
        "--print-scores": args.print_scores,
        "--attention-png": args.attention_png,
    }
    given = [option for option, on in translation_only.items() if on]
    if args.score and given:
        sys.exit(f"s2s-translate: --score does not combine with {given[0]}")


def read_references(input_path: str, reference_path: str) -> tuple[list[str], list[str]]:
    """The input lines and their reference translations, one per input line."""
    lines, references = read_lines(input_path), read_lines(reference_path)
    if len(lines) != len(references):
        name = "stdin" if input_path == "-" else input_path
        raise DataError(f"{name} has {len(lines)} lines but {reference_path} has {len(references)}")
    return lines, references


def write_scores(
    model: Seq2Seq,
    decoder: Seq2Seq | Ensemble,
    lines: list[str],
    references: list[str],
    args: Namespace,
    out: TextIO,
) -> None:
    """Per input line, ``TOTAL<TAB>LP1 ... LPeos`` of its reference under ``decoder``, flushed
    batch by batch in input order; an empty line for an empty input line."""
    tgt_tok = model.tokenizers["tgt"]
    for start in range(0, len(lines), CHUNK_LINES):
        chunk = lines[start : start + CHUNK_LINES]
        targets = [tgt_tok.encode(ref) for ref in references[start : start + CHUNK_LINES]]
        for done in forced_scores(model, decoder, chunk, targets, args):
            out.writelines(score_line(chunk[i], scores) + "\n" for i, scores in done)
            out.flush()


def forced_scores(
    model: Seq2Seq,
    decoder: Seq2Seq | Ensemble,
    lines: list[str],
    targets: list[list[int]],
    args: Namespace,
) -> Iterator[list[tuple[int, list[float]]]]:
    """After each batch, the lines newly scored in input order: (index in ``lines``, per-token
    log-probabilities of its target)."""

    def score(batch: TranslationBatch) -> list[list[float]]:
        return force_decode(decoder, batch, [targets[i] for i in batch.indices.tolist()])

    return lines_in_order(model, lines, args, score)


def score_line(line: str, scores: list[float]) -> str:
    """``TOTAL<TAB>LP1 ... LPeos``, or empty for a blank input line."""
    if not line.strip():
        return ""
    return f"{sum(scores):.6f}\t" + " ".join(f"{lp:.6f}" for lp in scores)


def write_translations(
    model: Seq2Seq,
    decoder: Seq2Seq | Ensemble,
    runs: Iterable[list[str]],
    config: SearchConfig | SamplingConfig,
    args: Namespace,
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
                out.writelines(output_line(model, lines[i], hyp, args) + "\n" for hyp in nbest)
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
    args: Namespace,
) -> Iterator[list[tuple[int, list[Hypothesis]]]]:
    """After each batch, the lines newly translated in input order: (index in ``lines``, n-best)."""
    return lines_in_order(model, lines, args, lambda batch: decode(decoder, batch, config))


def lines_in_order(
    model: Seq2Seq,
    lines: list[str],
    args: Namespace,
    process: Callable[[TranslationBatch], list[T]],
) -> Iterator[list[tuple[int, T]]]:
    """:func:`in_input_order` with the command line's batch size, length limit and device."""
    return in_input_order(
        lines,
        model.tokenizers["src"],
        process,
        max_tokens=args.max_tokens,
        max_len=args.max_src_len,
        device=args.device,
    )


def output_line(model: Seq2Seq, line: str, hyp: Hypothesis, args: Namespace) -> str:
    """The output line of ``hyp``, its scores first with ``--print-scores``; empty for a blank
    input line."""
    if not line.strip():
        return ""
    text = model.tokenizers["tgt"].decode(hyp.tokens)
    return f"{hyp.score:.6f}\t{hyp.normalized_score:.6f}\t{text}" if args.print_scores else text


def draw_attention(model: Seq2Seq, line: str, hyp: Hypothesis, args: Namespace, i: int) -> None:
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
