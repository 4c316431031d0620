"""The feature cache: computed once, reused while nothing changed, recomputed when an image or the
encoder changes; a captioner trains and tests on cached features as on images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from tiny import SCENES, caption_recipe, run_cli, write_config, write_scenes

from s2s.cli import make_cli
from s2s.data.captions import image_batch
from s2s.data.features import FeatureCache, load_features
from s2s.data.images import Preprocessing, load_image
from s2s.nn.image_encoder import ConvNet

PREP = Preprocessing(crop_size=32, resize_size=32)


class Counting(ConvNet):
    """A ConvNet that counts the images it has seen."""

    def __init__(self) -> None:
        super().__init__([4, 8])
        self.seen = 0

    def forward(self, images):
        self.seen += len(images)
        return super().forward(images)


@pytest.fixture
def scenes(tmp_path):
    write_scenes(tmp_path / "images")
    return sorted((tmp_path / "images").glob("*.png"))


def test_features_are_the_backbones_and_computed_once(scenes, tmp_path):
    torch.manual_seed(0)
    backbone = Counting()
    cache = FeatureCache(tmp_path / "cache", backbone, PREP)
    files = cache.files([*scenes, scenes[0]])  # an image listed twice is computed once
    assert backbone.seen == len(scenes) and files[0] == files[-1]
    batch = image_batch([load_image(p) for p in scenes], PREP.transform())
    with torch.no_grad():
        expected = backbone.eval()(batch.images)
    for file, grid in zip(files, expected, strict=False):
        assert load_features(file).dtype == torch.float16
        torch.testing.assert_close(load_features(file).float(), grid, atol=2e-3, rtol=2e-3)
    seen = backbone.seen
    assert FeatureCache(tmp_path / "cache", backbone, PREP).files(scenes) == files[:3]
    assert backbone.seen == seen  # nothing recomputed


def test_a_changed_image_or_encoder_is_recomputed(scenes, tmp_path):
    torch.manual_seed(0)
    backbone = Counting()
    files = FeatureCache(tmp_path / "cache", backbone, PREP).files(scenes)
    Image.new("RGB", (32, 32), "white").save(scenes[0])  # same name, other pixels
    again = FeatureCache(tmp_path / "cache", backbone, PREP).files(scenes)
    assert again[1:] == files[1:] and again[0] != files[0]
    assert backbone.seen == len(scenes) + 1
    with torch.no_grad():
        next(backbone.parameters()).add_(0.1)  # other weights
    other = FeatureCache(tmp_path / "cache", backbone, PREP).files(scenes)
    assert other[0].parent != again[0].parent and backbone.seen == 2 * len(scenes) + 1
    resized = Preprocessing(crop_size=32, resize_size=40)  # other preprocessing
    assert FeatureCache(tmp_path / "cache", backbone, resized).folder != other[0].parent


def test_an_undecodable_image_gets_blank_features_with_a_warning(scenes, tmp_path, caplog):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files = FeatureCache(tmp_path / "cache", Counting(), PREP).files([broken, scenes[0]])
    assert load_features(files[0]).shape == load_features(files[1]).shape
    assert "broken.png: cannot read image" in caplog.text


def test_a_captioner_trains_on_cached_features_as_on_images(tmp_path):
    """Same seed, same steps: the run that reads cached features reaches the same weights, up to
    the float16 rounding of the features (a step of lr 0.03 moves weights by up to 0.03)."""
    tsv = write_scenes(tmp_path / "images")
    runs = {}
    for name in ("plain", "cached"):
        root = tmp_path / name
        root.mkdir()
        cfg = caption_recipe(root, tsv, "bahdanau")
        cfg["trainer"]["max_steps"] = 30
        cfg["model"]["init_args"]["unfreeze_encoder_at"] = None  # a frozen (random) encoder
        cfg["data"]["init_args"]["test"] = cfg["data"]["init_args"]["val"]
        if name == "cached":
            cfg["data"]["init_args"]["feature_cache"] = str(tmp_path / "features")
        run_cli("fit", "--config", str(write_config(root / "fit.yaml", cfg)))
        runs[name] = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(list((tmp_path / "features").glob("*/*.pt"))) == len(SCENES)
    plain, cached = (runs[n]["state_dict"] for n in ("plain", "cached"))
    for name in plain:
        torch.testing.assert_close(cached[name], plain[name], atol=5e-2, rtol=0)


def test_s2s_links_the_models_preprocessing_to_the_data_module(tmp_path):
    """The recipe never sets data.preprocessing: the CLI gives the data module the model's."""
    tsv = write_scenes(tmp_path / "images")
    cfg = caption_recipe(tmp_path, tsv, "bahdanau")
    cfg["model"]["init_args"]["image_size"] = 40
    cli = make_cli(["--config", str(write_config(tmp_path / "fit.yaml", cfg))], run=False)
    assert cli.datamodule.preprocessing == Preprocessing(crop_size=40, resize_size=40)
    assert cli.datamodule.preprocessing == cli.model.preprocessing


def test_training_refuses_a_cache_with_a_trainable_encoder(tmp_path):
    tsv = write_scenes(tmp_path / "images")
    cfg = caption_recipe(tmp_path, tsv, "bahdanau")
    cfg["data"]["init_args"]["feature_cache"] = str(tmp_path / "features")  # encoder trains
    with pytest.raises(ValueError, match=r"feature_cache needs the encoder frozen"):
        run_cli("fit", "--config", str(write_config(tmp_path / "fit.yaml", cfg)))
