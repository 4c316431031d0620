"""Derive two small labelled sets from Multi30k captions, for the classifier and tagger recipes.

- ``langid``: language identification of short snippets (``label<TAB>text``): 1-4 consecutive
  words of a caption in English, German, French or Czech, with imbalanced languages (en 60%,
  de 25%, fr 10%, cs 5%), so accuracy alone hides how the rare languages fare.
- ``truecase_de``: German truecasing (``tags<TAB>tokens``): the lowercased words of a German
  caption, each tagged with its original case: ``lower``, ``title``, ``upper`` or ``mixed``.
  German capitalises nouns and sentence starts, so a tagger must tell nouns from the context
  ("das essen" / "sie essen").

Splits: train (the first ``--train-lines`` lines of Multi30k train), val (val) and test
(test_2016_flickr). The output is the same for the same arguments.

    python tools/make_multi30k_labelled.py --multi30k /path/to/multi30k --out data
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path

LANGUAGES = {"en": 0.60, "de": 0.25, "fr": 0.10, "cs": 0.05}
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def read(multi30k: Path, split: str, lang: str) -> list[str]:
    with gzip.open(multi30k / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same bytes for the same lines.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write("".join(line + "\n" for line in lines).encode("utf-8"))


def langid(multi30k: Path, split: str, limit: int | None, seed: int) -> list[str]:
    rng = random.Random(f"langid:{split}:{seed}")
    captions = {lang: read(multi30k, split, lang)[:limit] for lang in LANGUAGES}
    lines = []
    for i in range(len(captions["en"])):
        lang = rng.choices(list(LANGUAGES), weights=list(LANGUAGES.values()))[0]
        words = captions[lang][i].split()
        n = min(rng.randint(1, 4), len(words))
        start = rng.randint(0, len(words) - n)
        lines.append(f"{lang}\t{' '.join(words[start : start + n])}")
    return lines


def case_of(word: str) -> str:
    if word == word.lower():
        return "lower"
    if word == word.upper():
        return "upper" if sum(c.isalpha() for c in word) > 1 else "title"
    return "title" if word == word[0] + word[1:].lower() else "mixed"


def truecase(multi30k: Path, split: str, limit: int | None) -> list[str]:
    lines = []
    for caption in read(multi30k, split, "de")[:limit]:
        words = caption.split()
        if words:
            tags = " ".join(case_of(w) for w in words)
            lines.append(f"{tags}\t{' '.join(w.lower() for w in words)}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--multi30k", type=Path, required=True, help="folder of {split}.{lang}.gz")
    p.add_argument("--out", type=Path, default=Path("data"))
    p.add_argument("--train-lines", type=int, default=8000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for split, source in SPLITS.items():
        limit = args.train_lines if split == "train" else None
        write(
            args.out / "multi30k_langid" / f"{split}.tsv.gz",
            langid(args.multi30k, source, limit, args.seed),
        )
        write(
            args.out / "multi30k_truecase_de" / f"{split}.tsv.gz",
            truecase(args.multi30k, source, limit),
        )


if __name__ == "__main__":
    main()
