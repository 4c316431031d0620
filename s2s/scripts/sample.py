"""Sample text from a trained s2s language model: the prompt and its continuation, one per line.

Sampling goes through ``s2s.decoding.sample`` (temperature, top-k, top-p); a low temperature gives
(nearly) the most probable continuation. A sample ends at the end of a line (EOS) or after
``--max-len`` tokens.

``--input FILE`` (``-`` for stdin) continues each line of the file instead of ``--prompt``,
``--num-samples`` lines per prompt, in order. Stdin is answered as it comes: a prompt fed alone
(a terminal, an interactive pipe) gets its samples, flushed, before the next one arrives.
"""

from __future__ import annotations

import sys

from jsonargparse import Namespace

from s2s.data.text_stream import make_prompts
from s2s.decoding import SamplingConfig, sample
from s2s.io import DataError, read_line_runs
from s2s.models.language_model import LanguageModel
from s2s.scripts import add_device_arguments, load_model_of_type, script_parser

CHUNK_LINES = 256  # most prompts read at once


def parse_args(argv: list[str] | None) -> Namespace:
    p = script_parser("s2s-sample", __doc__)
    p.add_argument("--ckpt", required=True, help="language model checkpoint written by `s2s fit`")
    p.add_argument("--prompt", default="", help="text to continue (default: a line from scratch)")
    p.add_argument("--input", help="continue each line of this file (- for stdin) instead")
    p.add_argument("--num-samples", type=int, default=1, help="samples written, one per line")
    p.add_argument("--max-len", type=int, default=200, help="most tokens generated per sample")
    p.add_argument("--temperature", type=float, default=1.0, help="< 1 sharpens, > 1 flattens")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k best tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: all)")
    p.add_argument("--seed", type=int, default=0)
    add_device_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = SamplingConfig(
            max_len_b=args.max_len,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
        )
        if args.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    except ValueError as e:
        sys.exit(f"s2s-sample: {e}")
    model = load_model_of_type(args, LanguageModel, "s2s-sample")
    runs = [[args.prompt]] if args.input is None else read_line_runs(args.input, CHUNK_LINES)
    try:
        for prompts in runs:
            for prompt in prompts:
                print(*samples(model, prompt, config, args), sep="\n")
            sys.stdout.flush()
    except DataError as e:
        sys.exit(f"s2s-sample: {e}")


def samples(model: LanguageModel, text: str, config: SamplingConfig, args: Namespace) -> list[str]:
    """``args.num_samples`` continuations of ``text``, each after it. Each prompt is sampled alone,
    so its samples depend on the seed only, not on the prompts around it (as ``s2s serve``)."""
    tokenizer = model.tokenizers["tgt"]
    prompts = make_prompts([text] * args.num_samples, tokenizer)
    prompts.ids, prompts.lengths = prompts.ids.to(args.device), prompts.lengths.to(args.device)
    prefix = tokenizer.encode(text)
    return [tokenizer.decode(prefix + h.tokens) for h in sample(model, prompts, config)]


if __name__ == "__main__":
    main()
