"""``--trainer.precision bf16-mixed`` trains on CPU: the layers run in bfloat16 (the LSTM in float32
on CPUs without bfloat16 kernels, with a warning), the loss stays finite; ``bf16-true`` tests with
bfloat16 weights. (16-mixed needs a GPU; see the README.)"""

import math
import warnings

import lightning as L
import pytest
import torch
from tiny import config, write_config, write_corpus

from s2s.cli import make_cli
from s2s.nn import rnn


class Probe(L.Callback):
    """Records the training losses and the dtype of the output layer's results."""

    def on_fit_start(self, trainer, pl_module):
        self.losses, self.dtypes = [], set()
        self.initial = torch.nn.utils.parameters_to_vector(pl_module.parameters()).clone()
        pl_module.decoder.output.register_forward_hook(lambda m, i, out: self.dtypes.add(out.dtype))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize("kernels", ["this CPU's", "simulated absent"])
def test_bf16_mixed_trains_on_cpu(tmp_path, monkeypatch, kernels):
    monkeypatch.setattr("sys.argv", ["s2s"])
    if kernels == "simulated absent":
        monkeypatch.setattr(rnn, "cpu_has_bf16_kernels", lambda: False)
    cfg = config(tmp_path, write_corpus(tmp_path / "data"), max_steps=4, limit_val_batches=0)
    cfg["trainer"]["callbacks"] = [{"class_path": f"{__name__}.Probe"}]
    path = write_config(tmp_path / "fit.yaml", cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # as a user's run: once per place
        cli = make_cli(["fit", "--config", str(path), "--trainer.precision", "bf16-mixed"])
    probe = next(cb for cb in cli.trainer.callbacks if isinstance(cb, Probe))
    assert len(probe.losses) == 4 and all(math.isfinite(loss) for loss in probe.losses)
    assert probe.dtypes == {torch.bfloat16}
    weights = torch.nn.utils.parameters_to_vector(cli.model.parameters())
    assert weights.dtype == torch.float32 and torch.isfinite(weights).all()  # fp32 master weights
    assert not torch.equal(weights, probe.initial)
    warned = [w for w in caught if rnn.FLOAT32_FALLBACK_WARNING in str(w.message)]
    assert len(warned) == (0 if rnn.cpu_has_bf16_kernels() else 1)


def test_bf16_true_test_decodes_in_bfloat16_like_float32(copy_run, tmp_path, monkeypatch):
    """``s2s test --trainer.precision bf16-true`` (README, decoding speed): the weights are cast,
    and the confident copy-task model translates the test set as in float32."""
    monkeypatch.setattr("sys.argv", ["s2s"])
    ckpt = str(copy_run / "run" / "checkpoints" / "last.ckpt")
    hypotheses = {}
    for precision in ("32-true", "bf16-true"):
        save_dir = tmp_path / precision
        cli = make_cli(
            [
                "test",
                "--config",
                str(copy_run / "config.yaml"),
                "--ckpt_path",
                ckpt,
                "--trainer.precision",
                precision,
                "--trainer.logger.init_args.save_dir",
                str(save_dir),
            ]
        )
        assert cli.model.decoder.output.weight.dtype == (
            torch.bfloat16 if precision == "bf16-true" else torch.float32
        )
        hypotheses[precision] = (
            save_dir / "logs" / "version_0" / "test_hypotheses.txt"
        ).read_text()
    assert hypotheses["bf16-true"] == hypotheses["32-true"]
