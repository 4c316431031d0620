"""Bad input at every entry point gives a clear error naming the file (and line), or a counted,
logged skip; never a crash deep in a stack. The data module's own checks are in
tests/data/test_translation.py and the translate script's checkpoint errors in
tests/scripts/test_translate.py; these go through the ``s2s`` command and the translate script."""

import gzip
import logging
import re

import pytest
import torch
import yaml
from tiny import PAIRS, config, run_cli, write_config, write_corpus, write_lines

from s2s.io import DataError
from s2s.scripts.translate import main as translate

# --- s2s fit: parallel text


def break_train_split(data, case):
    """Spoil ``data/train.{de,en}`` (36 good pairs) in one way."""
    de, en = data / "train.de", data / "train.en"
    if case == "mismatched":
        en.write_text("".join(en.read_text(encoding="utf-8").splitlines(True)[:-1]))
    elif case == "missing":
        en.unlink()
    elif case == "empty":
        de.write_text(""), en.write_text("")
    elif case == "blank":
        de.write_text(" \n\t\n"), en.write_text("\n \n")
    elif case == "invalid utf-8":
        de.write_bytes(de.read_bytes().replace("große".encode(), b"gro\xdfe", 1))
    elif case == "CR-only line endings":  # each file one line, over the tokenizer's limit
        for path in (de, en):
            path.write_bytes(path.read_bytes().replace(b"\n", b"\r") * 4)
    elif case == "corrupt gzip":
        write_corrupt_gzip(data / "train.de.gz", de.read_bytes())
        de.unlink()


def write_corrupt_gzip(path, data):
    """A complete gzip file of ``data`` whose compressed blocks are damaged (not truncated)."""
    compressed = gzip.compress(data)
    path.write_bytes(compressed[:10] + b"\xff" * 8 + compressed[18:])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mismatched", r"train\.de has 36 lines but .*train\.en has 35: parallel files"),
        ("missing", r"train\.en\[\.gz\]: no such file \(split 'train', language 'en'\)"),
        ("empty", r"train\.de, .*train\.en: no text to train a tokenizer on"),
        ("blank", r"train\.de, .*train\.en: no text to train a tokenizer on"),
        ("invalid utf-8", r"train\.de:4: invalid UTF-8 \(byte 7: invalid continuation byte\)"),
        ("CR-only line endings", r"train\.de, .*train\.en: every line is longer than 4192 bytes"),
        (
            "corrupt gzip",
            r"train\.de\.gz: cannot read \(Error -3 while decompressing data: invalid block type\)",
        ),
    ],
)
def test_fit_on_bad_parallel_files(case, message, tmp_path):
    data = write_corpus(tmp_path / "data")
    break_train_split(data, case)
    cfg = write_config(tmp_path / "fit.yaml", config(tmp_path, data))
    with pytest.raises(DataError, match=message):
        run_cli("fit", "--config", str(cfg))
    assert not (tmp_path / "checkpoints").exists()


def test_fit_skips_blank_and_overlong_pairs_with_a_count(tmp_path, caplog):
    data = write_corpus(tmp_path / "data")
    long_de = " ".join(["der kleine Hund läuft im Park ."] * 2000)  # 14000 words
    write_lines(data / "train.de", [*(de for de, _ in PAIRS[:4]), "  \t ", long_de])
    write_lines(data / "train.en", [*(en for _, en in PAIRS[:4]), "the dog", "a dog"])
    cfg = write_config(tmp_path / "fit.yaml", config(tmp_path, data, limit_val_batches=0))
    with caplog.at_level(logging.INFO, logger="s2s.data.translation"):
        run_cli("fit", "--config", str(cfg))
    assert (
        "train: kept 4 of 6 pairs (1 empty/too short, 1 longer than 30 tokens)" in caplog.messages
    )


# --- s2s fit: configs fail while parsing, before any work


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "hiden_size", 16, "Option 'hiden_size' is not accepted"),
        ("data", "max_tokens", "lots", "Parser key \"max_tokens\":\n.*Expected a <class 'int'>"),
        ("trainer", "max_epoch", 1, "max_epoch"),
        ("trainer", "max_epochs", "many", 'Parser key "trainer.max_epochs"'),
    ],
)
def test_bad_config_fails_before_any_work(section, key, value, message, tmp_path, capsys):
    cfg = config(tmp_path / "run", write_corpus(tmp_path / "data"))
    target = cfg[section] if section == "trainer" else cfg[section]["init_args"]
    target[key] = value
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(write_config(tmp_path / "fit.yaml", cfg)))
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()  # no tokenizer trained, no run folder


