"""A training run killed with SIGKILL mid-epoch resumes with ``--ckpt_path last`` and ends exactly
where an uninterrupted run ends: same optimizer steps, same weights bit for bit, with dropout (the
random states travel in checkpoints), and the same count of tokens trained on."""

import subprocess
import sys
import time

import pytest
import torch
from tiny import (
    checkpointing,
    config,
    run_cli,
    subprocess_env,
    write_config,
    write_corpus,
)

from s2s.checkpoint import read_checkpoint

# 36 pairs in batches of 4. Checkpoints every 5 steps: 5 and 9 are coprime, so only the final one
# (step 45) falls on the end of an epoch.
EPOCHS, STEPS_PER_EPOCH, EVERY = 5, 9, 5
KILL_AT = 15  # the first checkpoint of the second epoch: resuming must restore the epoch too


def fit_config(work, data_dir, name):
    cfg = config(work / name, data_dir, max_epochs=EPOCHS, limit_val_batches=0)
    cfg["data"]["init_args"]["tokenizer"]["cache_dir"] = str(work / "tokenizers")
    for part in ("encoder", "decoder"):  # dropout draws random numbers at every step
        cfg["model"]["init_args"][part]["dropout"] = 0.3
    cfg["trainer"]["callbacks"] = [
        checkpointing(
            work / name / "ckpt",
            every_n_train_steps=EVERY,
            save_top_k=-1,
            filename="{step}",
            save_last=True,
        )
    ]
    (work / name).mkdir()
    return write_config(work / name / "fit.yaml", cfg)


def kill_when(proc, path, timeout=120):
    """SIGKILL ``proc`` as soon as ``path`` exists; fails if the run ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before writing {path}:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.01)
    proc.kill()
    assert proc.wait() == -9


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    data_dir = write_corpus(tmp_path / "data")
    run_cli("fit", "--config", str(fit_config(tmp_path, data_dir, "uninterrupted")))
    expected = torch.load(tmp_path / "uninterrupted/ckpt/last.ckpt", weights_only=False)
    assert expected["global_step"] == EPOCHS * STEPS_PER_EPOCH

    cfg = fit_config(tmp_path, data_dir, "killed")
    ckpt_dir = tmp_path / "killed/ckpt"
    with subprocess.Popen(
        [sys.executable, "-m", "s2s.cli", "fit", "--config", str(cfg)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        kill_when(proc, ckpt_dir / f"step={KILL_AT}.ckpt")
    # last.ckpt is the latest save that completed (atomic writes): step 15, or 10 if the kill came
    # between the two files; either way in the middle of the second epoch.
    killed = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert killed["global_step"] in (KILL_AT - EVERY, KILL_AT)
    assert killed["epoch"] == 1
    loader_state = killed["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 1, "batches": killed["global_step"] - STEPS_PER_EPOCH}]

    run_cli("fit", "--config", str(cfg), "--ckpt_path", "last")
    resumed = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == expected["global_step"]
    assert 0 < killed["tokens_trained"] < resumed["tokens_trained"] == expected["tokens_trained"]
    assert resumed["state_dict"].keys() == expected["state_dict"].keys()
    for name, weight in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], weight), name


def test_a_second_fit_is_refused_and_leaves_the_first_run_whole_unless_it_resumes(tmp_path):
    cfg = config(tmp_path, write_corpus(tmp_path / "data"), limit_val_batches=0)
    cfg["trainer"]["callbacks"] = [checkpointing(tmp_path / "ckpt", save_last=True)]
    path = write_config(tmp_path / "fit.yaml", cfg)
    run_cli("fit", "--config", str(path))
    first = {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()}
    assert read_checkpoint(tmp_path / "ckpt/last.ckpt")["global_step"] == STEPS_PER_EPOCH

    fresh_cache = tmp_path / "fresh_tokenizers"
    message = rf"{tmp_path / 'ckpt'} holds the checkpoints of an earlier run; resume it with "
    with pytest.raises(SystemExit, match=message + "--ckpt_path last"):
        run_cli(
            "fit", "--config", str(path), "--data.init_args.tokenizer.cache_dir", str(fresh_cache)
        )
    assert not fresh_cache.exists()  # refused before training tokenizers
    assert {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()} == first

    run_cli("fit", "--config", str(path), "--ckpt_path", "last", "--trainer.max_epochs", "2")
    assert read_checkpoint(tmp_path / "ckpt/last.ckpt")["global_step"] == 2 * STEPS_PER_EPOCH
