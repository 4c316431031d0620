"""Image features computed once: a frozen encoder's feature grid of each image, kept on disk.

With a frozen encoder and no augmentation, every epoch would push each image through the same CNN
again; captioning codebases precompute these features instead (Show-Attend-Tell's HDF5 files,
self-critical.pytorch's ``prepro_feats``). Here a feature file is named by what determines it:

    {folder}/{key of backbone weights and preprocessing}/{SHA-256 of the image file}.pt

so an image whose bytes change, or a backbone with other weights or other preprocessing, never
reuses stale features: it simply has other names. Files are written atomically, so concurrent
writers (DDP ranks) or a killed run leave no partial file. Features are stored in float16.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from s2s.checkpoint import class_path
from s2s.data.images import Preprocessing, load_image
from s2s.io import DataError, atomic_write

log = logging.getLogger(__name__)


class FeatureCache:
    """Feature files of images for ``backbone`` (a module mapping prepared (B, 3, H, W) images to
    (B, C, h, w) grids), computed on first use in batches of ``batch_size``."""

    def __init__(
        self,
        folder: str | Path,
        backbone: nn.Module,
        preprocessing: Preprocessing,
        batch_size: int = 32,
    ) -> None:
        self.backbone, self.preprocessing, self.batch_size = backbone, preprocessing, batch_size
        self.folder = Path(folder) / backbone_key(backbone, preprocessing)

    def files(self, images: Sequence[Path]) -> list[Path]:
        """The feature file of each image, computing those not yet on disk (a missing image file
        is a :class:`~s2s.io.DataError` naming it)."""
        files = [self.folder / f"{file_digest(image)}.pt" for image in images]
        missing = {(f, image) for f, image in zip(files, images, strict=True) if not f.exists()}
        todo = sorted(missing)  # an image listed twice is computed once
        if todo:
            log.info("feature cache %s: computing %d of %d", self.folder, len(todo), len(images))
            self.folder.mkdir(parents=True, exist_ok=True)
            for start in range(0, len(todo), self.batch_size):
                self._compute(todo[start : start + self.batch_size])
        return files

    @torch.no_grad()
    def _compute(self, items: list[tuple[Path, Path]]) -> None:
        transform = self.preprocessing.transform()
        images = torch.stack([transform(readable(image)) for _, image in items])
        param = next(self.backbone.parameters(), None)
        if param is not None:
            images = images.to(param.device, param.dtype)
        training = self.backbone.training
        self.backbone.eval()
        grids = self.backbone(images).half().cpu()
        self.backbone.train(training)
        for (file, _), grid in zip(items, grids, strict=True):
            buffer = io.BytesIO()
            torch.save(grid.clone(), buffer)
            with atomic_write(file) as f:
                f.write(buffer.getvalue())


def readable(image: Path) -> Image.Image:
    """The image, or a blank one with a warning if it cannot be decoded (as training does: the
    broken file's features are the blank image's, under the broken file's digest)."""
    try:
        return load_image(image)
    except DataError as e:
        log.warning("%s; caching a blank image's features", e)
        return Image.new("RGB", (64, 64))


def load_features(file: Path) -> torch.Tensor:
    """The (C, h, w) float16 grid of a feature file; a damaged file is a DataError naming it."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise DataError(f"{file}: cannot read cached features ({e}); delete it") from None


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({e.strerror})") from None


def backbone_key(backbone: nn.Module, preprocessing: Preprocessing) -> str:
    """A name for what turns an image file into features: the backbone's class and weights, and
    the preprocessing (its fields)."""
    digest = hashlib.sha256(f"{class_path(backbone)}|{preprocessing!r}".encode())
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]
