"""Training speed of a translation recipe: Lightning against a plain PyTorch loop, then each option.

Part 1 builds two identical copies of the recipe's model (same seed) and trains them on the same
real batches of its data module, alternating batch by batch so that changes in machine load hit
both alike: each batch goes through the Lightning Trainer (the model's own ``training_step``, the
recipe's gradient clipping; no validation, logger, checkpoints or progress bar) and through a
hand-written loop (forward, loss, backward, clip, optimiser and warmup step), which runs from a
callback after Lightning's step on even batches and before it on odd ones, so neither always comes
first. Lightning's time for a batch is the wall time since the previous batch ended minus the
plain loop's, so everything its loop does between batches counts against it. The first
``--warmup`` batches are not timed. Tokens/s are totals over the timed batches; their ratio is the
median over batches of the plain loop's time over Lightning's for the same batch, which a burst of
load from other processes that hits one of the two barely moves.

Part 2 times the plain loop for each attention type, cell and input feeding at the recipe's sizes,
round-robin over the same batches, to show what each option costs. ``luong_dot`` is left out when
the decoder and encoder output sizes differ (it needs them equal).

Part 3 (``--compile``) trains two copies of the model with the plain loop, one with
``torch.compile(model)``, round-robin over the same batches, and reports both speeds over all of
them (compilation included, as a run pays it) and over their second half (after compiling).

Speed is target tokens (EOS included, padding not) per second of training. Peak memory is the
process's peak resident set size (``ru_maxrss``) after part 1: both model copies with their
gradients and Adam states, the data, Python and whatever the allocator keeps cached; it is an upper
bound on what one training run needs.

    python tools/bench_train.py                                # attention recipe, < 3 min here
    python tools/bench_train.py --recipe recipes/multi30k_de_en_demo.yaml --precision bf16-mixed
    python tools/bench_train.py --skip-options --compile --batches 40

The last two lines are ``train_tokens_per_s=Y`` (through Lightning) and ``lightning_over_plain=X``
(the median ratio above; 1.0 = equal, below 1 = Lightning slower).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import resource
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader

from s2s.data import TranslationBatch, TranslationData
from s2s.decoding import SearchConfig
from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderConfig
from s2s.nn.encoder import EncoderConfig
from s2s.optim import OptimConfig, configure_optimizers
from s2s.tokenizer import PAD_ID, TokenizerConfig

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")
CELLS = ("lstm", "gru")
PRECISIONS = ("32-true", "bf16-mixed")


@dataclass
class Meter:
    """Training time and target tokens of each timed batch."""

    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def add(self, seconds: float, tokens: int) -> None:
        self.seconds.append(seconds)
        self.tokens.append(tokens)

    @property
    def tokens_per_s(self) -> float:
        return sum(self.tokens) / sum(self.seconds)

    @property
    def median_tokens_per_s(self) -> float:
        """The median batch's speed: what a quiet machine gives when load came in bursts."""
        return statistics.median(n / s for n, s in zip(self.tokens, self.seconds, strict=True))


def target_tokens(batch: TranslationBatch) -> int:
    return int((batch.tgt[:, 1:] != PAD_ID).sum())


def build_model(
    recipe: dict[str, Any], data: TranslationData, cell: str | None = None, **decoder: Any
) -> Seq2Seq:
    """The recipe's translator with another ``cell`` (encoder and decoder) and ``decoder``
    options, initialised from seed 0."""
    model = recipe["model"]
    if model["class_path"] not in ("s2s.models.Seq2Seq", "s2s.models.seq2seq.Seq2Seq"):
        raise SystemExit(f"bench_train.py times Seq2Seq recipes, not {model['class_path']}")
    args = dict(model.get("init_args", {}))
    cells = {} if cell is None else {"cell": cell}
    args["encoder"] = EncoderConfig(**{**args.get("encoder", {}), **cells})
    args["decoder"] = DecoderConfig(**{**args.get("decoder", {}), **cells, **decoder})
    args["optim"] = OptimConfig(**args.get("optim", {}))
    args["search"] = SearchConfig(**args.get("search", {}))
    torch.manual_seed(0)
    return Seq2Seq(data.src_vocab_size, data.tgt_vocab_size, **args)


