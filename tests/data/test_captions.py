import json
import logging
import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from s2s.data import CaptionData, CocoCaptions, Flickr8kCaptions, KarpathySplit, TsvCaptions
from s2s.data.captions import (
    CaptionDataset,
    CaptionExample,
    ImageCaptions,
    collate,
)
from s2s.data.images import Preprocessing, load_image, to_rgb
from s2s.io import DataError
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID, TokenizerConfig

CAPTIONS = {
    "red.png": ["A red square.", "a  red   box"],
    "green.png": ["a green square"],
    "blue.png": ["a blue square", "a blue box", "blue"],
}
COLORS = {"red.png": (255, 0, 0), "green.png": (0, 255, 0), "blue.png": (0, 0, 255)}
NORMALISED = {"a  red   box": "a red box"}  # readers normalise whitespace
PREP = Preprocessing(crop_size=16, resize_size=16, mean=(0.0,) * 3, std=(1.0,) * 3)


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for name, color in COLORS.items():
        Image.new("RGB", (20, 16), color).save(root / name)
    return root


def expected(images) -> list[ImageCaptions]:
    return [
        ImageCaptions(images / name, tuple(NORMALISED.get(c, c) for c in caps))
        for name, caps in CAPTIONS.items()
    ]


def write_coco(path, extra_annotations=()):
    ids = {name: 100 + i for i, name in enumerate(CAPTIONS)}
    anns = [
        {"image_id": ids[name], "id": k, "caption": c}
        for k, (name, c) in enumerate((n, c) for n, caps in CAPTIONS.items() for c in caps)
    ]
    data = {
        "images": [{"id": i, "file_name": name} for name, i in ids.items()],
        "annotations": [*anns, *extra_annotations],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_every_format_reads_the_same_pairs(tmp_path, images):
    coco = CocoCaptions(str(write_coco(tmp_path / "coco.json")), str(images))

    karpathy = tmp_path / "dataset_flickr8k.json"
    entries = [
        {"filename": name, "split": split, "sentences": [{"raw": c, "tokens": []} for c in caps]}
        for (name, caps), split in zip(CAPTIONS.items(), ["train", "restval", "train"], strict=True)
    ]
    entries.insert(1, {"filename": "other.png", "split": "test", "sentences": [{"raw": "x"}]})
    karpathy.write_text(json.dumps({"images": entries}), encoding="utf-8")

    token = tmp_path / "Flickr8k.token.txt"
    lines = [f"{name}#{k}\t{c}" for name, caps in CAPTIONS.items() for k, c in enumerate(caps)]
    token.write_text("\n".join(["other.png#0\tnot in this split", *lines]) + "\n")
    split_list = tmp_path / "Flickr_8k.trainImages.txt"
    split_list.write_text("".join(f"{name}\n" for name in CAPTIONS))

    tsv = tmp_path / "captions.tsv"
    rows = [f"{name}\t{c}" for name, caps in CAPTIONS.items() for c in caps]
    rows[1], rows[2] = rows[2], rows[1]  # an image's lines need not be adjacent
    tsv.write_text("\n".join(rows) + "\n")

    readers = [
        coco,
        KarpathySplit(str(karpathy), str(images)),
        Flickr8kCaptions(str(token), str(split_list), str(images)),
        TsvCaptions(str(tsv), str(images)),
    ]
    want = expected(images)
    for reader in readers:
        assert reader.read() == want, type(reader).__name__


def test_tsv_paths_default_to_the_tsv_folder(images):
    tsv = images / "list.tsv"
    tsv.write_text("red.png\tred\n")
    assert TsvCaptions(str(tsv)).read() == [ImageCaptions(images / "red.png", ("red",))]


def write_flickr_split(root):
    split_list = root / "Flickr_8k.trainImages.txt"
    split_list.write_text("".join(f"{name}\n" for name in CAPTIONS))
    return split_list


@pytest.mark.parametrize("folder", ["Flicker8k_Dataset", "Images"])
def test_flickr8k_kaggle_csv_and_default_image_folders(tmp_path, images, folder):
    images.rename(tmp_path / folder)
    captions = tmp_path / "captions.txt"
    rows = [f'{name},"{c}"' for name, caps in CAPTIONS.items() for c in caps]
    rows[0] = "red.png,A red, square."  # commas inside a caption, quoted or not
    rows[1] = 'red.png,"a  red   box, big"'
    captions.write_text("\n".join(["image,caption", "other.png,not in this split", *rows]) + "\n")
    got = Flickr8kCaptions(str(captions), str(write_flickr_split(tmp_path))).read()
    want = expected(tmp_path / folder)
    want[0] = ImageCaptions(tmp_path / folder / "red.png", ("A red, square.", "a red box, big"))
    assert got == want


def test_flickr8k_errors_name_what_is_missing(tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("image,caption\nred.png\n")
    with pytest.raises(DataError, match="no Flicker8k_Dataset/ or Images/ folder"):
        Flickr8kCaptions(str(captions), "split.txt")
    (tmp_path / "Images").mkdir()
    with pytest.raises(DataError, match=r"split.txt: no such file; .*Flickr8k_text.zip"):
        Flickr8kCaptions(str(captions), str(tmp_path / "split.txt")).read()
    split_list = write_flickr_split(tmp_path)
    with pytest.raises(DataError, match=r"captions.txt:2: expected 'image,caption'"):
        Flickr8kCaptions(str(captions), str(split_list)).read()


def test_flickr8k_orphan_key_is_a_logged_skip(tmp_path, images, caplog):
    token = tmp_path / "Flickr8k.token.txt"
    lines = [f"{name}#{k}\t{c}" for name, caps in CAPTIONS.items() for k, c in enumerate(caps)]
    orphan = ["2258277193_586949ec62.jpg.1#0\tghost", "2258277193_586949ec62.jpg.1#1\tghost"]
    token.write_text("\n".join([*lines[:2], *orphan, *lines[2:]]) + "\n")
    with caplog.at_level(logging.WARNING):
        got = Flickr8kCaptions(str(token), str(write_flickr_split(tmp_path)), str(images)).read()
    assert got == expected(images)
    assert (
        "skipped 2 captions whose key names no image file: 2258277193_586949ec62.jpg.1#0, "
        "2258277193_586949ec62.jpg.1#1" in caplog.text
    )


def test_unknown_images_and_images_without_captions_are_skipped(tmp_path, images, caplog):
    path = write_coco(tmp_path / "coco.json", [{"image_id": 999, "caption": "ghost"}])
    data = json.loads(path.read_text())
    data["images"].append({"id": 7, "file_name": "lonely.png"})
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        got = CocoCaptions(str(path), str(images)).read()
    assert got == expected(images)
    assert "skipped 1 captions of image ids without an image: annotations[6] (image_id 999)" in (
        caplog.text
    )
    assert "skipped 1 images without captions" in caplog.text and "lonely.png" in caplog.text


def coco_with(section: str, i: int, entry: Any) -> dict:
    """Two images, each with a caption; ``section[i]`` replaced by ``entry``."""
    data = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [{"image_id": 1, "caption": "a"}, {"image_id": 2, "caption": "b"}],
    }
    data[section][i] = entry
    return data


MALFORMED_COCO = [
    ("annotations", 1, {"image_id": 2}, "annotations[1]: missing key 'caption'"),
    ("annotations", 1, {"caption": "b"}, "annotations[1]: missing key 'image_id'"),
    (
        "annotations",
        1,
        {"image_id": [2], "caption": "b"},
        "annotations[1]: image_id [2] has the wrong type (list)",
    ),
    ("annotations", 1, "b", "annotations[1]: expected an object, found str"),
    ("images", 1, {"id": 2}, "images[1]: missing key 'file_name'"),
    ("images", 1, {"file_name": "b.png"}, "images[1]: missing key 'id'"),
    ("images", 1, {"id": 2, "file_name": 7}, "images[1]: file_name 7 has the wrong type (int)"),
    (
        "images",
        1,
        {"id": None, "file_name": "b.png"},
        "images[1]: id None has the wrong type (NoneType)",
    ),
]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"coco\.json: invalid JSON"),
        ('{"images": []}', r"coco\.json: not COCO captions JSON \(missing 'annotations'\)"),
        (
            '{"images": [], "annotations": {}}',
            r"coco\.json: annotations must be a list, found dict",
        ),
        (
            '{"images": [{"id": 1, "file_name": "a.png"}], '
            '"annotations": [{"image_id": 1, "caption": " "}]}',
            r"coco\.json: annotations\[0\]: empty or missing caption",
        ),
        *(
            (json.dumps(coco_with(section, i, entry)), rf"coco\.json: {re.escape(message)}$")
            for section, i, entry, message in MALFORMED_COCO
        ),
    ],
)
def test_bad_json_names_file_and_entry(tmp_path, content, message):
    path = tmp_path / "coco.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        CocoCaptions(str(path), str(tmp_path)).read()


