"""Fine-tuning: ``--model.init_from CKPT`` starts from the checkpoint's weights and tokenizes the
new data with the checkpoint's tokenizers; an incompatible vocabulary is a clear error."""

import pytest
import torch
import yaml
from tiny import (
    caption_recipe,
    quiet_trainer,
    run_cli,
    translation_data,
    write_config,
    write_corpus,
)

from s2s.checkpoint import CLASS_KEY, load_model, read_checkpoint
from s2s.data import TranslationData
from s2s.models import Seq2Seq


@pytest.fixture(scope="module")
def base(copy_run):
    """The copy-task checkpoint (symbols a-h) to fine-tune on German-English."""
    return copy_run / "run" / "checkpoints" / "last.ckpt"


def finetune_config(copy_run, tmp_path):
    """The copy run's recipe on new data: 2 steps at a learning rate too small to move weights."""
    cfg = yaml.safe_load((copy_run / "config.yaml").read_text(encoding="utf-8"))
    cfg["trainer"].update(max_steps=2, default_root_dir=str(tmp_path), logger=False)
    cfg["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    cfg["model"]["init_args"]["optim"] = {"lr": 1e-9}
    cfg["data"]["init_args"].update(
        data_dir=str(write_corpus(tmp_path / "data")),
        src_lang="de",
        tgt_lang="en",
    )
    cfg["data"]["init_args"]["tokenizer"]["cache_dir"] = str(tmp_path / "tokenizers")
    return cfg


def test_init_from_loads_weights_and_keeps_the_tokenizers(copy_run, base, tmp_path):
    cfg = write_config(tmp_path / "fit.yaml", finetune_config(copy_run, tmp_path))
    run_cli("fit", "--config", str(cfg), "--model.init_from", str(base))

    before, after = load_model(base), load_model(tmp_path / "ckpt/last.ckpt")
    assert read_checkpoint(tmp_path / "ckpt/last.ckpt")["global_step"] == 2
    assert after.tokenizers == before.tokenizers
    assert not (tmp_path / "tokenizers").exists()  # no tokenizer was trained on the new data
    for (name, p), q in zip(before.named_parameters(), after.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name  # started from the checkpoint (lr 1e-9)


def trainer():
    return quiet_trainer(max_steps=1)


def test_data_with_other_tokenizers_is_a_clear_error(copy_run, base, tmp_path):
    """Without the CLI's link, a data module that trains its own tokenizers is refused."""
    init_args = finetune_config(copy_run, tmp_path)["data"]["init_args"]
    data = translation_data(init_args)  # trains a tokenizer on the new data
    hparams = load_model(base).hparams
    model = Seq2Seq(**{**hparams, "init_from": str(base)})
    with pytest.raises(ValueError, match="the data's src tokenizer differs from the checkpoint's"):
        trainer().fit(model, data)


def test_other_vocabulary_size_is_a_clear_error(base):
    hparams = load_model(base).hparams
    model = Seq2Seq(**{**hparams, "src_vocab_size": hparams["src_vocab_size"] + 1})
    model.init_from = str(base)
    with pytest.raises(
        ValueError, match=rf"(?s){base}: its weights do not fit this model.*size mismatch"
    ):
        model.setup("fit")


def test_tokenizers_from_a_checkpoint_without_source_tokenizer(base, tmp_path):
    ckpt = read_checkpoint(base)
    foreign = tmp_path / "lm.ckpt"
    torch.save(
        {
            CLASS_KEY: "s2s.models.language_model.LanguageModel",
            "tokenizers": {"tgt": ckpt["tokenizers"]["tgt"]},
        },
        foreign,
    )
    data = TranslationData(tokenizer_from=str(foreign))
    with pytest.raises(
        ValueError, match=r"lm.ckpt: has no source and target tokenizers \(only \['tgt'\]\)"
    ):
        _ = data.src_tokenizer


def test_a_captioner_fine_tunes_its_encoder_at_its_own_rate(caption_run, tmp_path):
    """A captioner trained with a frozen encoder continues from its checkpoint with the encoder
    unfrozen: the tokenizer is the checkpoint's, the encoder moves at ``encoder_lr`` (tiny here)
    while the decoder learns at ``lr``."""
    images, base = caption_run
    cfg = caption_recipe(tmp_path, images / "captions.tsv", "bahdanau")
    cfg["trainer"]["max_steps"] = 3
    cfg["model"]["init_args"].update(
        init_from=str(base), unfreeze_encoder_at=0, encoder_lr=1e-9, optim={"lr": 0.03}
    )
    cfg["data"]["init_args"]["tokenizer"]["cache_dir"] = str(tmp_path / "tokenizers")
    run_cli("fit", "--config", str(write_config(tmp_path / "fit.yaml", cfg)))

    before, after = load_model(base), load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert after.tokenizers == before.tokenizers
    assert not (tmp_path / "tokenizers").exists()  # no tokenizer trained on the data
    for name, p in before.encoder.named_parameters():
        assert torch.allclose(p, dict(after.encoder.named_parameters())[name], atol=1e-6), name
    decoder = zip(before.decoder.parameters(), after.decoder.parameters(), strict=True)
    moved = [not torch.allclose(p, q, atol=1e-4) for p, q in decoder]
    assert any(moved)  # the decoder trained
