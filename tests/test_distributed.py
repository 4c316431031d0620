"""CPU DDP (``accelerator=cpu, devices=2, strategy=ddp``) through the real ``s2s`` command: each
rank trains on a disjoint share of every epoch, and validation/test score the whole split exactly
once, with the same BLEU as a single process on the same checkpoint."""

import csv
import json

import pytest
from tiny import (
    RecordBatches,
    checkpointing,
    config,
    quiet_trainer,
    run_cli_subprocess,
    translation_data,
    write_config,
    write_corpus,
)

from s2s.checkpoint import load_model

EPOCHS, N_TRAIN, N_EVAL = 3, 36, 12


def ddp_config(work, data_dir, **trainer):
    logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(work), "name": "logs", "version": 0},
    }
    return config(work, data_dir, strategy="ddp", devices=2, logger=logger, **trainer)


def logged(work, name):
    """The values of metric ``name`` in the CSV log of ``work``, in order."""
    with open(work / "logs/version_0/metrics.csv", encoding="utf-8") as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


def single_process(cfg, work):
    """A one-device trainer and the data module of ``cfg``."""
    trainer = quiet_trainer(default_root_dir=str(work))
    return trainer, translation_data(cfg["data"]["init_args"])


@pytest.fixture(scope="module")
def ddp_fit(tmp_path_factory):
    """A 2-rank ``s2s fit`` of 3 epochs that records every batch of each rank."""
    work = tmp_path_factory.mktemp("ddp")
    cfg = ddp_config(work, write_corpus(work / "data"), max_epochs=EPOCHS)
    cfg["trainer"]["callbacks"] = [
        checkpointing(work / "ckpt", save_last=True),
        {"class_path": f"tiny.{RecordBatches.__name__}", "init_args": {"out": str(work / "rec")}},
    ]
    run = run_cli_subprocess("fit", "--config", str(write_config(work / "fit.yaml", cfg)))
    assert run.returncode == 0, run.stderr[-3000:]
    # Every rank reads the data; only rank 0 shows s2s's INFO log.
    assert run.stderr.count(f"kept {N_TRAIN} of {N_TRAIN} pairs") == 1
    seen = [json.loads((work / f"rec/rank{r}.json").read_text()) for r in (0, 1)]
    return work, cfg, seen


def test_each_rank_trains_on_a_disjoint_share_of_every_epoch(ddp_fit):
    work, cfg, seen = ddp_fit
    # 36 pairs make 9 global batches of <= 40 tokens: one is split so both ranks get 5.
    per_epoch = 5
    assert len(seen[0]["train"]) == len(seen[1]["train"]) == EPOCHS * per_epoch
    for epoch in range(EPOCHS):
        batches = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        shares = [[i for batch in rank["train"][batches] for i in batch] for rank in seen]
        assert set(shares[0]).isdisjoint(shares[1])
        assert sorted(shares[0] + shares[1]) == list(range(N_TRAIN))

    data = translation_data(cfg["data"]["init_args"])
    data.setup("fit")
    tokens = sum(len(ex.tgt) + 1 for ex in data.datasets["train"])  # targets and EOS
    # Both ranks' shares, counted from the start of the run.
    assert logged(work, "train/tokens") == [tokens * (epoch + 1) for epoch in range(EPOCHS)]


def test_validation_covers_the_split_once_and_bleu_equals_single_process(ddp_fit, tmp_path):
    work, cfg, seen = ddp_fit
    for epoch in range(EPOCHS):  # one validation batch per rank and epoch
        shares = [rank["val"][epoch] for rank in seen]
        assert sorted(shares[0] + shares[1]) == list(range(N_EVAL))

    bleu, chrf = logged(work, "val/bleu"), logged(work, "val/chrf")
    assert len(bleu) == EPOCHS
    assert bleu[-1] > 0  # a meaningful comparison: the hypotheses share 4-grams with the refs
    trainer, data = single_process(cfg, tmp_path)
    [scores] = trainer.validate(load_model(work / "ckpt/last.ckpt"), data)
    assert scores["val/bleu"] == pytest.approx(bleu[-1], rel=1e-6)
    assert scores["val/chrf"] == pytest.approx(chrf[-1], rel=1e-6)


def test_ddp_test_writes_every_hypothesis_once_as_a_single_process_does(ddp_fit, tmp_path):
    work, fit_cfg, _ = ddp_fit
    test_work = tmp_path / "ddp_test"
    cfg = ddp_config(test_work, work / "data")
    cfg["data"] = fit_cfg["data"]
    ckpt = work / "ckpt/last.ckpt"
    run = run_cli_subprocess(
        "test", "--config", str(write_config(tmp_path / "test.yaml", cfg)), "--ckpt_path", str(ckpt)
    )
    assert run.returncode == 0, run.stderr[-3000:]

    trainer, data = single_process(fit_cfg, tmp_path / "single")
    [scores] = trainer.test(load_model(ckpt), data)
    ddp_hyps = (test_work / "logs/version_0/test_hypotheses.txt").read_text(encoding="utf-8")
    single_hyps = (tmp_path / "single/test_hypotheses.txt").read_text(encoding="utf-8")
    assert ddp_hyps.count("\n") == N_EVAL
    assert ddp_hyps == single_hyps
    assert logged(test_work, "test/bleu") == [pytest.approx(scores["test/bleu"], rel=1e-6)]


def test_ddp_predict_writes_every_hypothesis_once_as_test_does(ddp_fit, tmp_path):
    work, fit_cfg, _ = ddp_fit
    cfg = ddp_config(tmp_path / "ddp_predict", work / "data")
    cfg["data"] = fit_cfg["data"]
    ckpt = work / "ckpt/last.ckpt"
    config_path = write_config(tmp_path / "predict.yaml", cfg)
    run = run_cli_subprocess("predict", "--config", str(config_path), "--ckpt_path", str(ckpt))
    assert run.returncode == 0, run.stderr[-3000:]

    trainer, data = single_process(fit_cfg, tmp_path / "single")
    trainer.test(load_model(ckpt), data)
    predicted = (tmp_path / "ddp_predict/logs/version_0/predictions.txt").read_text("utf-8")
    assert predicted.count("\n") == N_EVAL
    assert predicted == (tmp_path / "single/test_hypotheses.txt").read_text(encoding="utf-8")
