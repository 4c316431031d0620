import json
from dataclasses import replace
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from tiny import quiet_trainer, write_scenes

from s2s.checkpoint import load_model
from s2s.coco_caption import CiderD
from s2s.data import CaptionData, TsvCaptions
from s2s.data.batching import pad
from s2s.data.captions import image_batch
from s2s.data.images import load_image
from s2s.decoding import SearchConfig, beam_search, greedy
from s2s.io import read_lines
from s2s.models import Captioner
from s2s.models.self_critical import sample_log_probs
from s2s.nn.decoder import DecoderConfig
from s2s.nn.image_encoder import preprocessing_for
from s2s.optim import OptimConfig
from s2s.tokenizer import BOS_ID, EOS_ID, TokenizerConfig

# Four pictures, each two colours side by side: the caption names them left to right.
SCENES = {
    "rg.png": ("red", "green"),
    "gr.png": ("green", "red"),
    "by.png": ("blue", "yellow"),
    "yb.png": ("yellow", "blue"),
}
CONVNET = "s2s.nn.image_encoder.ConvNet"


def caption(left: str, right: str) -> str:
    return f"{left} left of {right}"


def scene_data(images: Path, with_test: bool = False) -> CaptionData:
    """A data module of ``images``' scenes for every split (train = val = test), prepared for
    :func:`tiny_captioner`; its tokenizer is trained by the first one, then read from the cache
    beside ``images``."""
    source = TsvCaptions(str(images / "captions.tsv"))
    return CaptionData(
        source,
        source,
        source if with_test else None,
        tokenizer=TokenizerConfig(
            type="bpe", vocab_size=320, cache_dir=str(images.parent / "cache")
        ),
        preprocessing=preprocessing_for(CONVNET, None, 32),
        batch_size=4,
    )


def tiny_captioner(vocab_size: int, attention: str = "bahdanau", **kwargs) -> Captioner:
    options = dict(
        backbone=CONVNET,
        backbone_args={"channels": [8, 16]},
        image_size=32,
        decoder=DecoderConfig(embedding_size=16, hidden_size=32, attention=attention, dropout=0.0),
        optim=OptimConfig(lr=0.03),
        search=SearchConfig(beam_size=2, max_len_b=8),
    )
    return Captioner(vocab_size, **{**options, **kwargs})


def fit(model, data, tmp_path, **trainer_args) -> L.Trainer:
    trainer = quiet_trainer(limit_val_batches=0, default_root_dir=tmp_path, **trainer_args)
    trainer.fit(model, datamodule=data)
    return trainer


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """A tiny captioner trained until it reproduces the four captions, and the images' folder.

    Shared by the module's tests: they must not change the model; those that set up or change a
    data module make their own with :func:`scene_data`.
    """
    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root / "images", SCENES)
    data = scene_data(root / "images")
    L.seed_everything(0)
    model = tiny_captioner(data.tgt_vocab_size)
    fit(model, data, root, max_steps=120)
    return model.eval(), root / "images"


def test_overfits_a_few_images_to_exact_captions(overfit):
    model, images = overfit
    batch = image_batch([load_image(images / n) for n in SCENES], model.preprocessing.transform())
    hyps = greedy(model, batch, max_len_b=8)
    got = [model.tokenizers["tgt"].decode(h.tokens) for h in hyps]
    assert got == [caption(*c) for c in SCENES.values()]


def test_beam_of_one_equals_greedy(overfit):
    model, images = overfit
    noisy = [Image.effect_noise((32, 32), 60).convert("RGB") for _ in range(3)]
    batch = image_batch([*noisy, load_image(images / "rg.png")], model.preprocessing.transform())
    greedy_hyps = greedy(model, batch, max_len_b=8)
    beam_hyps = beam_search(model, batch, SearchConfig(beam_size=1, max_len_b=8))
    assert [h.tokens for h in greedy_hyps] == [nbest[0].tokens for nbest in beam_hyps]
    assert [h.score for h in greedy_hyps] == pytest.approx([nb[0].score for nb in beam_hyps])
    assert beam_hyps[0][0].attention.shape == (len(beam_hyps[0][0].tokens) + 1, 64)  # 8 x 8


def test_checkpoint_rebuilds_the_captioner(overfit, tmp_path):
    model, images = overfit
    trainer = quiet_trainer(default_root_dir=tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    loaded = load_model(tmp_path / "c.ckpt")
    assert isinstance(loaded, Captioner) and loaded.tokenizers["tgt"] == model.tokenizers["tgt"]
    assert loaded.preprocessing == model.preprocessing
    batch = image_batch([load_image(images / "gr.png")], model.preprocessing.transform())
    assert torch.equal(loaded.encode(batch).memory, model.encode(batch).memory)


def test_attention_penalty_by_hand():
    model = tiny_captioner(300, attention_regularization=2.0)
    attention = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # (B=1, T=2, S=2)
    both = torch.tensor([[True, True]])
    # Region 0 gets 2 in total, region 1 gets 0: mean((1 - 2)^2, (1 - 0)^2) = 1, times lambda.
    assert float(model.attention_penalty(attention, both)) == pytest.approx(2.0)
    # The padded second step does not count: coverage (1, 0) -> mean(0, 1) = 0.5.
    assert float(model.attention_penalty(attention, torch.tensor([[True, False]]))) == 1.0
    assert model.attention_penalty(None, both) == 0.0
    no_attention = tiny_captioner(300, attention="none")
    assert no_attention.decoder.attention is None


def test_predict_captions_the_test_split_as_test_does(overfit, tmp_path):
    """CaptionData has no predict split: ``s2s predict`` captions the test split's images, one
    line per image in order, the lines ``s2s test`` writes."""
    model, images = overfit
    data = scene_data(images, with_test=True)
    trainer = quiet_trainer(default_root_dir=tmp_path)
    trainer.test(model, data)
    trainer.predict(model, data)
    expected = [caption(*c) for c in SCENES.values()]
    assert read_lines(tmp_path / "test_hypotheses.txt") == expected
    assert read_lines(tmp_path / "predictions.txt") == expected
    results = json.loads((tmp_path / "test_results.json").read_text(encoding="utf-8"))
    assert results == [
        {"image_id": name.removesuffix(".png"), "caption": text}
        for name, text in zip(SCENES, expected, strict=True)
    ]


def test_param_groups_give_the_encoder_its_learning_rate():
    model = tiny_captioner(300, encoder_lr=1e-4)
    [optimizer], _ = model.configure_optimizers()
    decoder_group, encoder_group = optimizer.param_groups
    assert encoder_group["lr"] == 1e-4 and decoder_group["lr"] == 0.03
    assert {id(p) for p in encoder_group["params"]} == {id(p) for p in model.encoder.parameters()}
    n_params = len(list(model.parameters()))
    assert len(decoder_group["params"]) + len(encoder_group["params"]) == n_params


def test_frozen_encoder_gets_no_gradient_and_keeps_batchnorm(overfit):
    data = scene_data(overfit[1])
    model = tiny_captioner(data.tgt_vocab_size, unfreeze_encoder_at=None).train()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    stats = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" in k}
    model.training_step(batch, 0).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters() if p.requires_grad)
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in stats.items())


