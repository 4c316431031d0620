"""Recurrent cell choice shared by encoders and decoders; the one place that keeps the LSTM
working under CPU bfloat16 autocast on CPUs without bfloat16 kernels."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

CellType = Literal["lstm", "gru", "rnn"]
RNNState = Tensor | tuple[Tensor, Tensor]  # (layers, N, H), or (h, c) for LSTM

FLOAT32_FALLBACK_WARNING = (
    "this CPU has no bfloat16 LSTM kernels (oneDNN needs AVX512-BF16 or AMX): under bf16-mixed "
    "the LSTM layers run in float32, the other layers in emulated bfloat16, slower than 32-true"
)


def cpu_has_bf16_kernels() -> bool:
    """Whether oneDNN has bfloat16 kernels on this CPU (AVX512-BF16 or AMX). Without them an
    ``nn.LSTM`` under CPU bfloat16 autocast fails deep in oneDNN ("could not create a primitive
    descriptor for the LSTM forward propagation primitive"); GRU and RNN layers run."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def lstm_needs_float32(device: torch.device) -> bool:
    """True when an LSTM on ``device`` runs under CPU bfloat16 autocast (Lightning's
    ``bf16-mixed``) on a CPU without bfloat16 kernels: it must leave autocast."""
    return (
        device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not cpu_has_bf16_kernels()
    )


def _float32(x: Any) -> Any:
    """``x`` (a tensor, a packed sequence, an (h, c) pair or None) in float32."""
    if x is None:
        return None
    if isinstance(x, PackedSequence):
        return x._replace(data=x.data.float())
    if isinstance(x, tuple):
        return tuple(t.float() for t in x)
    return x.float()


class LSTM(nn.LSTM):
    """``nn.LSTM`` that runs in float32 outside autocast, with one warning, where CPU bfloat16
    autocast would crash it (see :func:`lstm_needs_float32`); elsewhere exactly ``nn.LSTM``."""

    def forward(self, input: Any, hx: Any = None) -> Any:
        data = input.data if isinstance(input, PackedSequence) else input
        if not lstm_needs_float32(data.device):
            return super().forward(input, hx)
        rank_zero_warn(FLOAT32_FALLBACK_WARNING)  # once: repeats are filtered by location
        with torch.autocast("cpu", enabled=False):
            return super().forward(_float32(input), _float32(hx))


_CELLS = {"lstm": LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def make_rnn(
    cell: CellType,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    bidirectional: bool = False,
) -> nn.RNNBase:
    """A batch-first multi-layer RNN; ``dropout`` applies between layers."""
    if cell not in _CELLS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {sorted(_CELLS)}")
    return _CELLS[cell](
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=dropout if num_layers > 1 else 0.0,
        bidirectional=bidirectional,
        batch_first=True,
    )


def select_state(state: RNNState, index: Tensor) -> RNNState:
    """Rows ``index`` of a recurrent state (batch is dim 1)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)  # type: ignore[return-value]
    return state.index_select(1, index)
