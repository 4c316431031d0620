import pytest
import torch

from s2s.decoding.interface import Layout
from s2s.nn.decoder import DecoderConfig, RNNDecoder
from s2s.nn.encoder import EncoderOutput

VOCAB = 11


def decoder(cell="lstm", attention="bahdanau", **kwargs) -> RNNDecoder:
    torch.manual_seed(0)
    options = dict(cell=cell, num_layers=2, attention=attention, dropout=0.0)
    return RNNDecoder(VOCAB, 6, DecoderConfig(6, 6, **{**options, **kwargs})).eval()


def encoder_output() -> EncoderOutput:
    torch.manual_seed(1)
    mask = torch.arange(4) < torch.tensor([[4], [2], [1]])
    memory = torch.randn(3, 4, 6) * mask[..., None]
    return EncoderOutput(memory=memory, mask=mask, summary=torch.randn(3, 6))


TGT_IN = torch.tensor([[2, 4, 5, 6], [2, 7, 8, 9], [2, 10, 4, 4]])  # (B, T) BOS first


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong_dot", "luong_general"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_steps_equal_teacher_forcing(cell, attention):
    """Decoding one token at a time gives the log-probabilities of the teacher-forced pass."""
    dec = decoder(cell, attention)
    enc = encoder_output()
    with torch.no_grad():
        logits = dec(TGT_IN, dec.init_state(enc))  # (B, T, V)
        state = dec.init_state(enc)
        for t in range(TGT_IN.size(1)):
            log_probs, state, _ = dec.step(TGT_IN[:, t], state)
            torch.testing.assert_close(log_probs, logits[:, t].log_softmax(-1))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_selected_rows_continue_like_the_originals(cell):
    dec = decoder(cell)
    with torch.no_grad():
        state = dec.init_state(encoder_output())
        state = dec.step(torch.tensor([2, 2, 2]), state).state
        index = torch.tensor([2, 0, 0])
        picked = dec.step(torch.tensor([6, 4, 4]), state.select(index))
        whole = dec.step(torch.tensor([4, 5, 6]), state)
    torch.testing.assert_close(picked.log_probs, whole.log_probs[[2, 0, 0]])
    torch.testing.assert_close(picked.attention, whole.attention[[2, 0, 0]])


@pytest.mark.parametrize("attention", ["bahdanau", "luong_general"])
def test_grouped_rows_share_memory_and_step_like_rows_with_their_own(attention):
    """Beam search's layout (beams of a source together, a source dropped) keeps one memory entry
    per source and decodes exactly as the per-row layout does."""
    dec = decoder("lstm", attention)
    with torch.no_grad():
        start = dec.init_state(encoder_output())
        expand = torch.arange(3).repeat_interleave(2)  # two beams per source
        grouped = start.select(expand, Layout(2))
        plain = start.select(expand)
        assert (grouped.memory.size(0), grouped.group) == (3, 2)
        assert (plain.memory.size(0), plain.group) == (6, 1)
        g = dec.step(torch.tensor([4, 5, 6, 7, 8, 9]), grouped)
        p = dec.step(torch.tensor([4, 5, 6, 7, 8, 9]), plain)
        torch.testing.assert_close(g.log_probs, p.log_probs)
        rows = torch.tensor([5, 4, 1, 1])  # source 2's beams swapped, source 1 dropped
        grouped = g.state.select(rows, Layout(2, torch.tensor([2, 0])))
        plain = p.state.select(rows)
        assert grouped.memory.size(0) == 2
        torch.testing.assert_close(grouped.memory[0], start.memory[2])
        g = dec.step(torch.tensor([4, 6, 8, 9]), grouped)
        p = dec.step(torch.tensor([4, 6, 8, 9]), plain)
        torch.testing.assert_close(g.log_probs, p.log_probs)
        torch.testing.assert_close(g.attention, p.attention)


def test_a_layout_that_does_not_fit_the_rows_is_refused():
    state = decoder().init_state(encoder_output())  # 3 sources
    with pytest.raises(ValueError, match="5 rows cannot be 3 sources x 2 rows each"):
        state.select(torch.tensor([0, 0, 1, 1, 2]), Layout(2))
    with pytest.raises(ValueError, match="4 rows cannot be 1 sources x 2 rows each"):
        state.select(torch.tensor([0, 0, 1, 1]), Layout(2, torch.tensor([0])))


def test_teacher_forcing_ratio_below_one_feeds_own_predictions():
    dec = decoder()
    enc = encoder_output()
    with torch.no_grad():
        forced = dec(TGT_IN, dec.init_state(enc), teacher_forcing_ratio=1.0)
        torch.manual_seed(0)
        own = dec(TGT_IN, dec.init_state(enc), teacher_forcing_ratio=1e-9)
    torch.testing.assert_close(own[:, 0], forced[:, 0])  # BOS is always read
    assert not torch.allclose(own[:, 1:], forced[:, 1:])
    # Always reading its own argmax is greedy decoding's teacher-forced pass.
    greedy_in = torch.cat([TGT_IN[:, :1], own.argmax(-1)[:, :-1]], 1)
    torch.testing.assert_close(own, dec(greedy_in, dec.init_state(enc)).detach())


def test_tie_embeddings_shares_the_weight():
    tied = decoder(tie_embeddings=True)
    assert tied.output.weight is tied.embedding.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in decoder().parameters()) - n_tied == VOCAB * 6


def test_tie_embeddings_size_mismatch_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"tie_embeddings.*embedding_size \(6\).*hidden_size \(8\)"
    ):
        DecoderConfig(embedding_size=6, hidden_size=8, tie_embeddings=True)
