"""The LSTM under CPU bfloat16 autocast: both kinds of CPU are exercised on any machine by
simulating oneDNN's capability check (``s2s.nn.rnn.cpu_has_bf16_kernels``)."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from s2s.nn import rnn
from s2s.nn.rnn import FLOAT32_FALLBACK_WARNING, make_rnn


@pytest.fixture
def lstm() -> nn.LSTM:
    torch.manual_seed(0)
    return make_rnn("lstm", 6, 8, num_layers=2, dropout=0.0, bidirectional=True)


def inputs() -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(1)
    x = torch.randn(3, 5, 6, requires_grad=True)
    hx = (torch.randn(4, 3, 8).bfloat16(), torch.randn(4, 3, 8).bfloat16())  # as autocast makes
    return x, hx


@pytest.mark.parametrize("packed", [False, True])
def test_lstm_without_bf16_kernels_runs_float32_outside_autocast(lstm, monkeypatch, packed):
    monkeypatch.setattr(rnn, "cpu_has_bf16_kernels", lambda: False)
    x, hx = inputs()
    seq = pack_padded_sequence(x, torch.tensor([5, 3, 2]), batch_first=True) if packed else x
    warns = pytest.warns(UserWarning, match="no bfloat16 LSTM kernels")
    with warns, torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = lstm(seq, hx)
    expected, (h32, c32) = nn.LSTM.forward(lstm, seq, tuple(t.float() for t in hx))
    out, expected = (out.data, expected.data) if packed else (out, expected)
    assert out.dtype == h.dtype == torch.float32
    assert torch.equal(out, expected) and torch.equal(h, h32) and torch.equal(c, c32)
    out.sum().backward()
    assert lstm.weight_ih_l1_reverse.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_lstm_with_bf16_kernels_is_left_to_autocast(lstm, monkeypatch):
    """Where oneDNN has bfloat16 kernels, s2s's LSTM is plain ``nn.LSTM`` under autocast (the
    call itself is recorded, not run: on a CPU without the kernels it would crash)."""
    monkeypatch.setattr(rnn, "cpu_has_bf16_kernels", lambda: True)
    seen = []
    monkeypatch.setattr(
        nn.LSTM,
        "forward",
        lambda self, x, hx=None: seen.append((torch.is_autocast_enabled("cpu"), x.dtype, hx)),
    )
    x, hx = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lstm(x, hx)
    assert seen == [(True, torch.float32, hx)]


@pytest.mark.parametrize("kernels", [False, True])
def test_lstm_outside_bf16_autocast_is_plain(lstm, monkeypatch, kernels, recwarn):
    monkeypatch.setattr(rnn, "cpu_has_bf16_kernels", lambda: kernels)
    x, _ = inputs()
    out, _ = lstm(x)
    assert torch.equal(out, nn.LSTM.forward(lstm, x)[0])
    with torch.autocast("cpu", dtype=torch.float16):  # only bfloat16 autocast is redirected
        assert not rnn.lstm_needs_float32(x.device)
    assert not [w for w in recwarn if FLOAT32_FALLBACK_WARNING in str(w.message)]
