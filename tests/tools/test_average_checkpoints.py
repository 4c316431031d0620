import pytest
import torch
from tiny import load_tool

from s2s.checkpoint import load_model, read_checkpoint

tool = load_tool("average_checkpoints")


@pytest.fixture(scope="module")
def base(copy_run):
    return read_checkpoint(copy_run / "run" / "checkpoints" / "last.ckpt")


def variant(base, tmp_path, step, shift=0.0, name=None):
    """A copy of ``base`` at ``step`` whose floating-point weights are moved by ``shift``."""
    ckpt = {**base, "global_step": step}
    ckpt["state_dict"] = {
        k: v + shift if v.is_floating_point() else v for k, v in base["state_dict"].items()
    }
    path = tmp_path / (name or f"step={step}.ckpt")
    torch.save(ckpt, path)
    return path


def test_average_of_identical_checkpoints_is_the_checkpoint(base, tmp_path, capsys):
    paths = [variant(base, tmp_path, step) for step in (10, 20, 30)]
    out = tmp_path / "avg.ckpt"
    tool.main([*map(str, paths), "--output", str(out)])
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    averaged = read_checkpoint(out)
    assert averaged["state_dict"].keys() == base["state_dict"].keys()
    for name, value in base["state_dict"].items():
        assert torch.equal(averaged["state_dict"][name], value), name
    assert "optimizer_states" in base and "optimizer_states" not in averaged
    model = load_model(out)
    assert model.tokenizers["tgt"].proto == base["tokenizers"]["tgt"]


def test_last_n_by_step_and_the_mean(base, tmp_path):
    paths = [
        variant(base, tmp_path, 10, shift=100.0),  # too old for --last 2
        variant(base, tmp_path, 30, shift=3.0),
        variant(base, tmp_path, 20, shift=1.0),
        variant(base, tmp_path, 30, shift=3.0, name="last.ckpt"),  # a copy of step 30: once
    ]
    assert tool.latest(paths, 2) == [paths[2], paths[1]]
    averaged = tool.average(tool.latest(paths, 2))
    assert averaged["global_step"] == 30
    for name, value in base["state_dict"].items():
        expected = value + 2.0 if value.is_floating_point() else value
        assert torch.allclose(averaged["state_dict"][name], expected, atol=1e-5), name


def test_different_models_are_refused(base, tmp_path):
    other = {**base, "global_step": 20, "state_dict": dict(base["state_dict"])}
    other["state_dict"].popitem()
    torch.save(other, tmp_path / "other.ckpt")
    paths = [variant(base, tmp_path, 10), tmp_path / "other.ckpt"]
    with pytest.raises(SystemExit, match=r"other\.ckpt: its parameters differ"):
        tool.main([*map(str, paths), "--output", str(tmp_path / "avg.ckpt")])
    assert not (tmp_path / "avg.ckpt").exists()
