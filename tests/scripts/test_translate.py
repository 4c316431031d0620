import os
import queue
import subprocess
import sys
import threading

import pytest
import torch
from PIL import Image
from sentencepiece import sentencepiece_model_pb2
from tiny import subprocess_env

from s2s import decoding
from s2s.checkpoint import load_model
from s2s.data import make_batches
from s2s.decoding import beam_search
from s2s.scripts.translate import main

LINES = ["a b c", "", "h g f e d", "b", "c a c a g h"]


@pytest.fixture(scope="module")
def ckpt(copy_run):
    return copy_run / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    return path


def translate(tmp_path, *args: str) -> list[str]:
    out = tmp_path / "output.txt"
    main([*args, "--output", str(out)])
    return out.read_text(encoding="utf-8").split("\n")[:-1]


def python_translation(model, line: str) -> str:
    """The 1-best of the model's own search settings, decoding ``line`` alone."""
    src_tok, tgt_tok = model.tokenizers["src"], model.tokenizers["tgt"]
    (batch,) = make_batches([line], src_tok, max_tokens=1000, max_len=250)
    return tgt_tok.decode(beam_search(model, batch, model.search)[0][0].tokens)


def test_output_equals_python_decoding(tmp_path, ckpt, input_file):
    outputs = translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file))
    assert len(outputs) == len(LINES)
    assert outputs[1] == ""  # an empty line gives an empty line
    model = load_model(ckpt)
    expected = [python_translation(model, line) if line else "" for line in LINES]
    assert outputs == expected
    assert any(out == line for out, line in zip(outputs, LINES, strict=True) if line)  # it copies


def test_stdin_to_stdout(ckpt, input_file, tmp_path, monkeypatch, capsys):
    with input_file.open(encoding="utf-8") as stdin:  # stdin is read by its file descriptor
        monkeypatch.setattr(sys, "stdin", stdin)
        main(["--ckpt", str(ckpt)])
    from_files = translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file))
    assert capsys.readouterr().out == "".join(line + "\n" for line in from_files)


def test_stdin_is_answered_line_by_line(ckpt, tmp_path):
    """Each line fed alone is answered before the next one is sent (a hang fails in 60 s)."""
    model = load_model(ckpt)
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s2s.scripts.translate", "--ckpt", str(ckpt)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=subprocess_env(),
            text=True,
        )
    answers: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: list(map(answers.put, proc.stdout)), daemon=True)
    reader.start()  # the answers, as they come
    try:
        for line in ["a b c", "h g f e d", ""]:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            expected = python_translation(model, line) if line else ""
            try:
                assert answers.get(timeout=60) == expected + "\n"
            except queue.Empty:
                pytest.fail(f"no answer to {line!r} in 60 s; stderr:\n{stderr.read_text()[-3000:]}")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        assert answers.empty()
    finally:
        proc.kill()


def test_stdin_available_at_once_is_batched(ckpt, tmp_path, monkeypatch):
    """Lines already in a pipe are decoded together, not one by one."""
    read, write = os.pipe()
    os.write(write, b"a b c\n" * 6)
    os.close(write)
    sizes = []

    def recording_beam_search(model, batch, search):
        sizes.append(len(batch.indices))
        return beam_search(model, batch, search)

    monkeypatch.setattr(decoding, "beam_search", recording_beam_search)
    with os.fdopen(read, encoding="utf-8") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        outputs = translate(tmp_path, "--ckpt", str(ckpt))
    assert sizes == [6]
    assert len(outputs) == 6


def test_n_best(tmp_path, ckpt, input_file):
    best = translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file))
    two = translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file), "--n-best", "2")
    assert len(two) == 2 * len(LINES)
    assert two[::2] == best
    assert two[2:4] == ["", ""]
    assert all(a != b for a, b, line in zip(two[::2], two[1::2], LINES, strict=True) if line)


