"""Captioned images: the formats users have, image loading, batches and the datamodule.

Every format reads into the same structure, a list of :class:`ImageCaptions` (an image file and all
its captions), in the file's order:

- :class:`CocoCaptions`: COCO captions JSON (``images[{id, file_name}]``,
  ``annotations[{image_id, caption}]``) and its image folder;
- :class:`KarpathySplit`: Karpathy & Fei-Fei's split JSON (``dataset_coco.json``,
  ``dataset_flickr8k.json``: ``images[{filename, [filepath], split, sentences[{raw}]}]``);
- :class:`Flickr8kCaptions`: ``Flickr8k.token.txt`` (``name.jpg#k<TAB>caption``) or Kaggle's
  ``captions.txt`` (``image,caption`` CSV), and a split list (``Flickr_8k.trainImages.txt``, one
  file name a line);
- :class:`TsvCaptions`: ``image_path<TAB>caption`` lines, several lines per image allowed.

Bad input, case by case:

- malformed annotation files (bad JSON, missing keys, a TSV line without a tab, an empty caption):
  :class:`~s2s.io.DataError` naming the file and the entry or line;
- captions for images the file does not list, Flickr8k keys that name no image file, images
  without captions, and missing image files:
  skipped when a split is read, with their number and the first names in a warning;
- grayscale, palette, RGBA/LA (composited on white), CMYK and 16-bit images: converted to 8-bit RGB;
- images that cannot be decoded (truncated, corrupt, not an image): found only when a DataLoader
  worker reads them, so they are replaced by a blank image there, with a warning naming the file and
  the number of such images this process has met; batches keep their size and evaluation still
  scores every image of the split.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from s2s.checkpoint import read_checkpoint
from s2s.data.batching import pad, token_loader
from s2s.data.features import FeatureCache, load_features
from s2s.data.images import Preprocessing, load_image
from s2s.io import DataError, read_lines
from s2s.tokenizer import BOS_ID, EOS_ID, Tokenizer, TokenizerConfig

log = logging.getLogger(__name__)

ImageTransform = Callable[[Image.Image], Tensor]


@dataclass(frozen=True)
class ImageCaptions:
    image: Path
    captions: tuple[str, ...]


# --- formats


class CaptionSource:
    """A split of captioned images in some format (``data.train`` etc. in recipes)."""

    def read(self) -> list[ImageCaptions]:
        raise NotImplementedError


class CocoCaptions(CaptionSource):
    """COCO captions JSON, e.g. ``annotations/captions_val2017.json`` with ``images/val2017``.

    Args:
        annotations: The captions JSON file.
        images: Folder of the images' ``file_name``.
    """

    def __init__(self, annotations: str, images: str) -> None:
        self.annotations, self.images = Path(annotations), Path(images)

    def read(self) -> list[ImageCaptions]:
        data = _read_json(self.annotations)
        files = {}
        for i, img in enumerate(_coco_list(data, "images", self.annotations)):
            where = f"{self.annotations}: images[{i}]"
            files[_field(img, "id", (int, str), where)] = _field(img, "file_name", str, where)
        captions: dict[int | str, list[str]] = {image_id: [] for image_id in files}
        unknown = []
        for i, ann in enumerate(_coco_list(data, "annotations", self.annotations)):
            where = f"{self.annotations}: annotations[{i}]"
            image_id = _field(ann, "image_id", (int, str), where)
            if image_id not in captions:
                unknown.append(f"annotations[{i}] (image_id {image_id!r})")
                continue
            captions[image_id].append(_caption(_field(ann, "caption", object, where), where))
        _warn_skipped(self.annotations, "captions of image ids without an image", unknown)
        return _grouped(
            self.annotations, [(self.images / files[i], c) for i, c in captions.items()]
        )


class KarpathySplit(CaptionSource):
    """One split of a Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr8k.json``, ...).

    Args:
        file: The JSON file.
        images: Folder the images' ``filepath/filename`` are relative to.
        splits: The ``split`` values to take: ``[train, restval]`` is Karpathy's training set of
            COCO; ``[val]``, ``[test]`` the others.
    """

    def __init__(
        self, file: str, images: str, splits: Sequence[str] = ("train", "restval")
    ) -> None:
        self.file, self.images, self.splits = Path(file), Path(images), tuple(splits)

    def read(self) -> list[ImageCaptions]:
        data = _read_json(self.file)
        items = []
        try:
            for i, img in enumerate(data["images"]):
                if img["split"] in self.splits:
                    where = f"{self.file}: images[{i}]"
                    path = self.images / img.get("filepath", "") / img["filename"]
                    items.append((path, [_caption(s["raw"], where) for s in img["sentences"]]))
        except (KeyError, TypeError) as e:
            raise DataError(f"{self.file}: not a Karpathy split JSON (missing {e})") from None
        return _grouped(self.file, items)


class Flickr8kCaptions(CaptionSource):
    """Flickr8k (or Flickr30k) captions with one split's list of image names.

    Args:
        captions: ``Flickr8k.token.txt`` (``name.jpg#k<TAB>caption`` lines) or the Kaggle
            release's ``captions.txt`` (CSV with an ``image,caption`` header).
        split_list: ``Flickr_8k.trainImages.txt`` etc.: one image name a line, in split order.
        images: Folder of the images; default: ``Flicker8k_Dataset/`` (the original release's
            name) or ``Images/`` (Kaggle's) beside ``captions``.
    """

    def __init__(self, captions: str, split_list: str, images: str | None = None) -> None:
        self.captions, self.split_list = Path(captions), Path(split_list)
        self.images = Path(images) if images is not None else _flickr_images(self.captions)

    def read(self) -> list[ImageCaptions]:
        if not self.split_list.is_file():
            raise DataError(
                f"{self.split_list}: no such file; the official split lists (Flickr_8k.trainImages"
                ".txt, ...devImages.txt, ...testImages.txt) are in Flickr8k_text.zip of the "
                "original release (Hodosh et al., 2013), which the Kaggle copy lacks"
            )
        names = [line.strip() for line in read_lines(self.split_list) if line.strip()]
        captions: dict[str, list[str]] = {name: [] for name in names}
        no_image = []
        for where, key, caption in _flickr_rows(self.captions):
            name = key.rpartition("#")[0] or key
            if Path(name).suffix.lower() not in Image.registered_extensions():
                no_image.append(key)  # e.g. Flickr8k's orphan key 2258277193_586949ec62.jpg.1#0
            elif name in captions:  # the other splits' images are not an error
                captions[name].append(_caption(caption, where))
        _warn_skipped(self.captions, "captions whose key names no image file", no_image)
        return _grouped(self.captions, [(self.images / n, c) for n, c in captions.items()])


def _flickr_images(captions: Path) -> Path:
    """The image folder beside a Flickr8k captions file, under either name it is released with."""
    for name in ("Flicker8k_Dataset", "Images"):
        if (captions.parent / name).is_dir():
            return captions.parent / name
    raise DataError(f"{captions.parent}: no Flicker8k_Dataset/ or Images/ folder; set images")


def _flickr_rows(path: Path) -> list[tuple[str, str, str]]:
    """(where, key, caption) of each caption of a Flickr8k token file or Kaggle CSV."""
    lines = read_lines(path)
    if not lines or lines[0].strip() != "image,caption":
        return [(f"{path}:{lineno}", key, caption) for lineno, (key, caption) in _tsv(path)]
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if line.strip():
            key, *caption = next(csv.reader([line]))
            if not caption:
                raise DataError(f"{path}:{lineno}: expected 'image,caption', found no comma")
            rows.append((f"{path}:{lineno}", key.strip(), ",".join(caption)))
    return rows


class TsvCaptions(CaptionSource):
    """``image_path<TAB>caption`` lines; an image's lines need not be adjacent.

    Args:
        file: The TSV file (plain or ``.gz``).
        images: Folder relative image paths start from; default: the TSV file's folder.
    """

    def __init__(self, file: str, images: str | None = None) -> None:
        self.file = Path(file)
        self.images = Path(images) if images is not None else self.file.parent

    def read(self) -> list[ImageCaptions]:
        captions: dict[str, list[str]] = {}
        for lineno, (path, caption) in _tsv(self.file):
            captions.setdefault(path, []).append(_caption(caption, f"{self.file}:{lineno}"))
        return _grouped(self.file, [(self.images / p, c) for p, c in captions.items()])


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: invalid JSON ({e})") from None


def _coco_list(data: Any, key: str, path: Path) -> list[Any]:
    """``data[key]``, which COCO captions JSON requires to be a list."""
    if not isinstance(data, dict) or key not in data:
        raise DataError(f"{path}: not COCO captions JSON (missing {key!r})")
    if not isinstance(data[key], list):
        raise DataError(f"{path}: {key} must be a list, found {type(data[key]).__name__}")
    return data[key]


def _field(entry: Any, key: str, types: type | tuple[type, ...], where: str) -> Any:
    """``entry[key]`` of a JSON object, of one of ``types``; anything else names ``where``."""
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, found {type(entry).__name__}")
    if key not in entry:
        raise DataError(f"{where}: missing key {key!r}")
    value = entry[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise DataError(f"{where}: {key} {value!r} has the wrong type ({type(value).__name__})")
    return value


def _tsv(path: Path) -> list[tuple[int, tuple[str, str]]]:
    """(line number, (key, caption)) of each non-empty line."""
    rows = []
    for lineno, line in enumerate(read_lines(path), start=1):
        if line.strip():
            key, tab, caption = line.partition("\t")
            if not tab:
                raise DataError(f"{path}:{lineno}: expected 'image<TAB>caption', found no tab")
            rows.append((lineno, (key.strip(), caption)))
    return rows


def _caption(text: Any, where: str) -> str:
    """``text`` with its whitespace normalised; an empty or non-string caption is an error."""
    caption = " ".join(text.split()) if isinstance(text, str) else ""
    if not caption:
        raise DataError(f"{where}: empty or missing caption {text!r}")
    return caption


def _grouped(source: Path, items: list[tuple[Path, list[str]]]) -> list[ImageCaptions]:
    """Images with at least one caption, in order; images without captions are skipped."""
    _warn_skipped(source, "images without captions", [str(p) for p, c in items if not c])
    return [ImageCaptions(path, tuple(c)) for path, c in items if c]


def _warn_skipped(source: Path, what: str, names: list[str]) -> None:
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        log.warning("%s: skipped %d %s: %s", source, len(names), what, shown)


# --- examples and batches


@dataclass
class CaptionExample:
    """One training pair, or one evaluation image with all its references."""

    index: int  # training: pair number; evaluation: image number in the split
    image: Path
    tgt: list[int]  # caption ids without BOS/EOS (evaluation: the first reference)
    refs: tuple[str, ...]  # every caption of the image


@dataclass
class CaptionBatch:
    """A batch; Lightning moves its tensors to the device."""

    images: Tensor | None  # (B, 3, H, W) prepared for the encoder; None with ``features``
    tgt: Tensor | None  # (B, T) BOS, caption ids, EOS, PAD-padded; None without captions
    indices: Tensor  # (B,) example numbers (see CaptionExample.index)
    refs: list[list[str]]  # every reference caption of each image; [] without captions
    features: Tensor | None = None  # (B, C, h, w) cached backbone grids, instead of images


class CaptionDataset(Dataset[tuple[CaptionExample, Tensor]]):
    """Examples with their images read and transformed in the DataLoader's workers."""

    def __init__(self, examples: Sequence[CaptionExample], transform: ImageTransform) -> None:
        self.examples = list(examples)
        self.transform = transform
        self.unreadable = 0  # images of this process replaced by a blank one

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[CaptionExample, Tensor]:
        ex = self.examples[i]
        try:
            return ex, self.transform(load_image(ex.image))
        except DataError as e:
            self.unreadable += 1
            log.warning("%s; using a blank image (%d unreadable so far)", e, self.unreadable)
            return ex, torch.zeros_like(self.transform(Image.new("RGB", (64, 64))))


class CachedFeatures(Dataset[tuple[CaptionExample, Tensor]]):
    """Examples with the cached backbone features of their images (see s2s/data/features.py)."""

    def __init__(self, examples: Sequence[CaptionExample], files: dict[Path, Path]) -> None:
        self.examples, self.files = list(examples), files

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[CaptionExample, Tensor]:
        ex = self.examples[i]
        return ex, load_features(self.files[ex.image])


def collate(items: Sequence[tuple[CaptionExample, Tensor]]) -> CaptionBatch:
    """A batch of images, or of cached features when the items are (C, h, w) float16 grids."""
    tensors = torch.stack([tensor for _, tensor in items])
    cached = tensors.dtype == torch.float16
    return CaptionBatch(
        images=None if cached else tensors,
        features=tensors if cached else None,
        tgt=pad([[BOS_ID, *ex.tgt, EOS_ID] for ex, _ in items]),
        indices=torch.tensor([ex.index for ex, _ in items]),
        refs=[list(ex.refs) for ex, _ in items],
    )


def image_batch(images: Sequence[Image.Image], transform: ImageTransform) -> CaptionBatch:
    """A batch of images without captions, to caption without a datamodule."""
    return CaptionBatch(
        images=torch.stack([transform(img) for img in images]),
        tgt=None,
        indices=torch.arange(len(images)),
        refs=[],
    )


# --- the datamodule


class CaptionData(L.LightningDataModule):
    """Captioned images: training uses every (image, caption) pair, evaluation each image once
    against all its captions, images prepared as the model's encoder needs.

    Args:
        train: The training split (also trains the tokenizer).
        val: The validation split.
        test: The split for ``s2s test``, and for ``s2s predict`` (no split of its own).
        tokenizer: How the tokenizer is trained.
        preprocessing: How the model's encoder wants its images prepared; ``s2s`` links it from
            the model's ``backbone``, ``weights`` and ``image_size``
            (:func:`~s2s.nn.image_encoder.preprocessing_for`), so recipes never set it.
        lowercase: Lowercase every caption (training and references), as most captioning work does.
        max_len: Training captions longer than this many subwords are dropped.
        batch_size: Training examples per batch.
        train_on: What a training example is: each (image, caption) pair (cross-entropy
            training), or each image once with its first caption as the target (self-critical
            training, which rewards samples against all of an image's captions: visiting an
            image once per epoch, as self-critical.pytorch does, not once per caption).
        eval_batch_size: Images per validation or test batch.
        augment: Random crops of 50-100% of the training images instead of the centre crop.
        feature_cache: A folder for the image features of the model's backbone, computed once
            and read instead of the images (s2s/data/features.py). Training needs an encoder
            frozen for the whole run (``unfreeze_encoder_at: null``) and no ``augment``.
        tokenizer_from: A captioner checkpoint whose tokenizer to use instead of training one
            (fine-tuning; ``s2s`` links it from ``model.init_from``).
        num_workers: DataLoader worker processes (they read and transform the images).
        seed: Seed of the training batch order (combined with the epoch).
    """

    def __init__(
        self,
        train: CaptionSource,
        val: CaptionSource,
        test: CaptionSource | None = None,
        tokenizer: TokenizerConfig = TokenizerConfig(),
        preprocessing: Preprocessing | None = None,
        lowercase: bool = True,
        max_len: int = 50,
        batch_size: int = 32,
        train_on: Literal["captions", "images"] = "captions",
        eval_batch_size: int = 64,
        augment: bool = False,
        feature_cache: str | None = None,
        tokenizer_from: str | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.sources = {"train": train, "val": val, "test": test}
        self.tokenizer_config = tokenizer
        self.lowercase = lowercase
        self.max_len = max_len
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_on = train_on
        self.augment = augment
        self.feature_cache = feature_cache
        self.tokenizer_from = tokenizer_from
        self.cache: FeatureCache | None = None  # built at setup, from the model's backbone
        self.num_workers = num_workers
        self.seed = seed
        self.preprocessing = preprocessing
        self.datasets: dict[str, CaptionDataset | CachedFeatures] = {}

    def _read(self, split: str) -> list[ImageCaptions]:
        """The split's images that exist, with normalised captions; missing files are skipped."""
        source = self.sources[split]
        if source is None:
            raise DataError(f"no {split} split configured (data.{split})")
        items, missing = [], []
        for item in source.read():
            if not item.image.is_file():
                missing.append(str(item.image))
                continue
            captions = tuple(c.lower() for c in item.captions) if self.lowercase else item.captions
            items.append(ImageCaptions(item.image, captions))
        _warn_skipped(Path(split), "missing image files", missing)
        if not items:
            raise DataError(f"the {split} split has no readable captioned images")
        return items

    @cached_property
    def _train_items(self) -> list[ImageCaptions]:
        return self._read("train")

    @cached_property
    def tgt_tokenizer(self) -> Tokenizer:
        """The tokenizer of ``tokenizer_from``, else trained on the training captions on first use
        (or loaded from the cache)."""
        if self.tokenizer_from:
            saved = read_checkpoint(self.tokenizer_from).get("tokenizers", {})
            if set(saved) != {"tgt"}:
                raise ValueError(
                    f"{self.tokenizer_from}: has tokenizers {sorted(saved)}, not a captioner's"
                )
            return Tokenizer(saved["tgt"])
        captions = [c for item in self._train_items for c in item.captions]
        return Tokenizer.train_on_lines(captions, self.tokenizer_config)

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_tokenizer.vocab_size

    @property
    def train_references(self) -> list[list[str]]:
        """Every training image's captions: the corpus of self-critical training's CIDEr-D."""
        return [list(item.captions) for item in self._train_items]

    def setup(self, stage: str) -> None:
        if self.preprocessing is None:
            raise ValueError(
                "CaptionData needs the model's image preprocessing: `s2s` links it from the "
                "model's backbone; in Python pass preprocessing=captioner.preprocessing"
            )
        if self.feature_cache is not None:
            self.cache = self._cache(stage)
        if stage == "fit":
            self.datasets["train"] = self._train_set()
        if stage in ("fit", "validate"):
            self.datasets["val"] = self._eval_set("val")
        if stage in ("test", "predict"):
            self.datasets["test"] = self._eval_set("test")

    def _train_set(self) -> CaptionDataset | CachedFeatures:
        """Every (image, caption) pair with at most ``max_len`` subwords; with ``train_on:
        images``, each image once, its first such caption the target."""
        examples, too_long = [], 0
        for item in self._train_items:
            taken = False  # with train_on: images, the image has its example
            for caption in item.captions:
                ids = self.tgt_tokenizer.encode(caption)
                if len(ids) > self.max_len:
                    too_long += 1
                elif self.train_on == "captions" or not taken:
                    examples.append(CaptionExample(len(examples), item.image, ids, item.captions))
                    taken = True
        log.info(
            "train: %d images, %d examples (%d captions longer than %d subwords dropped)",
            len(self._train_items),
            len(examples),
            too_long,
            self.max_len,
        )
        return self._dataset(examples, self.preprocessing.transform(augment=self.augment))

    def _cache(self, stage: str) -> FeatureCache:
        """The feature cache of the model's backbone; training must never change its features."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        encoder = getattr(model, "encoder", None)
        if encoder is None or not hasattr(encoder, "backbone"):
            raise ValueError("data.feature_cache needs a model with an image encoder (a Captioner)")
        trains_encoder = getattr(model, "unfreeze_encoder_at", 0) is not None
        if stage == "fit" and (self.augment or trains_encoder):
            raise ValueError(
                "data.feature_cache needs the encoder frozen for the whole run "
                "(model.unfreeze_encoder_at: null) and data.augment: false"
            )
        return FeatureCache(self.feature_cache, encoder.backbone, self.preprocessing)

    def _dataset(
        self, examples: list[CaptionExample], transform: ImageTransform
    ) -> CaptionDataset | CachedFeatures:
        """The examples with their images, or with their cached features."""
        if self.cache is None:
            return CaptionDataset(examples, transform)
        images = sorted({ex.image for ex in examples})
        return CachedFeatures(examples, dict(zip(images, self.cache.files(images), strict=True)))

    def _eval_set(self, split: str) -> CaptionDataset | CachedFeatures:
        """One example per image; its first caption is the target of the validation loss."""
        examples = [
            CaptionExample(
                i, item.image, self.tgt_tokenizer.encode(item.captions[0]), item.captions
            )
            for i, item in enumerate(self._read(split))
        ]
        return self._dataset(examples, self.preprocessing.transform())

    def _loader(self, split: str, batch_size: int, *, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        # A fixed batch size is a token budget in which every example costs 1.
        return token_loader(
            self,
            dataset,
            [1] * len(dataset),
            batch_size,
            shuffle=shuffle,
            seed=self.seed,
            collate_fn=collate,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split's images: ``s2s predict`` writes the captions ``s2s test`` scores."""
        return self.test_dataloader()


# --- results


def image_id(path: Path) -> int | str:
    """The id of an image in results files: the number of a COCO file name
    (``COCO_val2014_000000391895.jpg``, ``000000391895.jpg``: 391895), else the file's stem
    (Flickr8k: ``1000268201_693b08cb0e``)."""
    match = re.fullmatch(r"(?:COCO_[a-z]+\d*_)?(\d+)", path.stem)
    return int(match.group(1)) if match else path.stem


def coco_results(images: Sequence[Path], captions: Sequence[str]) -> list[dict[str, Any]]:
    """Captions in the COCO results format: ``[{"image_id", "caption"}]``, in order."""
    return [
        {"image_id": image_id(path), "caption": caption}
        for path, caption in zip(images, captions, strict=True)
    ]
