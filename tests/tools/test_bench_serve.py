"""``tools/bench_serve.py`` on the copy-task translator: every answer arrives and equals
``s2s-translate``'s, whatever the batch size."""

import re

from tiny import load_tool, write_lines

bench_serve = load_tool("bench_serve")


def test_every_answer_equals_s2s_translate(copy_run, tmp_path, capsys):
    source = write_lines(tmp_path / "src.txt", ["a b c d", "e f g h", "b a", "c c d e f"])
    ckpt = copy_run / "run" / "checkpoints" / "last.ckpt"
    bench_serve.main(
        [
            "--ckpt",
            str(ckpt),
            "--input",
            str(source),
            "--clients",
            "4",
            "--requests",
            "12",
            "--max-batch-size",
            "1",
            "4",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("max_batch_size=")]
    assert [re.search(r"wrong=(\d+) lost=(\d+)", row).groups() for row in rows] == [("0", "0")] * 2
    assert re.fullmatch(r"batched_speedup=\d+\.\d\d", lines[-1])