def test_options_from_a_config_file(tmp_path, ckpt, input_file, capsys):
    """``--config`` reads the same options from YAML (underscored keys); the command line after
    it wins, and ``--print_config`` shows the options in that form."""
    flags = translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file), "--n-best", "2")
    config = tmp_path / "decode.yaml"
    config.write_text(f"ckpt: [{ckpt}]\ninput: {input_file}\nn_best: 3\nprint_scores: true\n")
    assert len(translate(tmp_path, "--config", str(config))) == 3 * len(LINES)
    scored = translate(tmp_path, "--config", str(config), "--n-best", "2")
    assert [line.split("\t")[-1] for line in scored] == flags
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--print_config"])
    printed = capsys.readouterr().out
    assert "n_best: 3" in printed and "print_scores: true" in printed


def test_max_len_limits_outputs(tmp_path, ckpt, input_file):
    outputs = translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file), "--max-len", "2")
    assert len(outputs) == len(LINES)
    assert max(len(out.split()) for out in outputs) <= 2  # one subword per symbol
    assert max(len(out.split()) for out in outputs) == 2


def test_sampling_is_seeded(tmp_path, ckpt, input_file):
    args = ["--ckpt", str(ckpt), "--input", str(input_file), "--sample", "--temperature", "3"]
    first = translate(tmp_path, *args, "--seed", "1")
    assert len(first) == len(LINES) and first[1] == ""
    assert translate(tmp_path, *args, "--seed", "1") == first


def test_attention_pictures(tmp_path, ckpt, input_file):
    pictures = tmp_path / "attention"
    translate(
        tmp_path, "--ckpt", str(ckpt), "--input", str(input_file), "--attention-png", str(pictures)
    )
    # One picture per sentence, named by line number; the empty line has none.
    assert sorted(p.name for p in pictures.iterdir()) == [
        "00001.png",
        "00003.png",
        "00004.png",
        "00005.png",
    ]
    # The picture grows with the sentence: one column per source token, one row per output token.
    (long_w, long_h), (short_w, short_h) = (
        Image.open(pictures / name).size for name in ("00005.png", "00004.png")
    )
    assert long_w > short_w and long_h > short_h


def test_bf16_loads_bfloat16_weights_and_translates_alike(tmp_path, ckpt, input_file):
    assert {p.dtype for p in load_model(ckpt, dtype=torch.bfloat16).parameters()} == {
        torch.bfloat16
    }
    args = ["--ckpt", str(ckpt), "--input", str(input_file)]
    pictures = tmp_path / "attention"
    bf16 = translate(tmp_path, *args, "--bf16", "--attention-png", str(pictures))
    # The tiny model is confident: bfloat16 rounding changes nothing.
    assert bf16 == translate(tmp_path, *args)
    assert len(list(pictures.iterdir())) == 4


def bad_checkpoints(tmp_path, ckpt):
    data = ckpt.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.ckpt", "not a readable checkpoint"),
        ("text.ckpt", "not a readable checkpoint"),
        ("foreign.ckpt", "not an s2s checkpoint"),
        ("missing.ckpt", "no such checkpoint"),
    ],
)
def test_bad_checkpoint_is_a_clear_error(tmp_path, ckpt, input_file, name, message):
    bad_checkpoints(tmp_path, ckpt)
    path = tmp_path / name
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(path), "--input", str(input_file)])
    assert str(exit_info.value.code).startswith(f"s2s-translate: {path}: {message}")


def test_missing_input_is_a_clear_error(tmp_path, ckpt):
    with pytest.raises(SystemExit, match=f"s2s-translate: {tmp_path}/nope.txt: no such file"):
        main(["--ckpt", str(ckpt), "--input", str(tmp_path / "nope.txt")])


def test_generated_line_breaks_stay_on_one_line(ckpt):
    """Byte-fallback pieces can spell a line break; an output must still be one line."""
    tok = load_model(ckpt).tokenizers["tgt"]
    ids = [*tok.encode("a b"), tok._sp.piece_to_id("<0x0A>"), tok._sp.piece_to_id("<0x0D>")]
    ids += tok.encode("c")
    text = tok.decode(ids)
    assert text.splitlines() == [text] and text.split() == ["a", "b", "c"]


