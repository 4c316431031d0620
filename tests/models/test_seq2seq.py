import random

import pytest
import torch
from tiny import flat_options_checkpoint, quiet_trainer

from s2s.checkpoint import load_model, read_checkpoint
from s2s.data import Example, TranslationBatch, TranslationData, collate
from s2s.decoding import SearchConfig, greedy
from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderConfig
from s2s.nn.encoder import EncoderConfig
from s2s.optim import OptimConfig
from s2s.tokenizer import PAD_ID, TokenizerConfig

CELLS = ["lstm", "gru", "rnn"]
ATTENTIONS = ["none", "bahdanau", "luong_dot", "luong_general"]
VOCAB = 12  # the 4 special ids, then 8 symbols
SYMBOLS = range(4, VOCAB)

# training_step logs; outside a Trainer Lightning only warns that it cannot.
no_trainer_warning = pytest.mark.filterwarnings("ignore:.*self.trainer. reference")


def tiny_model(
    cell: str = "lstm", attention: str = "bahdanau", bidirectional: bool | None = None, **kwargs
) -> Seq2Seq:
    """8-unit encoder and decoder; ``kwargs`` are decoder options, or Seq2Seq's own."""
    torch.manual_seed(0)
    own = {k: kwargs.pop(k) for k in ("label_smoothing",) if k in kwargs}
    # luong_dot needs decoder and encoder outputs of the same size: a unidirectional encoder.
    if bidirectional is None:
        bidirectional = attention != "luong_dot"
    sizes = dict(embedding_size=8, hidden_size=8, cell=cell, dropout=0.0)
    encoder = EncoderConfig(**sizes, bidirectional=bidirectional)
    decoder = DecoderConfig(**sizes, attention=attention, **kwargs)
    return Seq2Seq(VOCAB, VOCAB, encoder, decoder, **own)


def batch_of(pairs: list[tuple[list[int], list[int]]]) -> TranslationBatch:
    return collate([Example(i, src, tgt, "") for i, (src, tgt) in enumerate(pairs)])


PAIRS = [([4, 5, 6, 7, 8], [9, 10]), ([5, 6], [7, 8, 9, 10, 11]), ([11], [4])]


def pad_differently(batch: TranslationBatch, extra: int) -> TranslationBatch:
    """The same batch with random ids at the source padding and ``extra`` more padding columns."""
    src = torch.cat([batch.src, torch.zeros(len(batch.src), extra, dtype=torch.long)], 1)
    real = torch.arange(src.size(1)) < batch.src_lengths[:, None]
    noise = torch.randint(4, VOCAB, src.shape, generator=torch.Generator().manual_seed(1))
    tgt = torch.cat([batch.tgt, torch.full((len(batch.tgt), extra), PAD_ID)], 1)
    return TranslationBatch(
        src.where(real, noise), batch.src_lengths, tgt, batch.indices, batch.refs
    )


@no_trainer_warning
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_forward_backward_reaches_every_parameter(cell, attention):
    model = tiny_model(cell, attention)
    batch = batch_of(PAIRS)
    logits = model(batch)
    assert logits.shape == (3, batch.tgt.size(1) - 1, VOCAB)
    model.training_step(batch, 0).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_source_padding_does_not_change_outputs(cell, attention):
    model = tiny_model(cell, attention).eval()
    batch = batch_of(PAIRS)
    other = pad_differently(batch, extra=3)
    assert not torch.equal(other.src[:, : batch.src.size(1)], batch.src)
    with torch.no_grad():
        enc, enc_other = model.encode(batch), model.encode(other)
        logits, logits_other = model(batch), model(other)
    real = enc.mask
    torch.testing.assert_close(enc_other.memory[:, : real.size(1)][real], enc.memory[real])
    torch.testing.assert_close(enc_other.summary, enc.summary)
    n = logits.size(1)
    target_real = batch.tgt[:, 1:] != PAD_ID
    torch.testing.assert_close(logits_other[:, :n][target_real], logits[target_real])


@no_trainer_warning
@pytest.mark.parametrize("cell", CELLS)
def test_target_padding_does_not_change_the_loss(cell):
    """The batch loss is the token-weighted mean of the items' losses, whatever the padding."""
    model = tiny_model(cell, label_smoothing=0.1).eval()
    batch = batch_of(PAIRS)
    loss = model.training_step(batch, 0)
    torch.testing.assert_close(model.training_step(pad_differently(batch, extra=4), 0), loss)
    per_item = [model.training_step(batch_of([pair]), 0) for pair in PAIRS]
    tokens = [len(tgt) + 1 for _, tgt in PAIRS]  # targets and EOS
    torch.testing.assert_close(
        loss, sum(x * n for x, n in zip(per_item, tokens, strict=True)) / sum(tokens)
    )


