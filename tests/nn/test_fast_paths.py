"""The teacher-forced fast paths of RNNDecoder against stepping it one token at a time."""

import pytest
import torch
import torch.nn.functional as F

from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderConfig, RNNDecoder
from s2s.nn.encoder import EncoderOutput
from s2s.tokenizer import PAD_ID

VOCAB, SIZE = 11, 6
TGT = torch.tensor([[2, 4, 5, 6, 7, 3], [2, 8, 9, 3, 0, 0], [2, 10, 3, 0, 0, 0]])  # BOS .. EOS PAD
TGT_IN, TARGET = TGT[:, :-1], TGT[:, 1:]


def decoder(cell: str, attention: str, input_feeding: bool) -> RNNDecoder:
    torch.manual_seed(0)
    config = DecoderConfig(SIZE, SIZE, cell, 2, attention, dropout=0.0, input_feeding=input_feeding)
    return RNNDecoder(VOCAB, SIZE, config)


def encoder_output() -> EncoderOutput:
    """A memory of 3 sources of lengths 4, 2 and 1, as leaves so their gradients can be compared."""
    torch.manual_seed(1)
    mask = torch.arange(4) < torch.tensor([[4], [2], [1]])
    memory = (torch.randn(3, 4, SIZE) * mask[..., None]).requires_grad_()
    return EncoderOutput(memory=memory, mask=mask, summary=torch.randn(3, SIZE, requires_grad=True))


def loss_and_grads(dec: RNNDecoder, teacher_forced: bool):
    """Mean target NLL, attention (B, T, S) or None, and the gradients of every parameter and
    input: from the teacher-forced forward, or from ``step`` token by token."""
    enc = encoder_output()
    state = dec.init_state(enc)
    if teacher_forced:
        logits, attention = dec.forward_with_attention(TGT_IN, state)
        log_probs = logits.log_softmax(-1)
    else:
        steps = []
        for tokens in TGT_IN.unbind(1):
            step = dec.step(tokens, state)
            state = step.state
            steps.append(step)
        log_probs = torch.stack([s.log_probs for s in steps], 1)  # (B, T, V)
        attention = None if dec.attention is None else torch.stack([s.attention for s in steps], 1)
    loss = F.nll_loss(log_probs.flatten(0, 1), TARGET.flatten(), ignore_index=PAD_ID)
    leaves = [*dec.parameters(), enc.memory, enc.summary]
    return loss, attention, torch.autograd.grad(loss, leaves, allow_unused=True)


@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong_dot", "luong_general"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_teacher_forcing_equals_stepping(cell, attention, input_feeding):
    dec = decoder(cell, attention, input_feeding)
    fast_loss, fast_attention, fast_grads = loss_and_grads(dec, teacher_forced=True)
    step_loss, step_attention, step_grads = loss_and_grads(dec, teacher_forced=False)
    torch.testing.assert_close(fast_loss, step_loss, atol=1e-5, rtol=0)
    for fast, step in zip(fast_grads, step_grads, strict=True):
        assert (fast is None) == (step is None)
        if fast is not None:
            torch.testing.assert_close(fast, step, atol=1e-4, rtol=0)
    if attention == "none":
        assert fast_attention is None and step_attention is None
    else:
        torch.testing.assert_close(fast_attention, step_attention, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["none", "bahdanau"])
def test_without_input_feeding_teacher_forcing_has_no_token_loop(attention, monkeypatch):
    dec = decoder("lstm", attention, input_feeding=False)

    def fail(*args):
        raise AssertionError("the fast path stepped token by token")

    monkeypatch.setattr(dec, "_advance", fail)
    logits = dec(TGT_IN, dec.init_state(encoder_output()))
    assert logits.shape == (3, TGT_IN.size(1), VOCAB)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_teacher_forcing_ratio_below_one_steps_on_own_predictions(input_feeding):
    """Ratio 0 reads the model's own argmax at every step, as greedy decoding would."""
    dec = decoder("gru", "luong_general", input_feeding)
    enc = encoder_output()
    with torch.no_grad():
        logits = dec(TGT_IN, dec.init_state(enc), teacher_forcing_ratio=0.0)
        state, tokens = dec.init_state(enc), TGT_IN[:, 0]
        for t in range(TGT_IN.size(1)):
            log_probs, state, _ = dec.step(tokens, state)
            torch.testing.assert_close(log_probs, logits[:, t].log_softmax(-1))
            tokens = log_probs.argmax(-1)


def test_seq2seq_threads_input_feeding_to_the_decoder():
    fed, unfed = (
        Seq2Seq(VOCAB, VOCAB, decoder=DecoderConfig(8, 4, input_feeding=feeding))
        for feeding in (True, False)
    )
    assert fed.decoder.rnn.input_size == 8 + 4 and unfed.decoder.rnn.input_size == 8
    assert unfed.hparams.decoder.input_feeding is False
