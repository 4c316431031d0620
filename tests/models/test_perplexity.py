"""Validation NLL and perplexity: the translator and the language model log the summed NLL of
every target token over the epoch divided by the token count (padding excluded), and its exp."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from tiny import quiet_trainer
from torch.utils.data import DataLoader

from s2s.data import TranslationData
from s2s.data.text_stream import StreamChunk
from s2s.decoding import SearchConfig
from s2s.models import Seq2Seq
from s2s.models.language_model import LanguageModel
from s2s.models.perplexity import TokenNLL
from s2s.nn.decoder import DecoderConfig
from s2s.nn.encoder import EncoderConfig
from s2s.optim import OptimConfig
from s2s.tokenizer import PAD_ID, TokenizerConfig


def test_token_nll_skips_padding_and_starts_over_on_reset():
    nll = TokenNLL()
    nll.update(torch.zeros(2, 4), torch.tensor([1, PAD_ID]), ignore_index=PAD_ID)
    assert nll.logs("val") == {"val/loss": pytest.approx(math.log(4)), "val/ppl": pytest.approx(4)}
    nll.reset()
    nll.update(torch.tensor([[0.0, 100.0]]), torch.tensor([1]))
    assert nll.logs("test") == {"test/loss": pytest.approx(0), "test/ppl": pytest.approx(1)}


def test_the_accumulator_is_not_checkpointed():
    """Checkpoints of models with and without it have the same keys."""
    model = LanguageModel(12, embedding_size=8, hidden_size=8)
    assert not [k for k in model.state_dict() if "nll" in k]


def validate(model: L.LightningModule, **data) -> dict[str, float]:
    trainer = quiet_trainer()
    trainer.validate(model, verbose=False, **data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_translator_perplexity_is_over_all_target_tokens(copy_corpus, tmp_path):
    data = TranslationData(
        str(copy_corpus),
        src_lang="src",
        tgt_lang="tgt",
        tokenizer=TokenizerConfig(vocab_size=300, cache_dir=str(tmp_path / "cache")),
        eval_max_tokens=16,  # several validation batches
    )
    torch.manual_seed(0)
    model = Seq2Seq(
        data.src_vocab_size,
        data.tgt_vocab_size,
        EncoderConfig(embedding_size=8, hidden_size=8, dropout=0.0),
        DecoderConfig(embedding_size=8, hidden_size=8, dropout=0.0),
        optim=OptimConfig(),
        search=SearchConfig(max_len_b=3),
    )
    logged = validate(model, datamodule=data)
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            target = batch.tgt[:, 1:].flatten()
            logits = model(batch).flatten(0, 1)
            nll += float(F.cross_entropy(logits, target, ignore_index=PAD_ID, reduction="sum"))
            tokens += int((target != PAD_ID).sum())
    assert len(data.val_dataloader()) > 1
    assert logged["val/loss"] == pytest.approx(nll / tokens, rel=1e-5)
    assert logged["val/ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)


def test_language_model_perplexity_is_over_all_chunks():
    first = StreamChunk(
        torch.tensor([[4, 5, 4], [5, 4, 5]]), torch.tensor([[5, 4, 5], [4, 5, 4]]), True
    )
    second = StreamChunk(torch.tensor([[6, 7], [8, 9]]), torch.tensor([[7, 8], [9, 6]]), False)
    torch.manual_seed(0)
    model = LanguageModel(12, embedding_size=8, hidden_size=8, dropout=0.0)
    logged = validate(model, dataloaders=DataLoader([first, second], batch_size=None))
    with torch.no_grad():
        logits1, state = model(first.inputs)
        logits2, _ = model(second.inputs, state)
    logits = torch.cat([logits1.flatten(0, 1), logits2.flatten(0, 1)])
    targets = torch.cat([first.targets.flatten(), second.targets.flatten()])
    loss = float(F.cross_entropy(logits, targets))
    assert logged["val/loss"] == pytest.approx(loss, rel=1e-5)
    assert logged["val/ppl"] == pytest.approx(math.exp(loss), rel=1e-5)
