"""The language model, classifier and tagger recipes build their models from their bundled data."""

import sys
from pathlib import Path

import pytest

from s2s.cli import make_cli
from s2s.models import LanguageModel, SequenceClassifier, SequenceTagger

RECIPES = Path(__file__).parents[1] / "recipes"


@pytest.mark.parametrize(
    "recipe, model_class, labels",
    [
        ("lm_multi30k_en", LanguageModel, None),
        ("classify_multi30k_langid", SequenceClassifier, ["cs", "de", "en", "fr"]),
        ("tag_multi30k_truecase_de", SequenceTagger, ["lower", "mixed", "title", "upper"]),
    ],
)
def test_recipe_links_the_data_into_its_model(recipe, model_class, labels, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["s2s"])  # LightningCLI warns about pytest's own arguments
    monkeypatch.chdir(RECIPES.parent)  # the recipes' data paths are relative to the repository
    cli = make_cli(
        [
            "--config",
            str(RECIPES / f"{recipe}.yaml"),
            f"--data.init_args.tokenizer.cache_dir={tmp_path}",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ],
        run=False,
    )
    model, data = cli.model, cli.datamodule
    assert isinstance(model, model_class)
    if labels is None:
        assert model.output.out_features == data.tgt_vocab_size
    else:
        assert model.labels == data.labels == labels
        assert model.encoder.embedding.num_embeddings == data.src_vocab_size