class PlainLoop:
    """The minimal training loop Lightning is measured against."""

    def __init__(self, model: Seq2Seq, clip: float | None, bf16: bool) -> None:
        self.model = model.train()
        self.clip = clip
        self.bf16 = bf16
        (self.optimizer,), schedulers = configure_optimizers(model.parameters(), model.optim)
        self.schedulers = [s["scheduler"] for s in schedulers if s["interval"] == "step"]

    def train_step(self, batch: TranslationBatch) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else None
        with autocast or contextlib.nullcontext():
            logits = self.model(batch)  # (B, T, V)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(),
                batch.tgt[:, 1:].flatten(),
                ignore_index=PAD_ID,
                label_smoothing=self.model.label_smoothing,
            )
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        for scheduler in self.schedulers:
            scheduler.step()


class Alternate(L.Callback):
    """Trains the plain loop on each of Lightning's batches, before or after Lightning's step by
    turns; times both."""

    def __init__(self, plain: PlainLoop, warmup: int) -> None:
        self.plain, self.warmup = plain, warmup
        self.lightning_meter, self.plain_meter = Meter(), Meter()
        self.mark = 0.0  # when the previous batch ended
        self.plain_seconds = 0.0  # of the current batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx % 2:
            self._plain_step(batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx % 2 == 0:
            self._plain_step(batch)
        now = time.perf_counter()
        if batch_idx >= self.warmup:
            tokens = target_tokens(batch)
            self.plain_meter.add(self.plain_seconds, tokens)
            self.lightning_meter.add(now - self.mark - self.plain_seconds, tokens)
        self.mark = now

    def _plain_step(self, batch: TranslationBatch) -> None:
        start = time.perf_counter()
        self.plain.train_step(batch)
        self.plain_seconds = time.perf_counter() - start


def lightning_vs_plain(
    recipe: dict[str, Any], data: TranslationData, batches: list, args: argparse.Namespace
) -> tuple[Meter, Meter]:
    clip = recipe.get("trainer", {}).get("gradient_clip_val")
    lightning_model, plain_model = build_model(recipe, data), build_model(recipe, data)
    alternate = Alternate(PlainLoop(plain_model, clip, args.precision == "bf16-mixed"), args.warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=len(batches),
        precision=args.precision,
        gradient_clip_val=clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[alternate],
    )
    params = sum(p.numel() for p in lightning_model.parameters())
    print(f"model: {params / 1e6:.2f}M parameters; {torch.get_num_threads()} threads")
    trainer.fit(lightning_model, train_dataloaders=DataLoader(batches, batch_size=None))
    return alternate.lightning_meter, alternate.plain_meter


def option_costs(
    recipe: dict[str, Any], data: TranslationData, batches: list, args: argparse.Namespace
) -> None:
    """Plain-loop tokens/s of every attention x cell x input feeding, round-robin."""
    clip = recipe.get("trainer", {}).get("gradient_clip_val")
    options, loops, skipped = [], [], set()
    for attention, cell, feeding in itertools.product(ATTENTIONS, CELLS, (True, False)):
        try:
            model = build_model(recipe, data, attention=attention, cell=cell, input_feeding=feeding)
        except ValueError as e:  # luong_dot needs equal decoder and encoder output sizes
            skipped.add(f"{attention}: {e}")
            continue
        options.append((attention, cell, feeding))
        loops.append(PlainLoop(model, clip, args.precision == "bf16-mixed"))
    meters = [Meter() for _ in options]
    for i, batch in enumerate(batches[: args.warmup + args.option_batches]):
        for loop, meter in zip(loops, meters, strict=True):
            start = time.perf_counter()
            loop.train_step(batch)
            if i >= args.warmup:
                meter.add(time.perf_counter() - start, target_tokens(batch))
    print(f"{'attention':<14} {'cell':<5} {'input feeding':<14} {'tokens/s':>9}")
    for (attention, cell, feeding), meter in zip(options, meters, strict=True):
        on = "on" if feeding else "off"
        print(f"{attention:<14} {cell:<5} {on:<14} {meter.tokens_per_s:>9.0f}")
    for reason in sorted(skipped):
        print(f"skipped {reason}")


def compile_costs(
    recipe: dict[str, Any], data: TranslationData, batches: list, args: argparse.Namespace
) -> None:
    """Plain-loop tokens/s of the model eager and under ``torch.compile``, round-robin."""
    clip = recipe.get("trainer", {}).get("gradient_clip_val")
    bf16 = args.precision == "bf16-mixed"
    eager = PlainLoop(build_model(recipe, data), clip, bf16)
    compiled = PlainLoop(build_model(recipe, data), clip, bf16)
    compiled.model = torch.compile(compiled.model)
    meters = {"eager": Meter(), "torch.compile": Meter()}
    for batch in batches:
        for loop, meter in zip((eager, compiled), meters.values(), strict=True):
            start = time.perf_counter()
            loop.train_step(batch)
            meter.add(time.perf_counter() - start, target_tokens(batch))
    half = len(batches) // 2
    for name, m in meters.items():
        later = Meter(m.seconds[half:], m.tokens[half:])
        print(
            f"{name:<14} {m.tokens_per_s:.0f} target tokens/s over {len(batches)} batches "
            f"(compilation included), {later.tokens_per_s:.0f} over the last {len(batches) - half}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/multi30k_de_en_attn.yaml", type=Path)
    parser.add_argument("--batches", type=int, default=20, help="timed batches of part 1")
    parser.add_argument("--option-batches", type=int, default=3, help="timed batches per option")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches before timing")
    parser.add_argument("--skip-options", action="store_true", help="skip part 2")
    parser.add_argument("--compile", action="store_true", help="part 3: torch.compile's gain")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="default: the recipe's trainer.precision, or 32-true",
    )
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.batches < 1 or args.option_batches < 1:
        parser.error("--warmup, --batches and --option-batches must be at least 1")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*validation_step.*")
    warnings.filterwarnings("ignore", ".*ReduceLROnPlateau conditioned on metric.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")

    recipe = yaml.safe_load(args.recipe.read_text(encoding="utf-8"))
    args.precision = args.precision or str(recipe.get("trainer", {}).get("precision", "32-true"))
    if args.precision not in PRECISIONS:
        raise SystemExit(f"{args.recipe}: precision {args.precision!r} is not one of {PRECISIONS}")
    data_args = dict(recipe["data"]["init_args"])
    data_args["tokenizer"] = TokenizerConfig(**data_args.get("tokenizer", {}))
    data = TranslationData(**data_args)
    data.setup("fit")
    needed = args.warmup + max(args.batches, 0 if args.skip_options else args.option_batches)
    batches = list(itertools.islice(data.train_dataloader(), needed))
    mean_tokens = sum(map(target_tokens, batches)) / len(batches)
    print(
        f"{args.recipe}: {len(batches)} batches of {mean_tokens:.0f} target tokens on average, "
        f"precision {args.precision}"
    )

    lightning, plain = lightning_vs_plain(recipe, data, batches[: args.warmup + args.batches], args)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    for name, meter in (("plain loop", plain), ("Lightning", lightning)):
        print(
            f"{name + ':':<11} {meter.tokens_per_s:.0f} target tokens/s "
            f"(median batch {meter.median_tokens_per_s:.0f})"
        )
    print(f"peak RSS of the process (two model copies): {peak_mib:.0f} MiB")
    if not args.skip_options:
        option_costs(recipe, data, batches, args)
    if args.compile:
        compile_costs(recipe, data, batches, args)
    print(f"train_tokens_per_s={lightning.tokens_per_s:.0f}")
    ratios = [p / lg for p, lg in zip(plain.seconds, lightning.seconds, strict=True)]
    print(f"lightning_over_plain={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
