"""``s2s fit|validate|test|predict --config recipes/X.yaml``: LightningCLI for every s2s model;
``s2s serve --ckpt CKPT`` serves trained models (s2s/serving).

Vocabulary sizes and label sets flow from the data module to the model, and a captioner's image
preprocessing from the model to the data module (``link_arguments``), so a recipe never types them;
a link whose source or target a class lacks (e.g. a captioner has no source vocabulary) is
skipped.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from pydoc import locate

import lightning as L
import torch.distributed as dist
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from s2s.callbacks import EnsembleWith, RandomStateInCheckpoint, StopOnNonFiniteLoss
from s2s.checkpoint import read_checkpoint, regroup_flat_options
from s2s.nn.image_encoder import preprocessing_for

# Stand-ins for the values linked from the data module when the model is built before it.
LINKED_PLACEHOLDERS = {"src_vocab_size": 300, "tgt_vocab_size": 300, "labels": ["a", "b"]}


class S2SCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Always on, whatever callbacks a recipe lists: a NaN loss stops the run, usable.
        parser.add_lightning_class_args(StopOnNonFiniteLoss, "stop_on_nonfinite_loss")
        # Always on: a resumed run draws the random numbers the uninterrupted one would have.
        parser.add_lightning_class_args(RandomStateInCheckpoint, "random_state_in_checkpoint")
        for name in ("src_vocab_size", "tgt_vocab_size", "labels"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        # Images are prepared as the model's encoder wants them (captioners only).
        parser.link_arguments(
            tuple(f"model.init_args.{n}" for n in ("backbone", "weights", "image_size")),
            "data.init_args.preprocessing",
            compute_fn=preprocessing_for,
        )
        # Fine-tuning: the data is tokenized with the tokenizers of the model's checkpoint.
        parser.link_arguments("model.init_args.init_from", "data.init_args.tokenizer_from")
        parser.add_argument(
            "--ensemble",
            type=list[str],
            default=[],
            help="test or predict: checkpoints that decode as one ensemble with --ckpt_path's",
        )

    def before_instantiate_classes(self) -> None:
        """``s2s fit`` into the checkpoint folder of an earlier run, without resuming it, would
        overwrite its checkpoints: refused before anything is built (tokenizers are trained when
        the data module is). ``--ensemble`` outside test and predict is refused too."""
        ensemble = self.subcommand and self.config[self.subcommand].get("ensemble")
        if ensemble and self.subcommand not in ("test", "predict"):
            raise SystemExit(f"s2s {self.subcommand}: --ensemble is for test and predict")
        if self.subcommand != "fit" or self.config.fit.ckpt_path is not None:
            return
        for folder in checkpoint_folders(self.config.fit.trainer.callbacks or []):
            if any(folder.glob("*.ckpt")):
                raise SystemExit(
                    f"s2s fit: {folder} holds the checkpoints of an earlier run; resume it with "
                    "--ckpt_path last, or start afresh in another folder (or delete this one)"
                )

    def instantiate_classes(self) -> None:
        """Check the data module's and the model's constructor arguments first, by building each
        once alone (the model with :data:`LINKED_PLACEHOLDERS`), so that a bad value is one line on
        stderr with exit status 2, as jsonargparse's type errors are, and comes before the data
        module trains tokenizers for the linked vocabulary sizes."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        model = cfg.model.clone()
        for name, value in LINKED_PLACEHOLDERS.items():
            if name in model.init_args and model.init_args[name] is None:
                model.init_args[name] = value
        _check_constructor("data", L.LightningDataModule, cfg.data)
        _check_constructor("model", L.LightningModule, model)
        super().instantiate_classes()
        if cfg.get("ensemble"):
            self.trainer.callbacks.append(EnsembleWith(cfg.ensemble))

    def _parse_ckpt_path(self) -> None:
        """The model options of ``--ckpt_path`` replace the command line's, as in LightningCLI,
        but the file is read by :func:`read_checkpoint` (which refuses a checkpoint naming classes
        outside s2s's own before anything is imported, and names a bad file), and options saved
        flat by older s2s versions are regrouped (:func:`regroup_flat_options`)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = subcommand and self.config[subcommand].get("ckpt_path")
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        hparams = dict(read_checkpoint(ckpt_path).get("hyper_parameters", {}))
        if "_class_path" not in hparams:
            return  # a model built outside the CLI: the command line's options stand
        class_path = hparams.pop("_class_path")
        hparams = regroup_flat_options(locate(class_path), hparams)
        hparams.pop("_instantiator", None)
        model = {"class_path": class_path, "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write(f"{ckpt_path}: its hyperparameters do not parse as a model\n")
            raise


def checkpoint_folders(callbacks: list[Namespace]) -> list[Path]:
    """The ``dirpath`` of every ModelCheckpoint among the configs ``callbacks`` that sets one."""
    return [
        Path(c.init_args.dirpath)
        for c in callbacks
        if issubclass(locate(c.class_path), ModelCheckpoint) and c.init_args.get("dirpath")
    ]


def _check_constructor(group: str, base: type, value: Namespace) -> None:
    """Build ``value`` (``class_path``, ``init_args``) once; exit with its error on one line."""
    parser = ArgumentParser()
    parser.add_subclass_arguments(base, group)
    try:
        parser.instantiate(Namespace({group: value}))
    except Exception as e:  # jsonargparse wraps the constructor's error: report that one
        while e.__cause__ is not None:
            e = e.__cause__
        message = str(e) if isinstance(e, ValueError) and str(e) else f"{type(e).__name__}: {e}"
        print(f"s2s: {group} {value.class_path}: {message}", file=sys.stderr)
        sys.exit(2)


def main(args: ArgsType = None) -> None:
    """Entry point of the ``s2s`` command: LightningCLI's subcommands, and ``serve``."""
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, list) and argv[:1] == ["serve"]:
        from s2s.serving.server import main as serve  # LitServe is imported only to serve

        serve(argv[1:])
        return
    show_info_log()
    make_cli(args)
    # Lightning leaves a DDP run's process group open. Left to interpreter shutdown, gloo's worker
    # threads can abort the process (SIGABRT, "terminate called without an active exception")
    # after a run that succeeded. Only after success: ranks that failed may not all get here.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def show_info_log() -> None:
    """s2s's INFO records (pairs kept, tokenizer training, skip counts) on stderr, from rank 0 only:
    unconfigured, Python shows only warnings. Logging configured already (by a program calling
    :func:`main`, or pytest) is left alone, as Lightning does for its own logger."""
    logger = logging.getLogger("s2s")
    if rank_zero_only.rank != 0 or logger.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def make_cli(args: ArgsType = None, run: bool = True) -> S2SCLI:
    """The ``s2s`` LightningCLI; ``run=False`` only parses ``args`` and instantiates (tests)."""
    return S2SCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        trainer_defaults={
            # s2s data modules shard their token-budget batches across ranks themselves.
            "use_distributed_sampler": False,
            # Atomic saves on any file system; clear errors for bad --ckpt_path files.
            "plugins": [{"class_path": "s2s.checkpoint.CheckpointIO"}],
        },
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