def test_missing_output_folder_fails_before_decoding(tmp_path, ckpt, input_file, monkeypatch):
    monkeypatch.setattr(decoding, "beam_search", None)  # decoding would crash
    out = tmp_path / "missing" / "out.txt"
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", str(ckpt), "--input", str(input_file), "--output", str(out)])
    assert exit_info.value.code == (
        f"s2s-translate: {out}: cannot write output (No such file or directory)"
    )


def test_a_killed_run_keeps_the_lines_translated(tmp_path, ckpt, monkeypatch):
    """Outputs are written and flushed batch by batch, in input order."""
    src = tmp_path / "input.txt"
    src.write_text("a b c\n" * 12, encoding="utf-8")  # equal lengths: batches in input order
    calls = []

    def beam_search_then_kill(model, batch, search):
        calls.append(batch.indices.tolist())
        if len(calls) == 3:
            raise KeyboardInterrupt
        return beam_search(model, batch, search)

    monkeypatch.setattr(decoding, "beam_search", beam_search_then_kill)
    out = tmp_path / "output.txt"
    with pytest.raises(KeyboardInterrupt):
        main(["--ckpt", str(ckpt), "--input", str(src), "--output", str(out), "--max-tokens", "16"])
    assert calls[:2] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert out.read_text(encoding="utf-8").split("\n") == ["a b c"] * 8 + [""]


def test_sampling_keeps_the_recipes_constraints(tmp_path, ckpt, input_file, monkeypatch):
    """``--sample`` obeys the checkpoint's min_len and n-gram blocking, as beam search does."""
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["search"].update(min_len=9, no_repeat_ngram_size=1, max_len_b=20)
    constrained = tmp_path / "constrained.ckpt"
    torch.save(state, constrained)
    sampled, real_sample = [], decoding.sample

    def recording_sample(model, batch, config):
        hyps = real_sample(model, batch, config)
        sampled.extend(hyp.tokens for hyp in hyps)
        return hyps

    monkeypatch.setattr(decoding, "sample", recording_sample)
    args = [
        "--ckpt",
        str(constrained),
        "--input",
        str(input_file),
        "--sample",
        "--temperature",
        "3",
    ]
    translate(tmp_path, *args)
    assert len(sampled) == len(LINES)
    assert all(len(tokens) >= 9 and len(set(tokens)) == len(tokens) for tokens in sampled)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--beam", "2", "--n-best", "3"], "--n-best 3 exceeds --beam 2"),
        (["--length-penalty", "-1"], "length_penalty must be >= 0, got -1.0"),
        (["--sample", "--top-p", "0"], r"top_p must be in \(0, 1\], got 0.0"),
    ],
)
def test_bad_decoding_options_are_one_line(tmp_path, ckpt, input_file, args, message):
    with pytest.raises(SystemExit, match=f"^s2s-translate: {message}$"):
        translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file), *args)


def test_an_ensemble_of_two_copies_translates_as_the_model(tmp_path, ckpt, input_file, monkeypatch):
    alone = translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file), "--n-best", "2")
    decoders, real_beam_search = [], decoding.beam_search

    def recording_beam_search(decoder, batch, config):
        decoders.append(decoder)
        return real_beam_search(decoder, batch, config)

    monkeypatch.setattr(decoding, "beam_search", recording_beam_search)
    twice = ["--ckpt", str(ckpt), "--ckpt", str(ckpt), "--input", str(input_file), "--n-best", "2"]
    assert translate(tmp_path, *twice) == alone
    assert {len(decoder.members) for decoder in decoders} == {2}  # decoded as an ensemble


