"""``s2s fit|validate|test|predict --config recipes/X.yaml``: LightningCLI for every s2s model.

Vocabulary sizes flow from the data module to the model (``link_arguments``), so a recipe never
types them; a link whose source or target a class lacks (e.g. a captioner has no source
vocabulary) is skipped.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningCLI


class S2SCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")


def main(args: ArgsType = None) -> None:
    """Entry point of the ``s2s`` command."""
    S2SCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        # s2s data modules shard their token-budget batches across ranks themselves.
        trainer_defaults={"use_distributed_sampler": False},
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