@pytest.mark.parametrize("how", ["config", "flag"])
def test_constructor_checks_fail_in_one_line_before_any_work(how, tmp_path, capsys):
    cfg = config(tmp_path / "run", write_corpus(tmp_path / "data"))
    flags = ["--model.init_args.label_smoothing", "1.5"] if how == "flag" else []
    if how == "config":
        cfg["model"]["init_args"]["label_smoothing"] = 1.5
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(write_config(tmp_path / "fit.yaml", cfg)), *flags)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "s2s: model s2s.models.Seq2Seq: "
        "need 0 <= label_smoothing < 1 and 0 < teacher_forcing_ratio <= 1"
    )
    assert not (tmp_path / "run").exists()  # no tokenizer trained, no run folder


# --- checkpoints given to the s2s command


@pytest.fixture
def bad_checkpoints(copy_run, tmp_path):
    data = (copy_run / "run/checkpoints/last.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    torch.save({"epoch": 3, "state_dict": {}}, tmp_path / "foreign.ckpt")  # another program's
    return tmp_path


@pytest.mark.parametrize(
    ("name", "message"),
    [("truncated.ckpt", "not a readable checkpoint"), ("foreign.ckpt", "not an s2s checkpoint")],
)
@pytest.mark.parametrize("how", ["test --ckpt_path", "fit --ckpt_path", "fit --model.init_from"])
def test_bad_checkpoint_through_the_cli(how, name, message, bad_checkpoints, copy_run):
    subcommand, option = how.split()
    path = bad_checkpoints / name
    cfg = yaml.safe_load((copy_run / "config.yaml").read_text(encoding="utf-8"))
    cfg["trainer"]["default_root_dir"] = str(bad_checkpoints / "run")
    cfg["trainer"]["logger"] = False
    cfg["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(bad_checkpoints / "ckpt")
    cfg_path = write_config(bad_checkpoints / "config.yaml", cfg)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        run_cli(subcommand, "--config", str(cfg_path), option, str(path))


# --- the translate script


def test_translate_keeps_one_line_per_input_line(copy_run, tmp_path, caplog):
    controls = "a\x00b\x1bc\x7fd\x0be\x0cf\x1cg\x85h\u2028a\tb\rc"  # NUL, ESC, DEL, line breaks
    lines = ["a b c", "   ", "", controls, " ".join("abcdefgh" * 500), "\ufeffa b", "é ü 🙂"]
    src = tmp_path / "input.txt"
    src.write_bytes("".join(line + "\n" for line in lines).encode())
    out = tmp_path / "output.txt"
    ckpt = copy_run / "run/checkpoints/last.ckpt"
    with caplog.at_level(logging.WARNING):
        translate(["--ckpt", str(ckpt), "--input", str(src), "--output", str(out)])
    outputs = out.read_text(encoding="utf-8").split("\n")
    assert outputs.pop() == ""  # the file ends with a newline
    assert len(outputs) == len(lines)
    assert outputs[1] == outputs[2] == ""  # blank and empty lines give empty lines
    assert "input: truncated 1 source lines to max_len=250 tokens" in caplog.messages


def test_translate_invalid_utf8_names_the_line(copy_run, tmp_path):
    src = tmp_path / "input.txt"
    src.write_bytes(b"a b\nc \xff d\n")
    with pytest.raises(SystemExit, match=rf"s2s-translate: {src}:2: invalid UTF-8"):
        translate(["--ckpt", str(copy_run / "run/checkpoints/last.ckpt"), "--input", str(src)])


def test_translate_corrupt_gzip_names_the_file(copy_run, tmp_path):
    src = tmp_path / "input.txt.gz"
    write_corrupt_gzip(src, b"a b c\n" * 50)
    with pytest.raises(SystemExit) as exit_info:
        translate(["--ckpt", str(copy_run / "run/checkpoints/last.ckpt"), "--input", str(src)])
    assert exit_info.value.code == (
        f"s2s-translate: {src}: cannot read (Error -3 while decompressing data: invalid block type)"
    )