def test_an_ensemble_needs_one_vocabulary(tmp_path, ckpt, input_file):
    state = torch.load(ckpt, weights_only=True)
    proto = sentencepiece_model_pb2.ModelProto.FromString(state["tokenizers"]["tgt"])
    proto.pieces[10].score -= 1.0  # another vocabulary's segmentation
    state["tokenizers"]["tgt"] = proto.SerializeToString()
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    message = f"^s2s-translate: {other} and {ckpt}: different vocabularies, cannot ensemble$"
    with pytest.raises(SystemExit, match=message):
        translate(tmp_path, "--ckpt", str(ckpt), "--ckpt", str(other), "--input", str(input_file))


def scored(tmp_path, ckpts: list[str], input_file, references: list[str]) -> list[str]:
    """``--score`` output for ``references`` (one per line of ``input_file``)."""
    refs = tmp_path / "references.txt"
    refs.write_text("".join(ref + "\n" for ref in references), encoding="utf-8")
    ckpt_args = [arg for ckpt in ckpts for arg in ("--ckpt", ckpt)]
    return translate(tmp_path, *ckpt_args, "--input", str(input_file), "--score", str(refs))


@pytest.mark.parametrize("copies", [1, 2], ids=["model", "ensemble"])
def test_a_beam_output_scores_the_beams_score(tmp_path, ckpt, input_file, copies):
    """``--n-best 2 --print-scores`` hypotheses forced back through ``--score`` get their scores."""
    ckpts = [str(ckpt)] * copies
    ckpt_args = [arg for c in ckpts for arg in ("--ckpt", c)]
    args = [*ckpt_args, "--input", str(input_file), "--n-best", "2"]
    nbest = translate(tmp_path, *args, "--print-scores")
    assert [line.split("\t")[-1] for line in nbest] == translate(tmp_path, *args)
    tgt_tok = load_model(ckpt).tokenizers["tgt"]
    for rank in range(2):
        hyps = [line.split("\t") if line else None for line in nbest[rank::2]]
        outputs = scored(tmp_path, ckpts, input_file, [hyp[2] if hyp else "" for hyp in hyps])
        assert len(outputs) == len(LINES) and outputs[1] == ""  # the empty line is not scored
        for hyp, output in zip(hyps, outputs, strict=True):
            if hyp is None:
                continue
            total, per_token = output.split("\t")
            token_scores = [float(lp) for lp in per_token.split()]
            assert float(total) == pytest.approx(float(hyp[0]), abs=1e-4)
            assert sum(token_scores) == pytest.approx(float(total), abs=1e-4)
            assert len(token_scores) == len(tgt_tok.encode(hyp[2])) + 1  # EOS last


def test_score_needs_one_reference_per_input_line(tmp_path, ckpt, input_file):
    refs = tmp_path / "references.txt"
    refs.write_text("a b c\n" * (len(LINES) - 1), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        translate(tmp_path, "--ckpt", str(ckpt), "--input", str(input_file), "--score", str(refs))
    assert exit_info.value.code == (
        f"s2s-translate: {input_file} has {len(LINES)} lines but {refs} has {len(LINES) - 1}"
    )


@pytest.mark.parametrize(
    "option", [["--sample"], ["--beam", "2"], ["--length-penalty", "1"], ["--max-len", "5"]]
)
def test_score_does_not_combine_with_search_options(tmp_path, ckpt, input_file, option):
    """Forced decoding searches nothing: a search option would be silently ignored."""
    args = ["--ckpt", str(ckpt), "--input", str(input_file), "--score", str(input_file)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *option])
    assert exit_info.value.code == f"s2s-translate: --score does not combine with {option[0]}"


def test_sampling_n_best_writes_n_different_samples_per_line(tmp_path, ckpt, input_file):
    args = ["--ckpt", str(ckpt), "--input", str(input_file), "--sample", "--temperature", "3"]
    samples = translate(tmp_path, *args, "--n-best", "4", "--seed", "1")
    assert len(samples) == 4 * len(LINES)
    assert samples[4:8] == [""] * 4
    per_line = [samples[4 * i : 4 * i + 4] for i, line in enumerate(LINES) if line]
    assert all(len(set(four)) > 1 for four in per_line)
    assert translate(tmp_path, *args, "--n-best", "4", "--seed", "1") == samples
