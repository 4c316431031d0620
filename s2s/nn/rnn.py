"""Recurrent cell choice shared by encoders and decoders."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

CellType = Literal["lstm", "gru", "rnn"]
RNNState = Tensor | tuple[Tensor, Tensor]  # (layers, N, H), or (h, c) for LSTM

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


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
