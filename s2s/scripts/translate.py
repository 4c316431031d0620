"""Translate text with a trained s2s checkpoint, one sentence per line (stdin to stdout by default).

Every input line gives exactly one output line (an empty line gives an empty line); with
``--n-best N`` each input line gives N consecutive lines, best first.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from s2s.checkpoint import load_model
from s2s.data.translation import make_batches
from s2s.decoding import Hypothesis, SamplingConfig, beam_search, sample
from s2s.io import DataError, read_lines
from s2s.scripts import add_device_arguments
from s2s.tokenizer import EOS_ID
from s2s.visualize import save_attention_heatmap


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="s2s-translate", description=__doc__)
    p.add_argument("--ckpt", required=True, help="checkpoint written by `s2s fit`")
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
    try:
        model = load_model(args.ckpt, map_location=args.device, dtype=args.dtype)
        lines = read_lines(args.input)
    except (ValueError, DataError) as e:
        sys.exit(f"s2s-translate: {e}")
    search = model.search
    if args.max_len is not None:
        search = replace(search, max_len_a=0.0, max_len_b=args.max_len)
    search = replace(
        search,
        beam_size=args.beam or max(search.beam_size, args.n_best),
        n_best=args.n_best,
        length_penalty=search.length_penalty
        if args.length_penalty is None
        else args.length_penalty,
    )
    src_tok, tgt_tok = model.tokenizers["src"], model.tokenizers["tgt"]
    outputs: list[list[Hypothesis]] = [[] for _ in lines]
    batches = make_batches(lines, src_tok, max_tokens=args.max_tokens, max_len=args.max_src_len)
    for batch in batches:
        batch.src, batch.src_lengths = batch.src.to(args.device), batch.src_lengths.to(args.device)
        if args.sample:
            config = SamplingConfig(
                max_len_a=search.max_len_a,
                max_len_b=search.max_len_b,
                temperature=args.temperature,
                top_k=args.top_k,
                top_p=args.top_p,
                seed=args.seed,
            )
            nbests = [[h] for h in sample(model, batch, config)]
        else:
            nbests = beam_search(model, batch, search)
        for i, nbest in zip(batch.indices.tolist(), nbests, strict=True):
            outputs[i] = nbest
    # An empty line gives empty lines, whatever the model would make of an empty source.
    text = "".join(
        (tgt_tok.decode(hyp.tokens) if line.strip() else "") + "\n"
        for line, nbest in zip(lines, outputs, strict=True)
        for hyp in nbest
    )
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    if args.attention_png:
        args.attention_png.mkdir(parents=True, exist_ok=True)
        for i, (line, nbest) in enumerate(zip(lines, outputs, strict=True)):
            if not line.strip():
                continue
            hyp = nbest[0]
            if hyp.attention is None:
                sys.exit("s2s-translate: this model has no attention to draw")
            src_ids = [*src_tok.encode(line)[: args.max_src_len], EOS_ID]
            save_attention_heatmap(
                hyp.attention,
                src_tok.pieces(src_ids),
                tgt_tok.pieces([*hyp.tokens, EOS_ID]),
                args.attention_png / f"{i + 1:05d}.png",
            )


if __name__ == "__main__":
    main()