def test_bad_tsv_names_file_and_line(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("a.png\tfine\n\nb.png no tab\n")
    with pytest.raises(DataError, match=r"c\.tsv:3: expected 'image<TAB>caption'"):
        TsvCaptions(str(path)).read()
    with pytest.raises(DataError, match=r"missing\.json: no such file"):
        KarpathySplit(str(tmp_path / "missing.json"), str(tmp_path)).read()


# --- image conversion


def test_conversions_to_rgb():
    gray = Image.new("L", (2, 1), 7)
    assert to_rgb(gray).getpixel((0, 0)) == (7, 7, 7)
    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))  # fully transparent: white background shows
    assert [to_rgb(rgba).getpixel((x, 0)) for x in range(2)] == [(10, 20, 30), (255, 255, 255)]
    assert to_rgb(Image.new("CMYK", (1, 1), (0, 255, 255, 0))).getpixel((0, 0)) == (255, 0, 0)
    sixteen = Image.fromarray(np.array([[65535, 32768, 255]], dtype=np.uint16))
    assert sixteen.mode.startswith("I;16")
    assert [to_rgb(sixteen).getpixel((x, 0))[0] for x in range(3)] == [255, 128, 0]
    palette = Image.new("P", (1, 1), 0)
    palette.info["transparency"] = 0
    assert to_rgb(palette).mode == "RGB"