@pytest.mark.parametrize("attention", ["bahdanau", "luong_dot", "luong_general"])
def test_attention_is_a_distribution_over_real_source_positions(attention):
    model = tiny_model(attention=attention).eval()
    batch = pad_differently(batch_of(PAIRS), extra=2)
    with torch.no_grad():
        state, src_lengths = model.start(batch)
        step = model.step(torch.tensor([2, 5, 7]), state)
        step = model.step(torch.tensor([4, 4, 4]), step.state)
    assert src_lengths.tolist() == [6, 3, 2]
    real = torch.arange(batch.src.size(1)) < src_lengths[:, None]
    assert step.attention.shape == batch.src.shape
    assert torch.all(step.attention[~real] == 0)
    assert torch.all(step.attention[real] > 0)
    torch.testing.assert_close(step.attention.sum(1), torch.ones(3))


def test_no_attention_returns_none():
    model = tiny_model(attention="none").eval()
    state, _ = model.start(batch_of(PAIRS))
    assert model.step(torch.tensor([2, 2, 2]), state).attention is None


def test_tie_embeddings_passes_through():
    model = tiny_model(tie_embeddings=True)
    assert model.decoder.output.weight is model.decoder.embedding.weight


def test_luong_dot_size_mismatch_is_a_clear_error():
    # A bidirectional encoder's outputs are twice the decoder size.
    with pytest.raises(ValueError, match=r"luong_dot.*\(8\).*\(16\)"):
        tiny_model(attention="luong_dot", bidirectional=True)


def reverse_pairs(n: int, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    seqs = [rng.choices(SYMBOLS, k=rng.randint(3, 6)) for _ in range(n)]
    return [(seq, seq[::-1]) for seq in seqs]


def test_learns_to_reverse_sequences():
    """A tiny model learns to reverse 3-6 symbols: > 95% of unseen sequences exactly right."""
    torch.manual_seed(0)
    model = Seq2Seq(
        VOCAB,
        VOCAB,
        EncoderConfig(embedding_size=16, hidden_size=32, dropout=0.0),
        DecoderConfig(embedding_size=16, hidden_size=32, attention="luong_general", dropout=0.0),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    rng = random.Random(0)
    for _ in range(250):  # about 3 s on one core; every seed tried was at 100% by then
        batch = batch_of(reverse_pairs(64, rng))
        logits = model(batch)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch.tgt[:, 1:].flatten(), ignore_index=PAD_ID
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    test = reverse_pairs(200, random.Random(1))
    hyps = greedy(model, batch_of(test), max_len_b=10)
    correct = sum(h.tokens == tgt for h, (_, tgt) in zip(hyps, test, strict=True))
    assert correct / len(test) > 0.95


def test_checkpoint_of_a_python_built_model(copy_corpus, tmp_path):
    """Hyperparameters holding frozen dataclasses load with ``torch.load(weights_only=True)``."""
    data = TranslationData(
        str(copy_corpus),
        src_lang="src",
        tgt_lang="tgt",
        tokenizer=TokenizerConfig(vocab_size=300, cache_dir=str(tmp_path / "cache")),
        max_tokens=64,
    )
    optim, search = OptimConfig(lr=0.02, warmup_steps=3), SearchConfig(beam_size=2, max_len_b=7)
    model = Seq2Seq(
        data.src_vocab_size,
        data.tgt_vocab_size,
        EncoderConfig(embedding_size=8, hidden_size=8, cell="gru"),
        DecoderConfig(embedding_size=8, hidden_size=8, cell="gru", attention="luong_general"),
        optim=optim,
        search=search,
    )
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    assert read_checkpoint(path)["hyper_parameters"]["search"] == search

    loaded = load_model(path)
    assert isinstance(loaded, Seq2Seq) and not loaded.training
    assert (loaded.optim, loaded.search) == (optim, search)
    assert loaded.hparams.encoder == model.hparams.encoder
    assert (loaded.hparams.decoder.cell, loaded.hparams.decoder.attention) == (
        "gru",
        "luong_general",
    )
    assert loaded.tokenizers == {"src": data.src_tokenizer, "tgt": data.tgt_tokenizer}
    flat = load_model(flat_options_checkpoint(path, tmp_path / "flat.ckpt"))  # older s2s
    assert dict(flat.hparams) == dict(loaded.hparams)
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
