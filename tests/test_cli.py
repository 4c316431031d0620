import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny import config, flat_options_checkpoint, run_cli_subprocess, write_config, write_corpus

from s2s import coco_caption
from s2s.checkpoint import load_model
from s2s.cli import make_cli
from s2s.decoding import SearchConfig
from s2s.io import read_lines
from s2s.metrics import corpus_scores
from s2s.models import Seq2Seq
from s2s.nn.attention import BahdanauAttention
from s2s.optim import OptimConfig
from s2s.scripts.translate import main as translate

REPO = Path(__file__).parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
# The recipes `make demo` trains: they must give the same model on every machine.
DEMO_RECIPES = {
    REPO / p for p in re.findall(r"recipes/\S+\.yaml", (REPO / "Makefile").read_text("utf-8"))
}


@pytest.fixture(autouse=True)
def no_pytest_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["s2s"])  # LightningCLI warns about pytest's own arguments


@pytest.fixture(scope="module")
def tiny_de_en(tmp_path_factory) -> Path:
    """A two-line German-English train split: enough to build tokenizers without training on
    the real corpus."""
    root = tmp_path_factory.mktemp("tiny_de_en")
    (root / "train.de").write_text("ein Hund läuft\neine Katze schläft\n", encoding="utf-8")
    (root / "train.en").write_text("a dog runs\na cat sleeps\n", encoding="utf-8")
    return root


def recipe_config(recipe: Path) -> dict:
    return yaml.safe_load(recipe.read_text(encoding="utf-8"))


TRANSLATION_RECIPES = [
    r for r in RECIPES if recipe_config(r)["data"]["class_path"] == "s2s.data.TranslationData"
]


