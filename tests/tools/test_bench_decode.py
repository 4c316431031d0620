import re

from tiny import load_tool

tool = load_tool("bench_decode")


def test_bench_decode_reference_agrees_and_ratios_are_reported(copy_run, capsys):
    """On the copy-task checkpoint: the reference finds the batched search's hypotheses, and the
    two ratios the tool exists for are its last lines, as positive numbers."""
    ckpt = copy_run / "run" / "checkpoints" / "last.ckpt"
    tool.main(["--ckpt", str(ckpt), "--beam", "3", "--ref-sentences", "4", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "reference and batched beam search agree on 4/4 subset sentences" in lines
    speedup = re.fullmatch(r"beam3_speedup_vs_reference=([\d.]+)", lines[-2])
    cost = re.fullmatch(r"beam3_cost_vs_greedy=([\d.]+)", lines[-1])
    assert speedup and cost
    assert float(speedup[1]) > 0 and float(cost[1]) > 0
