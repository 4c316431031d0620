import re

from tiny import load_tool

tool = load_tool("bench_decode")


def test_bench_decode_reports_ratios_within_their_bounds(copy_run, capsys):
    """On the copy-task checkpoint: the reference finds the batched search's hypotheses, and the
    measured ratios lie on the right side of the bounds computed from the model calls alone."""
    ckpt = copy_run / "run" / "checkpoints" / "last.ckpt"
    tool.main(["--ckpt", str(ckpt), "--beam", "3", "--ref-sentences", "4", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "reference and batched beam search agree on 4/4 subset sentences" in lines
    bounds = re.fullmatch(
        r"with beam 3 batched's bookkeeping free \(its model calls only\): "
        r"beam3_speedup_vs_reference <= ([\d.]+), beam3_cost_vs_greedy >= ([\d.]+)",
        lines[-3],
    )
    speedup = re.fullmatch(r"beam3_speedup_vs_reference=([\d.]+)", lines[-2])
    cost = re.fullmatch(r"beam3_cost_vs_greedy=([\d.]+)", lines[-1])
    assert bounds and speedup and cost
    assert float(speedup[1]) <= float(bounds[1]) + 0.01  # printed to two decimals
    assert float(cost[1]) >= float(bounds[2]) - 0.01
