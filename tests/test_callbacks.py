import lightning as L
import pytest
import torch
from tiny import (
    checkpointing,
    config,
    quiet_trainer,
    run_cli,
    translation_data,
    write_config,
    write_corpus,
)

from s2s.callbacks import FreezeEncoder
from s2s.checkpoint import MODEL_CLASSES, load_model, read_checkpoint
from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderConfig
from s2s.nn.encoder import EncoderConfig

BAD_STEP = 3


class NaNLossAtStep3(Seq2Seq):
    """The translator, whose training loss turns NaN at optimizer step 3."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step == BAD_STEP else loss


@pytest.fixture(autouse=True)
def trust_these_models(monkeypatch):
    """This file's Seq2Seq subclasses may be read from checkpoints (README: trust model)."""
    ours = {f"{__name__}.{c.__name__}" for c in (NaNLossAtStep3, WorseEveryEpoch)}
    monkeypatch.setattr("s2s.checkpoint.MODEL_CLASSES", MODEL_CLASSES | ours)


def test_nan_loss_stops_the_run_clearly_and_the_last_checkpoint_resumes(tmp_path):
    cfg = config(tmp_path, write_corpus(tmp_path / "data"), limit_val_batches=0)
    cfg["model"]["class_path"] = f"{__name__}.{NaNLossAtStep3.__name__}"
    cfg["trainer"]["callbacks"] = [
        checkpointing(tmp_path / "ckpt", every_n_train_steps=1, save_last=True)
    ]
    path = write_config(tmp_path / "fit.yaml", cfg)
    message = rf"training loss nan at step {BAD_STEP} \(epoch 0\): stopped before the update"
    with pytest.raises(FloatingPointError, match=message):
        run_cli("fit", "--config", str(path))  # the s2s command adds the check to every run

    last = tmp_path / "ckpt/last.ckpt"
    assert read_checkpoint(last)["global_step"] == BAD_STEP
    assert all(torch.isfinite(p).all() for p in load_model(last).parameters())
    # Resuming from it (with a loss that stays finite) finishes the epoch: 9 batches.
    run_cli("fit", "--config", str(path), "--ckpt_path", "last", "--model.class_path", "Seq2Seq")
    assert read_checkpoint(last)["global_step"] == 9


class Snapshots(L.Callback):
    """Copies of the encoder's and the decoder's weights at the end of every training epoch."""

    def __init__(self):
        self.encoder, self.decoder = [], []

    def on_train_epoch_end(self, trainer, pl_module):
        self.encoder.append(torch.nn.utils.parameters_to_vector(pl_module.encoder.parameters()))
        self.decoder.append(torch.nn.utils.parameters_to_vector(pl_module.decoder.parameters()))


def test_freeze_encoder_for_the_first_epochs(tmp_path):
    cfg = config(tmp_path, write_corpus(tmp_path / "data"))
    data = translation_data(cfg["data"]["init_args"])
    sizes = dict(embedding_size=16, hidden_size=16)
    model = Seq2Seq(
        data.src_vocab_size, data.tgt_vocab_size, EncoderConfig(**sizes), DecoderConfig(**sizes)
    )
    initial = Snapshots()
    initial.on_train_epoch_end(None, model)
    after = Snapshots()
    trainer = quiet_trainer(
        max_epochs=2,
        gradient_clip_val=1.0,
        limit_val_batches=0,
        callbacks=[FreezeEncoder(epochs=1), after],
    )
    trainer.fit(model, data)
    assert torch.equal(after.encoder[0], initial.encoder[0])  # frozen in epoch 0
    assert not torch.equal(after.decoder[0], initial.decoder[0])
    assert not torch.equal(after.encoder[1], after.encoder[0])  # trains from epoch 1


def test_freeze_encoder_needs_an_encoder():
    with pytest.raises(ValueError, match="LightningModule has no `encoder` module"):
        FreezeEncoder(epochs=1).setup(None, L.LightningModule(), "fit")
    with pytest.raises(ValueError, match="epochs >= 1"):
        FreezeEncoder(epochs=0)


class WorseEveryEpoch(Seq2Seq):
    """The translator, with a validation metric that gets worse every epoch."""

    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        self.log("val/worse", float(self.current_epoch))


def test_last_checkpoint_is_the_latest_state_when_the_metric_gets_worse(tmp_path):
    cfg = config(tmp_path, write_corpus(tmp_path / "data"), max_epochs=3, num_sanity_val_steps=0)
    cfg["model"]["class_path"] = f"{__name__}.{WorseEveryEpoch.__name__}"
    cfg["trainer"]["callbacks"] = [
        checkpointing(tmp_path / "ckpt", filename="best", monitor="val/worse", save_last=True)
    ]
    run_cli("fit", "--config", str(write_config(tmp_path / "fit.yaml", cfg)))
    assert read_checkpoint(tmp_path / "ckpt/best.ckpt")["global_step"] == 9  # the first epoch
    assert read_checkpoint(tmp_path / "ckpt/last.ckpt")["global_step"] == 27  # the third
