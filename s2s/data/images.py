"""Reading image files as the encoders need them: 8-bit RGB, whatever the file's mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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
