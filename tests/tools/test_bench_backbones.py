import re

import pytest
from PIL import Image
from tiny import load_tool

tool = load_tool("bench_backbones")
CONVNET = "s2s.nn.image_encoder.ConvNet"


def test_bench_backbones_reports_each_backbone_and_the_ratio(tmp_path, capsys):
    """Two backbones over a folder of images (non-images ignored): one line each with its input
    size and region grid, then the second's time over the first's."""
    for i in range(3):
        Image.new("RGB", (40 + i, 30), (i, 2 * i, 3 * i)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    backbones = ["--backbones", CONVNET, "mobilenet_v3_small"]
    tool.main([*backbones, "--images", str(tmp_path), "--n", "3", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"3 images, batch 32, {tool.torch.get_num_threads()} threads"
    assert re.match(
        r"convnet: [\d.]+M parameters, 224x224 input, 28x28 regions, [\d.]+ ms", lines[1]
    )
    assert re.match(r"mobilenet_v3_small: [\d.]+M parameters, 224x224 input, 7x7 regions", lines[2])
    assert re.fullmatch(r"mobilenet_v3_small_over_convnet=[\d.]+", lines[3])


def test_too_few_images_is_one_line(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    with pytest.raises(SystemExit, match=r"1 images, fewer than --n 2$"):
        tool.main(["--backbones", CONVNET, "--images", str(tmp_path), "--n", "2"])
