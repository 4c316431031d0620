import pytest
import torch

from s2s.nn.encoder import EncoderConfig, RNNEncoder
from s2s.nn.rnn import make_rnn

CELLS = ["lstm", "gru", "rnn"]
LENGTHS = torch.tensor([5, 2, 1])


def sources(width: int, pad: str) -> torch.Tensor:
    """Ids 4.. at real positions; padding of zeros or of random real ids (B, width)."""
    src = torch.randint(4, 20, (3, 8), generator=torch.Generator().manual_seed(1))[:, :width]
    real = torch.arange(width) < LENGTHS[:, None]
    return src.where(real, torch.zeros_like(src) if pad == "zeros" else src.flip(1))


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_padding_is_never_read(cell, bidirectional):
    torch.manual_seed(0)
    config = EncoderConfig(6, 5, cell, num_layers=2, bidirectional=bidirectional, dropout=0.0)
    encoder = RNNEncoder(20, config).eval()
    out = encoder(sources(5, "zeros"), LENGTHS)
    wide = encoder(sources(8, "random"), LENGTHS)  # other padding ids, 3 more columns
    assert out.memory.shape == (3, 5, encoder.output_size) and wide.memory.shape[1] == 8
    assert encoder.output_size == 5 * (2 if bidirectional else 1)
    torch.testing.assert_close(wide.memory[:, :5][out.mask], out.memory[out.mask])
    torch.testing.assert_close(wide.summary, out.summary)
    assert torch.equal(wide.mask[:, :5], out.mask) and not wide.mask[:, 5:].any()
    assert torch.all(wide.memory[~wide.mask] == 0)


@pytest.mark.parametrize("cell", CELLS)
def test_summary_is_the_last_layer_final_state(cell):
    """Forward direction: output at the last real position; backward: output at position 0."""
    torch.manual_seed(0)
    encoder = RNNEncoder(20, EncoderConfig(6, 5, cell, num_layers=2, dropout=0.0)).eval()
    out = encoder(sources(5, "zeros"), LENGTHS)
    last = out.memory[torch.arange(3), LENGTHS - 1, :5]
    first = out.memory[:, 0, 5:]
    torch.testing.assert_close(out.summary, torch.cat([last, first], -1))


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        make_rnn("transformer", 4, 4, 1, 0.0)
