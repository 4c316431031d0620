"""Images as the encoders need them: files read as 8-bit RGB whatever their mode, and each
encoder's preprocessing (resize, crop, normalise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import WeightsEnum
from torchvision.transforms import InterpolationMode, v2

from s2s.io import DataError


def load_image(path: str | Path) -> Image.Image:
    """The image at ``path`` as 8-bit RGB; a file that cannot be decoded is a DataError."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: 16/32-bit grayscale is scaled down, transparency composited on
    white, CMYK and palettes converted."""
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit samples (PNG, TIFF)
        arr = np.asarray(img).astype(np.int64)
        img = Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return img.convert("RGB")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
