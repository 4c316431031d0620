"""CPU cost of the captioner's pretrained image backbones (EfficientNet-Lite0, -Lite1, -Lite2 by
default): what each costs to encode an image, and how many regions the decoder attends over.

Every backbone encodes the same images (the first ``--n`` of ``--images``, or random ones), each
prepared by its own preprocessing (a larger input for a larger Lite model), in batches of
``--batch-size``, without gradients: the work of computing the feature cache once, and of every
image at test and serving time. Rounds interleave the backbones so that changes in machine load hit
all alike; each backbone's fastest of ``--repeats`` rounds counts. Image decoding and preprocessing
are not timed. A fine-tuning step costs about three times the forward pass measured here.

    python tools/bench_backbones.py --images data/flickr8k/Images --n 64

Per backbone it prints parameters, input size, region grid, ms per image and images/s; the last
lines are ``{name}_over_{first}=X``: each backbone's time per image over the first one's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from s2s.data.images import load_image
from s2s.nn.image_encoder import ImageEncoder

LITES = [f"s2s.nn.image_encoder.EfficientNetLite{v}" for v in range(3)]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def sample_images(folder: Path | None, n: int) -> list[Image.Image]:
    """The first ``n`` images of ``folder`` (sorted by name), or ``n`` random 256x256 ones."""
    if folder is None:
        g = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (n, 256, 256, 3), generator=g, dtype=torch.uint8)
        return [Image.fromarray(p.numpy()) for p in pixels]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if len(files) < n:
        raise SystemExit(f"{folder}: {len(files)} images, fewer than --n {n}")
    return [load_image(f) for f in files]


@torch.no_grad()
def encode_seconds(encoder: ImageEncoder, batches: list[torch.Tensor]) -> float:
    """Wall seconds for the backbone to encode every batch."""
    start = time.perf_counter()
    for batch in batches:
        encoder.backbone(batch)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=LITES, help="class paths to compare")
    p.add_argument("--images", type=Path, help="a folder of images (default: random images)")
    p.add_argument("--n", type=int, default=64, help="images per round")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="rounds; the fastest counts")
    args = p.parse_args(argv)
    images = sample_images(args.images, args.n)
    encoders = {path: ImageEncoder(path).eval() for path in args.backbones}
    batches = {}
    for path, enc in encoders.items():
        prepared = torch.stack([enc.preprocessing.transform()(img) for img in images])
        batches[path] = list(prepared.split(args.batch_size))
        encode_seconds(enc, batches[path][:1])  # warm-up, untimed
    best = dict.fromkeys(encoders, float("inf"))
    for _ in range(args.repeats):
        for path, enc in encoders.items():
            best[path] = min(best[path], encode_seconds(enc, batches[path]))
    names = {path: path.rpartition(".")[2].lower() for path in encoders}
    print(f"{args.n} images, batch {args.batch_size}, {torch.get_num_threads()} threads")
    for path, enc in encoders.items():
        size = enc.preprocessing.crop_size
        h, w = enc.grid_shape(size, size)
        params = sum(t.numel() for t in enc.backbone.parameters()) / 1e6
        ms = 1000 * best[path] / args.n
        print(
            f"{names[path]}: {params:.2f}M parameters, {size}x{size} input, {h}x{w} regions, "
            f"{ms:.1f} ms/image, {1000 / ms:.1f} images/s"
        )
    first, *others = encoders
    for path in others:
        print(f"{names[path]}_over_{names[first]}={best[path] / best[first]:.2f}")


if __name__ == "__main__":
    main()
