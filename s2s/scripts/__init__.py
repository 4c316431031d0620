"""Console scripts that decode with a trained checkpoint."""

from __future__ import annotations

import sys
from dataclasses import fields, replace
from typing import TypeVar

import lightning as L
import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from s2s.checkpoint import load_model
from s2s.decoding import SamplingConfig, SearchConfig
from s2s.decoding.config import Constraints
from s2s.decoding.ensemble import Ensemble

M = TypeVar("M", bound=L.LightningModule)


def script_parser(prog: str, description: str | None) -> ArgumentParser:
    """The parser of a console script: jsonargparse, so that its options are typed and can also
    come from a YAML file (``--config decode.yaml``, keys spelled with underscores: ``n_best:
    3``), and ``--print_config`` shows them all."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    return parser


def add_device_arguments(parser: ArgumentParser) -> None:
    """``--device`` and ``--bf16``, for ``load_model(..., map_location=args.device,
    dtype=args.dtype)``."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--bf16",
        dest="dtype",
        action="store_const",
        const=torch.bfloat16,
        help="decode with bfloat16 weights: faster where the hardware has bfloat16 matrix "
        "products (AVX512-BF16 or AMX CPUs, recent GPUs), slower elsewhere; outputs may differ "
        "slightly from float32's",
    )


def add_checkpoints_argument(parser: ArgumentParser, what: str) -> None:
    """``--ckpt``, repeatable: the checkpoints of ``what`` (e.g. "captioner") to decode with, as
    one ensemble when there are several."""
    parser.add_argument(
        "--ckpt",
        required=True,
        action="append",
        help=f"{what} checkpoint written by `s2s fit`; repeated, the checkpoints decode as one "
        "ensemble",
    )


def load_model_of_type(args: Namespace, model_type: type[M], prog: str) -> M:
    """The model of ``args.ckpt`` on ``args.device`` in ``args.dtype``; exits with one line naming
    the file if it cannot be read or holds another kind of model than the script decodes with."""
    return _of_type(
        args.ckpt, load_models([args.ckpt], args.device, args.dtype, prog)[0], model_type, prog
    )


def load_ensemble_of_type(
    args: Namespace, model_type: type[M], prog: str
) -> tuple[M | Ensemble, M]:
    """What to decode with: the model of ``args.ckpt`` (a list of paths), or the
    :class:`Ensemble` of the models of several; and the first model, whose tokenizers and search
    settings serve them all."""
    models = load_models(args.ckpt, args.device, args.dtype, prog)
    models = [
        _of_type(path, m, model_type, prog) for path, m in zip(args.ckpt, models, strict=True)
    ]
    check_members(args.ckpt, models, prog)
    return (models[0] if len(models) == 1 else Ensemble(models)), models[0]


def load_models(
    paths: list[str], device: str, dtype: torch.dtype | None, prog: str
) -> list[L.LightningModule]:
    """The models of ``paths``; a file that cannot be read exits with one line naming it."""
    try:
        return [load_model(path, map_location=device, dtype=dtype) for path in paths]
    except ValueError as e:
        sys.exit(f"{prog}: {e}")


def check_members(paths: list[str], models: list[L.LightningModule], prog: str) -> None:
    """Models that decode as one ensemble share their vocabularies and, for captioners, how they
    prepare images; else one line naming both checkpoints."""
    for path, model in zip(paths[1:], models[1:], strict=True):
        if model.tokenizers != models[0].tokenizers:
            sys.exit(f"{prog}: {path} and {paths[0]}: different vocabularies, cannot ensemble")
        if getattr(model, "preprocessing", None) != getattr(models[0], "preprocessing", None):
            sys.exit(f"{prog}: {path} prepares images unlike {paths[0]}: cannot ensemble")


def members(decoder: M | Ensemble) -> list[M]:
    """The models of ``decoder``: an ensemble's members, or the model itself."""
    return decoder.members if isinstance(decoder, Ensemble) else [decoder]


def _of_type(path: str, model: L.LightningModule, model_type: type[M], prog: str) -> M:
    if not isinstance(model, model_type):
        sys.exit(f"{prog}: {path} holds a {type(model).__name__}, not a {model_type.__name__}")
    return model


def search_config(search: SearchConfig, args: Namespace, prog: str) -> SearchConfig:
    """The recipe's beam search with the command line's ``--beam``, ``--n-best``, ``--max-len``
    and, where the script has it, ``--length-penalty``; a bad value exits with one line."""
    if args.beam is not None and args.n_best > args.beam:
        sys.exit(f"{prog}: --n-best {args.n_best} exceeds --beam {args.beam}")
    overrides = {
        "beam_size": args.beam or max(search.beam_size, args.n_best),
        "n_best": args.n_best,
    }
    if args.max_len is not None:
        overrides.update(max_len_a=0.0, max_len_b=args.max_len)
    if getattr(args, "length_penalty", None) is not None:
        overrides["length_penalty"] = args.length_penalty
    try:
        return replace(search, **overrides)
    except ValueError as e:
        sys.exit(f"{prog}: {e}")


def sampling_config(search: SearchConfig, args: Namespace, prog: str) -> SamplingConfig:
    """Sampling under the same constraints as ``search`` (length limits, ``min_len``, n-gram
    blocking) with the command line's temperature, top-k, top-p and seed."""
    constraints = {f.name: getattr(search, f.name) for f in fields(Constraints)}
    try:
        return SamplingConfig(
            **constraints,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
        )
    except ValueError as e:
        sys.exit(f"{prog}: {e}")
