"""``s2s-caption`` on a checkpoint that ``s2s fit`` wrote from a recipe."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny import CAPTIONS, RGB, SCENES

from s2s.data.captions import image_id
from s2s.scripts import caption as caption_script
from s2s.scripts.caption import main as caption
from s2s.scripts.translate import main as translate


def captions_of(out: str) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in out.splitlines()]


def test_captions_images_and_folders(caption_run, capsys):
    images, ckpt = caption_run
    caption(["--ckpt", str(ckpt), str(images / "gr.png"), str(images / "rg.png")])
    assert captions_of(capsys.readouterr().out) == [
        (str(images / "gr.png"), CAPTIONS["gr.png"]),
        (str(images / "rg.png"), CAPTIONS["rg.png"]),
    ]
    caption(["--ckpt", str(ckpt), "--beam", "1", str(images)])  # a folder: its images by name
    assert captions_of(capsys.readouterr().out) == [
        (str(images / name), CAPTIONS[name]) for name in sorted(SCENES)
    ]


def test_n_best(caption_run, capsys):
    images, ckpt = caption_run
    caption(["--ckpt", str(ckpt), "--n-best", "2", str(images / "by.png"), str(images / "rg.png")])
    lines = captions_of(capsys.readouterr().out)
    assert [path for path, _ in lines] == [str(images / "by.png")] * 2 + [
        str(images / "rg.png")
    ] * 2
    assert lines[0][1] == CAPTIONS["by.png"] and lines[2][1] == CAPTIONS["rg.png"]
    assert lines[0] != lines[1]


def test_n_best_beyond_the_beam_is_one_line(caption_run):
    images, ckpt = caption_run
    with pytest.raises(SystemExit, match=r"^s2s-caption: --n-best 3 exceeds --beam 2$"):
        caption(["--ckpt", str(ckpt), "--beam", "2", "--n-best", "3", str(images / "by.png")])


def test_attention_pictures(caption_run, tmp_path, capsys):
    images, ckpt = caption_run
    out = tmp_path / "attention"
    caption(["--ckpt", str(ckpt), "--attention-png", str(out), str(images / "rg.png"), str(images)])
    assert sorted(p.name for p in out.iterdir()) == [
        "0001_rg.png",
        "0002_by.png",
        "0003_gr.png",
        "0004_rg.png",
    ]
    picture = Image.open(out / "0001_rg.png")
    assert picture.width > 400  # the image and one panel per word ("red left of green </s>")


def test_bf16_captions_alike_and_draws_attention(caption_run, tmp_path, capsys):
    images, ckpt = caption_run
    out = tmp_path / "attention"
    caption(["--ckpt", str(ckpt), "--bf16", "--attention-png", str(out), str(images)])
    assert captions_of(capsys.readouterr().out) == [
        (str(images / name), CAPTIONS[name]) for name in sorted(SCENES)
    ]
    assert len(list(out.iterdir())) == len(SCENES)


def test_unreadable_images_are_skipped_with_exit_status_1(caption_run, tmp_path, capsys):
    images, ckpt = caption_run
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(SystemExit) as exit_info:
        caption(["--ckpt", str(ckpt), str(tmp_path / "broken.png"), str(images / "rg.png")])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captions_of(captured.out) == [(str(images / "rg.png"), CAPTIONS["rg.png"])]
    assert "broken.png: cannot read image" in captured.err


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.ckpt").write_text("nope")
    with pytest.raises(SystemExit, match="not a readable checkpoint"):
        caption(["--ckpt", str(tmp_path / "x.ckpt"), str(tmp_path)])


def test_translate_refuses_a_captioner(caption_run, tmp_path):
    _, ckpt = caption_run
    with pytest.raises(SystemExit) as exit_info:
        translate(["--ckpt", str(ckpt), "--input", str(tmp_path / "unread.txt")])
    assert exit_info.value.code == f"s2s-translate: {ckpt} holds a Captioner, not a Seq2Seq"


def test_a_translator_checkpoint_is_refused(copy_run, tmp_path):
    ckpt = copy_run / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        caption(["--ckpt", str(ckpt), str(tmp_path)])
    assert exit_info.value.code == f"s2s-caption: {ckpt} holds a Seq2Seq, not a Captioner"


def test_images_are_decoded_batch_by_batch(caption_run, tmp_path, capsys, monkeypatch):
    """A folder of many images: at most --batch-size of them are decoded before being captioned."""
    _, ckpt = caption_run
    for n in range(11):
        Image.new("RGB", (8, 8), RGB["red" if n % 2 else "green"]).save(tmp_path / f"{n:02d}.png")
    decoded, loaded_per_batch = [], []
    load_image, beam_search = caption_script.load_image, caption_script.beam_search

    def counting_load_image(path):
        decoded.append(path)
        return load_image(path)

    def counting_beam_search(model, batch, search):
        loaded_per_batch.append(len(decoded))
        return beam_search(model, batch, search)

    monkeypatch.setattr(caption_script, "load_image", counting_load_image)
    monkeypatch.setattr(caption_script, "beam_search", counting_beam_search)
    caption(["--ckpt", str(ckpt), "--batch-size", "4", str(tmp_path)])
    assert loaded_per_batch == [4, 8, 11]
    assert len(captions_of(capsys.readouterr().out)) == 11


def test_an_ensemble_of_two_copies_captions_as_the_model(caption_run, tmp_path, capsys):
    images, ckpt = caption_run
    caption(["--ckpt", str(ckpt), "--n-best", "2", str(images)])
    alone = capsys.readouterr().out
    out = tmp_path / "attention"
    caption(
        [
            "--ckpt",
            str(ckpt),
            "--ckpt",
            str(ckpt),
            "--n-best",
            "2",
            "--attention-png",
            str(out),
            str(images),
        ]
    )
    assert capsys.readouterr().out == alone
    assert len(list(out.glob("*.png"))) == len(SCENES)


def test_an_ensemble_must_read_images_alike(caption_run, tmp_path):
    images, ckpt = caption_run
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["image_size"] = 48
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    message = f"^s2s-caption: {other} prepares images unlike {ckpt}: cannot ensemble$"
    with pytest.raises(SystemExit, match=message):
        caption(["--ckpt", str(ckpt), "--ckpt", str(other), str(images)])


def test_json_writes_coco_results_of_the_best_captions(caption_run, tmp_path, capsys):
    images, ckpt = caption_run
    out = tmp_path / "results.json"
    caption(["--ckpt", str(ckpt), "--n-best", "2", "--json", str(out), str(images)])
    best = captions_of(capsys.readouterr().out)[::2]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results == [{"image_id": Path(p).stem, "caption": c} for p, c in best]
    assert [r["caption"] for r in results] == [CAPTIONS[n] for n in sorted(SCENES)]


def test_json_to_an_unwritable_path_fails_before_decoding(caption_run, tmp_path):
    images, ckpt = caption_run
    bad = tmp_path / "missing" / "results.json"
    with pytest.raises(SystemExit, match=r"^s2s-caption: .*results.json: cannot write"):
        caption(["--ckpt", str(ckpt), "--json", str(bad), str(images)])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("COCO_val2014_000000391895.jpg", 391895),
        ("000000391895.jpg", 391895),
        ("1000268201_693b08cb0e.jpg", "1000268201_693b08cb0e"),
        ("rg.png", "rg"),
    ],
)
def test_image_ids_are_cocos_numbers_or_file_stems(name, expected):
    assert image_id(Path(name)) == expected