def test_load_image_converts_saved_files(tmp_path):
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("LA", (4, 4), (50, 255)).save(tmp_path / "la.png")
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "deep.png").getpixel((0, 0)) == (156, 156, 156)
    assert load_image(tmp_path / "la.png").getpixel((0, 0)) == (50, 50, 50)
    assert load_image(tmp_path / "cmyk.jpg").mode == "RGB"


def broken_files(root):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(root / "whole.jpg", quality=90)
    data = (root / "whole.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "text.jpg").write_text("not an image")
    return [root / "truncated.jpg", root / "text.jpg", root / "absent.jpg"]


def test_undecodable_images_are_errors_naming_the_file(tmp_path):
    for path in broken_files(tmp_path):
        with pytest.raises(DataError, match=f"{path.name}: cannot read image"):
            load_image(path)


def test_dataset_replaces_undecodable_images_and_counts_them(tmp_path, caplog):
    paths = broken_files(tmp_path)
    examples = [CaptionExample(i, p, [5], ("x",)) for i, p in enumerate(paths)]
    dataset = CaptionDataset(examples, PREP.transform())
    with caplog.at_level(logging.WARNING):
        items = [dataset[i] for i in range(len(paths))]
    assert all(torch.equal(image, torch.zeros(3, 16, 16)) for _, image in items)
    assert dataset.unreadable == 3
    assert "truncated.jpg: cannot read image" in caplog.text
    assert "3 unreadable so far" in caplog.text


# --- the datamodule


def tsv_data(tmp_path, images, **kwargs) -> CaptionData:
    tsv = tmp_path / "c.tsv"
    tsv.write_text("".join(f"{n}\t{c}\n" for n, caps in CAPTIONS.items() for c in caps))
    source = TsvCaptions(str(tsv), str(images))
    tokenizer = TokenizerConfig(vocab_size=300, cache_dir=str(tmp_path / "cache"))
    options = dict(tokenizer=tokenizer, preprocessing=PREP, batch_size=2)
    return CaptionData(source, source, source, **{**options, **kwargs})


def test_train_pairs_and_eval_images(tmp_path, images):
    dm = tsv_data(tmp_path, images, eval_batch_size=2)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert len(train) == 6  # every (image, caption) pair
    assert [ex.refs for ex in val.examples] == [
        ("a red square.", "a red box"),
        ("a green square",),
        ("a blue square", "a blue box", "blue"),
    ]  # one example per image, lowercased references
    batches = list(dm.val_dataloader())
    assert [b.indices.tolist() for b in batches] == [[0, 1], [2]]
    first = batches[0]
    assert first.images.shape == (2, 3, 16, 16)
    assert first.images[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]  # red, scaled to [0, 1]
    assert first.refs[1] == ["a green square"]
    tok = dm.tgt_tokenizer
    assert first.tgt[1].tolist()[: len(tok.encode("a green square")) + 2] == [
        BOS_ID,
        *tok.encode("a green square"),
        EOS_ID,
    ]


def test_train_on_images_gives_each_image_once_with_its_first_fitting_caption(tmp_path, images):
    """Self-critical training visits each image once an epoch; a caption longer than max_len is
    passed over for the image's next one, and an image with none that fits is dropped."""
    dm = tsv_data(tmp_path, images, train_on="images")
    dm.setup("fit")
    examples = dm.datasets["train"].examples
    assert [(ex.index, ex.image.name) for ex in examples] == [
        (0, "red.png"),
        (1, "green.png"),
        (2, "blue.png"),
    ]
    tok = dm.tgt_tokenizer
    assert [tok.decode(ex.tgt) for ex in examples] == [ex.refs[0] for ex in examples]
    assert examples[2].refs == ("a blue square", "a blue box", "blue")

    lengths = {c: len(tok.encode(c)) for ex in examples for c in ex.refs}
    assert lengths["blue"] < min(lengths["a blue square"], lengths["a blue box"])
    short = tsv_data(tmp_path, images, train_on="images", max_len=lengths["blue"])
    short.setup("fit")
    fitting = [(ex.image.name, tok.decode(ex.tgt)) for ex in short.datasets["train"].examples]
    assert fitting == [("blue.png", "blue")]


def test_collate_pads_targets():
    items = [
        (CaptionExample(3, None, [7, 8], ("a",)), torch.zeros(3, 2, 2)),
        (CaptionExample(1, None, [9], ("b", "c")), torch.ones(3, 2, 2)),
    ]
    batch = collate(items)
    assert batch.tgt.tolist() == [[BOS_ID, 7, 8, EOS_ID], [BOS_ID, 9, EOS_ID, PAD_ID]]
    assert batch.indices.tolist() == [3, 1]
    assert batch.refs == [["a"], ["b", "c"]]


def test_long_captions_and_missing_images_are_dropped(tmp_path, images, caplog):
    (images / "green.png").unlink()
    dm = tsv_data(tmp_path, images, max_len=4, lowercase=False)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert "skipped 1 missing image files" in caplog.text and "green.png" in caplog.text
    kept = [dm.tgt_tokenizer.decode(ex.tgt) for ex in dm.datasets["train"].examples]
    assert all(len(dm.tgt_tokenizer.encode(c)) <= 4 for c in kept)
    assert "A red square." in [ex.refs[0] for ex in dm.datasets["val"].examples]  # cased
    assert "longer than 4 subwords dropped" in caplog.text


def fake_trainer(world_size, rank):
    connector = SimpleNamespace(use_distributed_sampler=False)
    return SimpleNamespace(
        world_size=world_size, global_rank=rank, _accelerator_connector=connector
    )


@pytest.mark.parametrize("split", ["train", "val"])
def test_ddp_ranks_share_every_example_once(tmp_path, images, split):
    dm = tsv_data(tmp_path, images, batch_size=1, eval_batch_size=2)
    dm.setup("fit")
    batches = []
    for rank in range(2):
        dm.trainer = fake_trainer(2, rank)
        loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
        batches.append([batch.indices.tolist() for batch in loader])
    assert len(batches[0]) == len(batches[1])  # ranks step in lockstep
    seen = [i for rank in batches for batch in rank for i in batch]
    assert sorted(seen) == list(range(len(dm.datasets[split])))  # each example exactly once


def test_setup_needs_the_models_preprocessing(tmp_path, images):
    dm = tsv_data(tmp_path, images, preprocessing=None)
    with pytest.raises(ValueError, match="CaptionData needs the model's image preprocessing"):
        dm.setup("fit")


def test_missing_test_split_is_a_clear_error(tmp_path, images):
    dm = tsv_data(tmp_path, images)
    dm.sources["test"] = None
    with pytest.raises(DataError, match=r"no test split configured \(data\.test\)"):
        dm.setup("test")


def test_a_failed_annotation_read_leaves_no_temporary_file(tmp_path, images):
    dm = tsv_data(tmp_path, images)
    dm.sources["train"].file.write_text("a.png no tab\n")
    with pytest.raises(DataError, match=r"c\.tsv:1: expected 'image<TAB>caption', found no tab"):
        dm.tgt_tokenizer  # noqa: B018 (reads the annotations, then trains)
    assert list((tmp_path / "cache").glob("*")) == []
