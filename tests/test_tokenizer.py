import io

import pytest
import sentencepiece as spm

import s2s.tokenizer
from s2s.io import DataError
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, TokenizerConfig

TEXT = [
    "Grüße aus München, die Straße ist groß.",
    "Ein Hund läuft über die Wiese.",
    "안녕하세요 세계",
    "Ich mag Äpfel 😀",
]
VOCAB = 320  # byte fallback alone needs 256 pieces


def config(cache, **options) -> TokenizerConfig:
    return TokenizerConfig(**{"vocab_size": VOCAB, "cache_dir": str(cache), **options})


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(TEXT * 3) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tok(corpus, tmp_path):
    return Tokenizer.train([corpus], config(tmp_path / "cache"))


@pytest.mark.parametrize(
    "text",
    [
        *TEXT,
        "Straße groß Öl",
        "세계 안녕",
        "ein Papagei 🦜 fliegt",  # 🦜 is not in the training text: byte fallback
        "🦜",
    ],
)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert UNK_ID not in ids
    assert tok.decode(ids) == text


def test_unseen_characters_use_bytes(tok):
    # Four UTF-8 bytes, each its own piece.
    assert tok.pieces(tok.encode("🦜"))[-4:] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x9C>"]


def test_special_ids(tok):
    assert tok.pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]
    ids = tok.encode(TEXT[0])
    assert not {PAD_ID, BOS_ID, EOS_ID} & set(ids)  # encode adds no specials
    assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == TEXT[0]


def test_cache_reused_without_training(corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = Tokenizer.train([corpus], config(cache))
    (model,) = cache.glob("*.model")
    mtime = model.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("retrained")

    monkeypatch.setattr(s2s.tokenizer, "_train_proto", fail)
    second = Tokenizer.train([corpus], config(cache))
    assert second == first
    assert model.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "change",
    [
        {"vocab_size": VOCAB + 10},
        {"type": "bpe"},
        {"character_coverage": 0.9995},
    ],
)
def test_cache_key_includes_options(corpus, tmp_path, change):
    cache = tmp_path / "cache"
    Tokenizer.train([corpus], config(cache))
    Tokenizer.train([corpus], config(cache, **change))
    assert len(list(cache.glob("*.model"))) == 2


def test_cache_key_includes_content(corpus, tmp_path):
    cache = tmp_path / "cache"
    first = Tokenizer.train([corpus], config(cache))
    corpus.write_text("\n".join([*TEXT, "Noch ein ganz anderer Satz."]) + "\n", encoding="utf-8")
    second = Tokenizer.train([corpus], config(cache))
    assert len(list(cache.glob("*.model"))) == 2
    assert second != first


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok.model"
    tok.save(path)
    loaded = Tokenizer.load(path)
    assert loaded == tok
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.encode(TEXT[0]) == tok.encode(TEXT[0])


def test_other_special_ids_raise(corpus):
    model = io.BytesIO()
    # SentencePiece's defaults: unk=0, bos=1, eos=2, no pad.
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_writer=model, vocab_size=60, hard_vocab_limit=False, minloglevel=2
    )
    with pytest.raises(ValueError, match="special ids"):
        Tokenizer(model.getvalue())


def test_only_overlong_lines_is_a_clear_error(tmp_path):
    """CR-only line endings make a file one line, longer than SentencePiece's sentence limit."""
    path = tmp_path / "train.txt"
    path.write_text("\r".join(TEXT * 100), encoding="utf-8", newline="")
    with pytest.raises(DataError) as error:
        Tokenizer.train([path], config(tmp_path / "cache"))
    assert str(error.value) == (
        f"{path}: every line is longer than 4192 bytes, the tokenizer's sentence limit: text "
        "must be one sentence a line (files with CR-only line endings read as one line)"
    )
