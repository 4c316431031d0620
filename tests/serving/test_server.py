"""``s2s serve`` as a client sees it: a real server process on a free loopback port, stopped in
bounded time; its answers equal the console scripts' for the same checkpoints."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from tiny import SCENES, subprocess_env, write_lines

from s2s.scripts.caption import main as caption
from s2s.scripts.sample import main as sample
from s2s.scripts.translate import main as translate

SENTENCES = ["a b c d", "e f g", "", "h i j k l", "b a"]


def test_translations_equal_s2s_translate(server, copy_run, tmp_path, capsys):
    ckpt = copy_run / "run" / "checkpoints" / "last.ckpt"
    source = write_lines(tmp_path / "src.txt", SENTENCES)
    translate(
        [
            "--ckpt",
            str(ckpt),
            "--input",
            str(source),
            "--n-best",
            "2",
            "--beam",
            "3",
            "--print-scores",
        ]
    )
    expected = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    status, answer = server.post("/translate", {"text": SENTENCES, "beam": 3, "n_best": 2})
    assert status == 200
    got = [h for nbest in answer["translations"] for h in nbest]
    assert len(got) == len(expected) == 2 * len(SENTENCES)
    for hyp, line in zip(got, expected, strict=True):
        if line == [""]:  # an empty input line: empty text, as the script prints
            assert hyp["text"] == ""
            continue
        score, normalized, text = line
        assert hyp["text"] == text
        assert hyp["score"] == pytest.approx(float(score), abs=1e-5)
        assert hyp["normalized_score"] == pytest.approx(float(normalized), abs=1e-5)


def test_concurrent_requests_each_get_their_own_answers(server):
    """16 clients at once, with different sentences and options, batched by the server: each
    answer equals the one the same request gets alone."""
    requests = [
        {"text": SENTENCES[i % 5 :] + SENTENCES[: i % 3], "beam": 1 + i % 3} for i in range(16)
    ]
    alone = [server.post("/translate", r) for r in requests[:6]]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda r: server.post("/translate", r), requests))
    assert all(status == 200 for status, _ in together)
    for (_, batched), (_, single) in zip(together[:6], alone, strict=True):
        assert texts(batched) == texts(single)
        assert scores(batched) == pytest.approx(scores(single), abs=1e-4)  # batch shapes differ
    for (_, answer), request in zip(together, requests, strict=True):
        assert len(answer["translations"]) == len(request["text"])


def texts(answer: dict) -> list[list[str]]:
    return [[h["text"] for h in nbest] for nbest in answer["translations"]]


def scores(answer: dict) -> list[float]:
    return [h["score"] for nbest in answer["translations"] for h in nbest]


def test_a_bad_request_among_good_ones_fails_alone(server):
    good = {"text": ["a b c"]}
    bodies = [good, {"text": ["a b c"], "beam": 0}] * 6
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: server.post("/translate", b), bodies))
    assert [status for status, _ in answers] == [200, 400] * 6
    assert all(texts(a) == texts(answers[0][1]) for _, a in answers[::2])


@pytest.mark.parametrize(
    "path, body, error",
    [
        ("/translate", b"{not json", "not valid JSON"),
        ("/translate", b'{"text": ["\xff\xfe"]}', "error parsing the body"),
        ("/translate", b"[1, 2]", "must be a JSON object"),
        ("/translate", {}, '"text" must be a non-empty list'),
        ("/translate", {"text": []}, '"text" must be a non-empty list'),
        ("/translate", {"text": "a b"}, '"text" must be a non-empty list'),
        ("/translate", {"text": ["a"] * 9}, '"text" has 9 sentences; at most 8'),
        ("/translate", {"text": ["a" * 2001]}, '"text"[0] has 2001 characters; at most 2000'),
        ("/translate", {"text": [3]}, '"text"[0] must be a string'),
        ("/translate", {"text": ["\ud800"]}, '"text"[0] is not valid Unicode'),
        ("/translate", {"text": ["a"], "beam": 17}, '"beam" must be an integer in [1, 16]'),
        ("/translate", {"text": ["a"], "beam": 2, "n_best": 3}, '"n_best" must be an integer'),
        ("/translate", {"text": ["a"], "beam": "2"}, '"beam" must be an integer'),
        ("/translate", {"text": ["a"], "beam": True}, '"beam" must be an integer'),
        ("/translate", {"text": ["a"], "max_len": 0}, '"max_len" must be an integer'),
        ("/translate", {"text": ["a"], "length_penalty": -1}, '"length_penalty" must be a number'),
        ("/translate", {"text": ["a"], "lang": "de"}, 'unknown field "lang"'),
        ("/caption", {}, '"image" must be a base64-encoded image file'),
        ("/caption", {"image": "%%%"}, '"image" is not valid base64'),
        ("/caption", {"image": base64.b64encode(b"GIF89a broken").decode()}, "cannot be decoded"),
        ("/caption", {"image": "", "attention": 1}, '"attention" must be true or false'),
        ("/sample", {"prompt": 5}, '"prompt" must be a string'),
        ("/sample", {"temperature": 0}, '"temperature" must be a number'),
        ("/sample", {"num_samples": 100}, '"num_samples" must be an integer in [1, 16]'),
        ("/nowhere", {}, "Not Found"),
    ],
)
def test_bad_requests_get_a_one_line_4xx(server, path, body, error):
    status, answer = server.post(path, body)
    assert 400 <= status < 500
    assert error in answer["error"]
    assert "\n" not in answer["error"]


def test_a_body_larger_than_any_valid_request_is_413(server):
    status, answer = server.post("/caption", b" " * 15_000_000)  # > 10 MB of image as base64
    assert (status, answer) == (413, {"error": "Payload too large"})


def test_the_server_stays_healthy_after_bad_requests(server):
    server.post("/translate", b"\x00" * 100)
    server.post("/caption", {"image": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 50).decode()})
    assert server.healthy()
    assert server.post("/translate", {"text": ["a b"]})[0] == 200


def test_captions_equal_s2s_caption_with_attention(server, caption_run, capsys):
    images, ckpt = caption_run
    paths = [images / name for name in sorted(SCENES)]
    caption(["--ckpt", str(ckpt), *map(str, paths)])
    expected = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    for path, text in zip(paths, expected, strict=True):
        image = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        status, answer = server.post("/caption", {"image": image, "attention": True})
        assert status == 200
        assert answer["captions"][0]["text"] == text
        attention = answer["attention"]
        rows, cols = attention["grid"]
        assert len(attention["weights"]) == len(attention["words"]) == len(text.split()) + 1
        assert all(
            len(w) == rows * cols and sum(w) == pytest.approx(1, abs=1e-3)
            for w in attention["weights"]
        )


def test_samples_equal_s2s_sample(server, lm_ckpt, capsys):
    sample(
        [
            "--ckpt",
            str(lm_ckpt),
            "--prompt",
            "the",
            "--num-samples",
            "3",
            "--seed",
            "7",
            "--max-len",
            "20",
        ]
    )
    expected = capsys.readouterr().out.splitlines()
    body = {"prompt": "the", "num_samples": 3, "seed": 7, "max_len": 20}
    assert server.post("/sample", body) == (200, {"samples": expected})


def test_the_page_lists_this_servers_endpoints(server):
    with urllib.request.urlopen(server.url + "/", timeout=10) as r:
        page = r.read().decode()
    assert 'const ENDPOINTS = ["/translate", "/caption", "/sample"];' in page


def test_an_unreadable_checkpoint_is_one_line(copy_run, tmp_path):
    translator = str(copy_run / "run" / "checkpoints" / "last.ckpt")
    result = subprocess.run(
        [sys.executable, "-m", "s2s.cli", "serve", "--ckpt", translator, "--ckpt", str(tmp_path)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("s2s serve: ")
