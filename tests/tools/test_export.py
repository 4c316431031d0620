import pytest
from tiny import load_tool

from s2s.checkpoint import load_model
from s2s.data import make_batches
from s2s.decoding import beam_search, greedy
from s2s.io import read_lines
from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderConfig
from s2s.nn.encoder import EncoderConfig

tool = load_tool("export")


@pytest.fixture(scope="module")
def exported(copy_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    ckpt = copy_run / "run" / "checkpoints" / "last.ckpt"
    tool.main([str(ckpt), "--output", str(folder)])
    return load_model(ckpt), tool.ExportedTranslator(folder)


@pytest.fixture(scope="module")
def batches(copy_run, exported):
    """The copy task's 30 test sentences in batches of several sizes and source lengths, none
    shaped like the tracing example (2 sentences of 3 tokens)."""
    model, _ = exported
    lines = read_lines(copy_run / "data" / "test.src")
    return make_batches(lines, model.tokenizers["src"], max_tokens=40, max_len=100)


def test_exported_greedy_output_equals_the_checkpoints(exported, batches):
    model, scripted = exported
    assert len({b.src.shape for b in batches}) > 2
    for batch in batches:
        expected = greedy(model, batch, max_len_a=1.5, max_len_b=5)
        got = greedy(scripted, batch, max_len_a=1.5, max_len_b=5)
        assert [h.tokens for h in got] == [h.tokens for h in expected]
        assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-5)


def test_exported_beam_search_equals_the_checkpoints(exported, batches):
    """Beam search also reorders the state by index."""
    model, scripted = exported
    for batch in batches:
        expected = beam_search(model, batch, model.search)
        got = beam_search(scripted, batch, model.search)
        assert [[h.tokens for h in nbest] for nbest in got] == [
            [h.tokens for h in nbest] for nbest in expected
        ]


@pytest.mark.parametrize(("cell", "attention"), [("gru", "none"), ("rnn", "luong_general")])
def test_other_cells_and_attention(cell, attention, exported, batches, tmp_path):
    """Untrained, two layers: the branches the trained LSTM with Bahdanau attention skips."""
    trained, _ = exported
    model = Seq2Seq(
        trained.hparams.src_vocab_size,
        trained.hparams.tgt_vocab_size,
        EncoderConfig(8, 8, cell, num_layers=2),
        DecoderConfig(8, 8, cell, num_layers=2, attention=attention),
    ).eval()
    model.tokenizers = trained.tokenizers
    tool.export(model, tmp_path)
    scripted = tool.ExportedTranslator(tmp_path)
    for batch in batches[:2]:
        expected = greedy(model, batch, max_len_b=8)
        assert [h.tokens for h in greedy(scripted, batch, max_len_b=8)] == [
            h.tokens for h in expected
        ]


def test_exported_tokenizers_are_the_checkpoints(exported):
    model, scripted = exported
    assert scripted.tokenizers == model.tokenizers


def test_export_refuses_bad_checkpoints(tmp_path):
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match=r"export: .*bad\.ckpt: not a readable checkpoint"):
        tool.main([str(tmp_path / "bad.ckpt"), "--output", str(tmp_path / "out")])
