"""Caption images with a trained s2s captioner checkpoint.

Prints ``IMAGE<TAB>CAPTION`` for every image (``--n-best N``: N lines per image, best first).
Arguments are image files or folders (their images, sorted by name). An image that cannot be read is
reported on stderr and skipped, and the exit status is then 1. ``--json FILE`` also writes the best
caption of each image in the COCO results format (``s2s test`` writes ``test_results.json``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from jsonargparse import Namespace
from PIL import Image

from s2s.data.captions import coco_results, image_batch
from s2s.data.images import load_image
from s2s.decoding import Hypothesis, beam_search
from s2s.io import DataError
from s2s.models.captioner import Captioner
from s2s.scripts import (
    add_checkpoints_argument,
    add_device_arguments,
    load_ensemble_of_type,
    members,
    script_parser,
    search_config,
)
from s2s.tokenizer import EOS_ID
from s2s.visualize import save_attention_overlay

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def parse_args(argv: list[str] | None) -> Namespace:
    p = script_parser("s2s-caption", __doc__)
    p.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    add_checkpoints_argument(p, "captioner")
    p.add_argument("--beam", type=int, help="beam size (default: the recipe's)")
    p.add_argument("--n-best", type=int, default=1, help="captions printed per image")
    p.add_argument("--max-len", type=int, help="caption length limit in subwords")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch")
    p.add_argument(
        "--json",
        type=Path,
        help='also write the best captions to this file as COCO results: [{"image_id", "caption"}]',
    )
    p.add_argument(
        "--attention-png",
        type=Path,
        help="folder for one picture per image: the image, then each word's attention over it",
    )
    add_device_arguments(p)
    return p.parse_args(argv)


def image_files(paths: list[Path]) -> list[Path]:
    """The files given, folders replaced by their image files sorted by name."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def readable_images(paths: list[Path]) -> list[tuple[Path, Image.Image]]:
    """The images of ``paths`` that can be decoded; the others are reported on stderr."""
    images = []
    for path in paths:
        try:
            images.append((path, load_image(path)))
        except DataError as e:
            print(f"s2s-caption: skipped {e}", file=sys.stderr)
    return images


def check_attention(models: list[Captioner], args: Namespace) -> None:
    """For ``--attention-png``, every model attends over the same grid of regions; else one line
    naming the checkpoint."""
    first, size = models[0], models[0].preprocessing.crop_size
    for path, model in zip(args.ckpt, models, strict=True):
        if model.decoder.attention is None:
            sys.exit(f"s2s-caption: {path} has no attention to draw (attention: none)")
        if model.encoder.grid_shape(size, size) != first.encoder.grid_shape(size, size):
            sys.exit(f"s2s-caption: {path} attends over another grid than {args.ckpt[0]}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    decoder, model = load_ensemble_of_type(args, Captioner, "s2s-caption")
    if args.attention_png:
        check_attention(members(decoder), args)
    search = search_config(model.search, args, "s2s-caption")
    tok, prep = model.tokenizers["tgt"], model.preprocessing
    transform = prep.transform()

    grid = model.encoder.grid_shape(prep.crop_size, prep.crop_size) if args.attention_png else None
    if args.attention_png:
        args.attention_png.mkdir(parents=True, exist_ok=True)
    failed, done, best = 0, 0, []
    files = image_files(args.images)
    if args.json:  # a bad path fails before any decoding
        check_writable(args.json)
    for start in range(0, len(files), args.batch_size):
        # Images are decoded batch by batch: memory is bounded by --batch-size, not the folder.
        paths = files[start : start + args.batch_size]
        chunk = readable_images(paths)
        failed += len(paths) - len(chunk)
        if not chunk:
            continue
        batch = image_batch([img for _, img in chunk], transform)
        batch.images = batch.images.to(args.device, model.dtype)
        for i, ((path, image), nbest) in enumerate(
            zip(chunk, beam_search(decoder, batch, search), strict=True), start=done
        ):
            for hyp in nbest:
                print(f"{path}\t{tok.decode(hyp.tokens)}")
            best.append((path, tok.decode(nbest[0].tokens)))
            if grid is not None:
                out = args.attention_png / f"{i + 1:04d}_{path.stem}.png"
                draw_attention(model, prep.view(image), nbest[0], grid, out)
        done += len(chunk)
    if args.json:
        results = coco_results([path for path, _ in best], [text for _, text in best])
        args.json.write_text(json.dumps(results, ensure_ascii=False) + "\n", encoding="utf-8")
    if failed:
        sys.exit(1)


def check_writable(path: Path) -> None:
    """Exits with one line if ``path`` cannot be written."""
    try:
        path.open("a").close()
    except OSError as e:
        sys.exit(f"s2s-caption: {path}: cannot write ({e.strerror})")


def draw_attention(
    model: Captioner, view: Image.Image, hyp: Hypothesis, grid: tuple[int, int], out: Path
) -> None:
    """``out``: the image, then each word's attention over its grid of regions."""
    tok = model.tokenizers["tgt"]
    words = [p.lstrip("▁") for p in tok.pieces([*hyp.tokens, EOS_ID])]
    save_attention_overlay(view, hyp.attention.view(len(words), *grid), words, out)


if __name__ == "__main__":
    main()
