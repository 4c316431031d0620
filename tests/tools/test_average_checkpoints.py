import pytest
import torch
from tiny import load_tool

from s2s.checkpoint import CLASS_KEY, load_model, read_checkpoint

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
    with pytest.raises(SystemExit) as exit_info:
        tool.main([*map(str, paths), "--output", str(tmp_path / "avg.ckpt")])
    name, value = list(base["state_dict"].items())[-1]
    assert exit_info.value.code == (  # other.ckpt comes first in name order
        f"average_checkpoints: {paths[0]} and {paths[1]}: not the same model "
        f"(parameter {name}: {tuple(value.shape)} vs None)"
    )
    assert not (tmp_path / "avg.ckpt").exists()


def test_another_model_class_at_the_same_step_is_refused(base, tmp_path):
    translator = variant(base, tmp_path, 30, name="a.ckpt")
    torch.save({**base, "global_step": 30, CLASS_KEY: "s2s.models.Captioner"}, tmp_path / "b.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(translator), str(tmp_path / "b.ckpt"), "--output", str(tmp_path / "o")])
    assert exit_info.value.code == (
        f"average_checkpoints: {tmp_path / 'b.ckpt'} and {translator}: not the same model "
        f"(s2s.models.Captioner vs {base[CLASS_KEY]})"
    )


def test_a_checkpoint_without_a_step_is_named(base, tmp_path):
    stepless = {k: v for k, v in base.items() if k != "global_step"}
    torch.save(stepless, tmp_path / "b.ckpt")
    paths = [variant(base, tmp_path, 10, name="a.ckpt"), tmp_path / "b.ckpt"]
    with pytest.raises(SystemExit) as exit_info:
        tool.main([*map(str, paths), "--output", str(tmp_path / "avg.ckpt")])
    assert exit_info.value.code == (
        f"average_checkpoints: {paths[1]}: no 'global_step' entry, so no training step to order by"
    )