def test_the_demo_recipes_exist():
    assert DEMO_RECIPES and DEMO_RECIPES.issubset(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses(recipe, capsys):
    """Every class path and argument is valid; vocabulary sizes come from the data module."""
    config = recipe_config(recipe)
    assert not [k for k in config["model"]["init_args"] if k.endswith("vocab_size")]
    with pytest.raises(SystemExit) as exit_info:
        make_cli(["--config", str(recipe), "--print_config"], run=False)
    assert exit_info.value.code == 0
    parsed = yaml.safe_load(capsys.readouterr().out)
    assert parsed["model"]["class_path"] == config["model"]["class_path"]
    assert parsed["data"]["class_path"] == config["data"]["class_path"]
    # last.ckpt is the latest state, not the last improvement of the monitored metric.
    saving_last = [c for c in parsed["trainer"]["callbacks"] if c["init_args"].get("save_last")]
    assert [c["class_path"] for c in saving_last] == ["s2s.callbacks.ModelCheckpoint"]
    if recipe in DEMO_RECIPES:  # fixed epochs, not time: the same model on a slower machine
        assert parsed["trainer"]["max_time"] is None


@pytest.mark.parametrize("recipe", TRANSLATION_RECIPES, ids=lambda p: p.stem)
def test_translation_recipe_builds_its_model(recipe, tiny_de_en, tmp_path, monkeypatch):
    """The recipe's model gets the vocabulary sizes of the data module's tokenizers."""
    config = recipe_config(recipe)
    monkeypatch.chdir(tmp_path)  # the recipe's relative run folders
    cli = make_cli(
        [
            "--config",
            str(recipe),
            "--data.init_args.data_dir",
            str(tiny_de_en),
            "--data.init_args.tokenizer.cache_dir",
            str(tmp_path / "cache"),
        ],
        run=False,
    )
    model, data = cli.model, cli.datamodule
    assert isinstance(model, Seq2Seq)
    # The recipe's own data is in the repository.
    for lang in (data.src_lang, data.tgt_lang):
        split = REPO / config["data"]["init_args"]["data_dir"] / f"{data.train_split}.{lang}"
        assert split.is_file() or split.with_name(split.name + ".gz").is_file()
    assert model.hparams.src_vocab_size == data.src_vocab_size
    assert model.encoder.embedding.num_embeddings == data.src_tokenizer.vocab_size
    assert model.decoder.output.out_features == data.tgt_tokenizer.vocab_size
    for name, value in config["model"]["init_args"].items():
        if name in ("optim", "search"):  # frozen dataclasses built from the YAML
            built = getattr(model, name)
            assert isinstance(built, OptimConfig | SearchConfig)
            assert dataclasses.asdict(built).items() >= value.items()
        elif isinstance(value, dict):  # encoder, decoder: the CLI saves the groups as dicts
            assert model.hparams[name].items() >= value.items(), name
        else:
            assert model.hparams[name] == value, name


def test_fit_checkpoint_rebuilds_the_model(copy_run):
    """The checkpoint alone gives back the model `s2s fit` trained, with its typed configs."""
    model = load_model(copy_run / "run" / "checkpoints" / "last.ckpt")
    assert isinstance(model, Seq2Seq) and not model.training
    assert model.search == SearchConfig(beam_size=3, max_len_a=1.5, max_len_b=5)
    assert model.optim == OptimConfig(lr=0.01)
    assert isinstance(model.decoder.attention, BahdanauAttention)
    assert set(model.tokenizers) == {"src", "tgt"}
    assert (copy_run / "run" / "logs" / "version_0" / "config.yaml").is_file()


def test_test_reports_scores_of_its_hypotheses_file(copy_run, tmp_path, capsys):
    cli = make_cli(
        [
            "test",
            "--config",
            str(copy_run / "config.yaml"),
            "--ckpt_path",
            str(copy_run / "run" / "checkpoints" / "last.ckpt"),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ]
    )
    hyps = read_lines(tmp_path / "logs" / "version_0" / "test_hypotheses.txt")
    refs = read_lines(copy_run / "data" / "test.tgt")
    assert len(hyps) == len(refs)
    assert not any("▁" in h for h in hyps)  # detokenized
    expected = corpus_scores(hyps, [[r] for r in refs])
    assert expected.bleu > 50  # the copy task was learnt: the comparison below is not 0 == 0
    metrics = cli.trainer.callback_metrics
    assert float(metrics["test/bleu"]) == pytest.approx(expected.bleu, abs=1e-4)
    assert float(metrics["test/chrf"]) == pytest.approx(expected.chrf, abs=1e-4)
    assert float(metrics["test/bleu_lc_tok"]) == pytest.approx(expected.bleu_lc_tok, abs=1e-4)
    out = capsys.readouterr().out
    assert re.search(rf"BLEU = {expected.bleu:.2f} \(nrefs:1\|case:mixed\|.*\|version:", out)
    assert re.search(rf"chrF = {expected.chrf:.2f} \(nrefs:1\|case:mixed\|.*\|version:", out)
    assert re.search(rf"BLEU lowercased = {expected.bleu_lc_tok:.2f} \(nrefs:1\|case:lc\|", out)


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_test_reports_meteor_for_english_targets_only(copy_run, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        shutil.copy(copy_run / "data" / f"{split}.src", data / f"{split}.src")
        shutil.copy(copy_run / "data" / f"{split}.tgt", data / f"{split}.en")
    metrics = {}
    for lang, data_dir in (("tgt", copy_run / "data"), ("en", data)):
        cli = make_cli(
            [
                *("test", "--config", str(copy_run / "config.yaml")),
                *("--ckpt_path", str(copy_run / "run" / "checkpoints" / "last.ckpt")),
                *("--data.init_args.data_dir", str(data_dir), "--data.init_args.tgt_lang", lang),
                *("--trainer.logger.init_args.save_dir", str(tmp_path / lang)),
            ]
        )
        metrics[lang] = cli.trainer.callback_metrics
    assert "test/meteor" not in metrics["tgt"]
    assert "METEOR is computed for English targets only (target: tgt)" in caplog.text
    hyps = read_lines(tmp_path / "en" / "logs" / "version_0" / "test_hypotheses.txt")
    refs = [[r] for r in read_lines(data / "test.en")]
    expected = coco_caption.meteor(hyps, refs, tokenize=str)
    assert expected > 30  # the copy task was learnt: not 0 == 0
    assert float(metrics["en"]["test/meteor"]) == pytest.approx(expected, abs=1e-4)


def test_checkpoints_with_flat_options_still_load(copy_run, tmp_path):
    """Older checkpoints keep the RNN options flat; every reader regroups them."""
    new = copy_run / "run" / "checkpoints" / "last.ckpt"
    old = flat_options_checkpoint(new, tmp_path / "old.ckpt")
    assert "hidden_size" in torch.load(old, weights_only=True)["hyper_parameters"]
    expected, model = load_model(new), load_model(old)
    assert dict(model.hparams) == dict(expected.hparams)
    assert model.state_dict().keys() == expected.state_dict().keys()
    hyps = {}
    for name, ckpt in (("new", new), ("old", old)):
        save_dir = tmp_path / name
        make_cli(
            [
                "test",
                "--config",
                str(copy_run / "config.yaml"),
                "--ckpt_path",
                str(ckpt),
                "--trainer.logger.init_args.save_dir",
                str(save_dir),
            ]
        )
        hyps[name] = read_lines(save_dir / "logs" / "version_0" / "test_hypotheses.txt")
    assert hyps["old"] == hyps["new"] and hyps["new"]


def test_fit_shows_the_data_modules_info_records(tmp_path):
    """The ``s2s`` command shows s2s's INFO log (Python shows only warnings unconfigured)."""
    cfg = config(tmp_path, write_corpus(tmp_path / "data"), max_steps=1, limit_val_batches=0)
    run = run_cli_subprocess("fit", "--config", str(write_config(tmp_path / "fit.yaml", cfg)))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train: kept 36 of 36 pairs" in run.stderr


def test_predict_writes_the_hypotheses_test_writes(copy_run, tmp_path):
    """``s2s predict`` translates the test split's sources by default: one line per input, in
    order, the very lines ``s2s test`` writes with the same checkpoint."""
    run = ["--config", str(copy_run / "config.yaml")]
    ckpt = ["--ckpt_path", str(copy_run / "run" / "checkpoints" / "last.ckpt")]
    for command in ("test", "predict"):
        make_cli(
            [command, *run, *ckpt, "--trainer.logger.init_args.save_dir", str(tmp_path / command)]
        )
    predicted = read_lines(tmp_path / "predict" / "logs" / "version_0" / "predictions.txt")
    tested = read_lines(tmp_path / "test" / "logs" / "version_0" / "test_hypotheses.txt")
    assert len(predicted) == len(read_lines(copy_run / "data" / "test.src"))
    assert predicted == tested


def test_the_ensemble_decodes_as_s2s_translate_does(copy_run, tmp_path, capsys):
    """``s2s test --ensemble [B]`` writes what ``s2s-translate --ckpt A --ckpt B`` writes; an
    ensemble with a copy of the model, what the model alone writes."""
    ckpt = copy_run / "run" / "checkpoints" / "last.ckpt"
    noisy = tmp_path / "noisy.ckpt"  # same vocabularies, other weights
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    for tensor in state["state_dict"].values():
        if tensor.is_floating_point():
            tensor.add_(torch.randn_like(tensor))
    torch.save(state, noisy)

    def tested(*ensemble: Path) -> list[str]:
        out = tmp_path / f"test{len(list(tmp_path.iterdir()))}"
        run = ["--config", str(copy_run / "config.yaml"), "--ckpt_path", str(ckpt)]
        members = ["--ensemble", json.dumps([str(p) for p in ensemble])] if ensemble else []
        make_cli(["test", *run, *members, "--trainer.logger.init_args.save_dir", str(out)])
        return read_lines(out / "logs" / "version_0" / "test_hypotheses.txt")

    alone = tested()
    assert tested(ckpt) == alone
    ensemble = tested(noisy)
    capsys.readouterr()
    translate(
        ["--ckpt", str(ckpt), "--ckpt", str(noisy), "--input", str(copy_run / "data" / "test.src")]
    )
    assert ensemble == capsys.readouterr().out.splitlines()
    assert ensemble != alone


def test_an_ensemble_member_of_another_kind_is_one_line(copy_run, caption_run, tmp_path):
    run = ["--config", str(copy_run / "config.yaml")]
    ckpt = str(copy_run / "run" / "checkpoints" / "last.ckpt")
    save = ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    members = ["--ensemble", json.dumps([str(caption_run[1])])]
    with pytest.raises(SystemExit, match=r"^s2s: .*last.ckpt holds a Captioner, not a Seq2Seq"):
        make_cli(["test", *run, "--ckpt_path", ckpt, *members, *save])
    with pytest.raises(SystemExit, match=r"^s2s fit: --ensemble is for test and predict$"):
        make_cli(["fit", *run, *members, *save])