class EncoderSnapshots(L.Callback):
    """The encoder's weights and frozen flag at the end of every training epoch."""

    def __init__(self) -> None:
        self.weights, self.frozen = [], []

    def on_train_epoch_end(self, trainer, model) -> None:
        self.weights.append([p.detach().clone() for p in model.encoder.parameters()])
        self.frozen.append(model.encoder.frozen)


def test_encoder_unfreezes_at_epoch_k(overfit, tmp_path):
    data = scene_data(overfit[1])
    model = tiny_captioner(data.tgt_vocab_size, unfreeze_encoder_at=1)
    start = [p.detach().clone() for p in model.encoder.parameters()]
    snapshots = EncoderSnapshots()
    fit(model, data, tmp_path, max_epochs=2, callbacks=[snapshots])
    assert snapshots.frozen == [True, False]
    assert all(torch.equal(a, b) for a, b in zip(start, snapshots.weights[0], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(start, snapshots.weights[1], strict=True))


def test_validation_logs_caption_metrics(overfit, tmp_path):
    model, images = overfit
    trainer = quiet_trainer(default_root_dir=tmp_path)
    [metrics] = trainer.validate(model, datamodule=scene_data(images), verbose=False)
    assert metrics["val/exact"] == 100.0 and metrics["val/bleu4"] == pytest.approx(100.0)
    assert metrics["val/cider_d"] > 0 and metrics["val/bleu1"] == pytest.approx(100.0)
    assert metrics["val/coco_bleu4"] == pytest.approx(100.0) and metrics["val/rouge_l"] == 100.0


def greedy_cider_d(model: Captioner, images: Path) -> float:
    """Mean CIDEr-D of the model's greedy captions of the scenes."""
    batch = image_batch([load_image(images / n) for n in SCENES], model.preprocessing.transform())
    texts = [model.tokenizers["tgt"].decode(h.tokens) for h in greedy(model.eval(), batch)]
    refs = [[caption(*c)] for c in SCENES.values()]
    return sum(CiderD(refs)(texts, refs)) / len(SCENES)


def test_sample_log_probs_equal_a_teacher_forced_pass_per_sample(tmp_path):
    """Samples sharing their image's memory score as if each had its own copy of the image."""
    write_scenes(tmp_path / "images", SCENES)
    model = tiny_captioner(scene_data(tmp_path / "images").tgt_vocab_size).eval()
    batch = image_batch(
        [load_image(tmp_path / "images" / n) for n in list(SCENES)[:2]],
        model.preprocessing.transform(),
    )
    tokens = [[5, 6], [7], [8, 9, 10], [4, 4]]  # two samples of each of the two images
    picked, mask = sample_log_probs(model, batch, tokens, num_samples=2)
    tgt = pad([[BOS_ID, *t, EOS_ID] for t in tokens])
    repeated = replace(batch, images=batch.images.repeat_interleave(2, 0), tgt=tgt)
    with torch.no_grad():
        expected = model(repeated).log_softmax(-1).gather(-1, tgt[:, 1:, None]).squeeze(-1)
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]]
    torch.testing.assert_close(picked * mask, expected * mask)
    assert picked.requires_grad


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_self_critical_steps_raise_greedy_cider_d(tmp_path, baseline):
    """From a half-trained cross-entropy model (it confuses two scenes), 60 self-critical steps
    raise the CIDEr-D of its greedy captions (seeded)."""
    write_scenes(tmp_path / "images", SCENES)
    L.seed_everything(0)
    model = tiny_captioner(scene_data(tmp_path / "images").tgt_vocab_size)
    fit(model, scene_data(tmp_path / "images"), tmp_path / "xe", max_steps=30)
    before = greedy_cider_d(model, tmp_path / "images")
    scst = tiny_captioner(
        model.decoder.output.out_features,
        self_critical=True,
        scst_samples=16,
        scst_baseline=baseline,
        optim=OptimConfig(lr=0.003),
    )
    scst.load_state_dict(model.state_dict())
    scst.tokenizers = model.tokenizers
    L.seed_everything(1)
    fit(scst, scene_data(tmp_path / "images"), tmp_path / "scst", max_steps=60)
    assert greedy_cider_d(scst, tmp_path / "images") > before + 1.0  # pycocoevalcap's scale
