"""Write a synthetic captioning set: scenes of 1-3 coloured shapes and one exact caption each.

Shapes (circle, square, triangle in red, green, blue or yellow) sit in distinct cells of a 3 x 3
grid, jittered within their cell. The caption names them in reading order (top row first, left to
right) and joins neighbours with "left of" (same row) or "above" (a lower row follows), e.g.
"a red circle left of a blue square above a green triangle". Getting the order right needs to know
where each shape is, which a decoder that attends over image regions can look up and one that sees
only the mean image vector cannot: attention measurably matters.

Output: ``{out}/{split}/{i:05d}.png`` and ``{out}/{split}.tsv`` (``split/00000.png<TAB>caption``,
paths relative to ``out``), the same for the same arguments (every split has its own seeded
generator).

    python tools/make_shapes.py --out data/shapes
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
}
KINDS = ("circle", "square", "triangle")
GRID = 3
SUPERSAMPLE = 4  # drawn larger, then downscaled: smooth edges


def make_scene(rng: random.Random, size: int) -> tuple[Image.Image, str]:
    """One scene of ``size`` x ``size`` pixels and its caption."""
    big = size * SUPERSAMPLE
    cell = big / GRID
    image = Image.new("RGB", (big, big), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    cells = sorted(rng.sample(range(GRID * GRID), rng.choice((1, 2, 2, 3, 3, 3))))
    words = []
    for k, c in enumerate(cells):
        row, col = divmod(c, GRID)
        color, kind = rng.choice(sorted(COLORS)), rng.choice(KINDS)
        r = cell * rng.uniform(0.26, 0.38)
        cx = (col + 0.5) * cell + rng.uniform(-1, 1) * (cell / 2 - r)
        cy = (row + 0.5) * cell + rng.uniform(-1, 1) * (cell / 2 - r)
        _draw(draw, kind, cx, cy, r, COLORS[color])
        if k:
            words.append("left of" if row == cells[k - 1] // GRID else "above")
        words.append(f"a {color} {kind}")
    return image.resize((size, size), Image.Resampling.LANCZOS), " ".join(words)


def _draw(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, fill) -> None:
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        s = r * 0.9
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=fill)


def write_split(out: Path, split: str, n: int, *, size: int, seed: int) -> Path:
    """``n`` scenes under ``out/split`` and their captions in ``out/split.tsv``."""
    rng = random.Random(f"{seed}:{split}")
    (out / split).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        image, caption = make_scene(rng, size)
        name = f"{split}/{i:05d}.png"
        image.save(out / name, optimize=True)
        lines.append(f"{name}\t{caption}\n")
    tsv = out / f"{split}.tsv"
    tsv.write_text("".join(lines), encoding="utf-8")
    return tsv


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/shapes"))
    p.add_argument("--train", type=int, default=6000, help="training scenes")
    p.add_argument("--val", type=int, default=300, help="validation scenes")
    p.add_argument("--test", type=int, default=500, help="held-out test scenes")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for split in ("train", "val", "test"):
        tsv = write_split(args.out, split, getattr(args, split), size=args.size, seed=args.seed)
        print(f"{tsv}: {getattr(args, split)} scenes")


if __name__ == "__main__":
    main()
