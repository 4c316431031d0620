import pytest
import torch

from s2s.data.text_stream import (
    StreamChunks,
    TextStreamData,
    encode_stream,
    make_prompts,
)
from s2s.io import DataError
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID, TokenizerConfig


class Numbers:
    """A stand-in tokenizer: a line of space-separated integers is its own ids."""

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in text.split()]


def test_encode_stream_frames_every_line_like_decoding():
    inputs, targets = encode_stream(["5 6", "", "7"], Numbers())
    assert inputs.tolist() == [BOS_ID, 5, 6, BOS_ID, BOS_ID, 7]
    assert targets.tolist() == [5, 6, EOS_ID, EOS_ID, 7, EOS_ID]


def test_chunks_read_contiguous_rows_in_order():
    stream = torch.arange(23)
    chunks = StreamChunks(stream, stream + 100, batch_size=2, tbptt_steps=4)
    assert len(chunks) == 3  # rows of 11 tokens (the 23rd is dropped): 4 + 4 + 3 columns
    assert chunks[0].inputs.tolist() == [[0, 1, 2, 3], [11, 12, 13, 14]]
    assert chunks[0].targets.tolist() == [[100, 101, 102, 103], [111, 112, 113, 114]]
    assert chunks[2].inputs.tolist() == [[8, 9, 10], [19, 20, 21]]
    assert [c.first for c in chunks] == [True, False, False]
    rows = torch.cat([c.inputs for c in chunks], 1)
    assert rows.tolist() == [list(range(11)), list(range(11, 22))]
    with pytest.raises(IndexError):
        chunks[3]


def test_replicas_read_disjoint_rows_of_one_layout():
    stream = torch.arange(40)
    whole = StreamChunks(stream, stream, batch_size=4, tbptt_steps=5)
    parts = [
        StreamChunks(stream, stream, batch_size=2, tbptt_steps=5, num_replicas=2, rank=r)
        for r in (0, 1)
    ]
    assert len(parts[0]) == len(parts[1]) == len(whole) == 2
    for k in range(2):
        both = torch.cat([parts[0][k].inputs, parts[1][k].inputs])
        assert torch.equal(both, whole[k].inputs)


def test_stream_too_short_for_its_rows_names_the_file():
    with pytest.raises(DataError, match=r"valid\.txt: 3 tokens cannot fill 4 rows"):
        StreamChunks(
            torch.arange(3), torch.arange(3), batch_size=4, tbptt_steps=2, name="valid.txt"
        )


def test_prompts_start_with_bos_and_pad():
    prompts = make_prompts(["5 6", ""], Numbers())
    assert prompts.ids.tolist() == [[BOS_ID, 5, 6], [BOS_ID, PAD_ID, PAD_ID]]
    assert prompts.lengths.tolist() == [3, 1]


def test_datamodule_streams_the_files(tmp_path):
    (tmp_path / "train.txt").write_text("abc abc\n" * 20, encoding="utf-8")
    (tmp_path / "val.txt").write_text("abc\n" * 5, encoding="utf-8")
    data = TextStreamData(
        str(tmp_path / "train.txt"),
        str(tmp_path / "val.txt"),
        tokenizer=TokenizerConfig(type="char", vocab_size=300, cache_dir=str(tmp_path / "cache")),
        batch_size=2,
        eval_batch_size=1,
        tbptt_steps=8,
    )
    assert data.tgt_vocab_size == data.tgt_tokenizer.vocab_size == 260 + 4  # ▁ a b c
    data.setup("fit")
    val = list(data.val_dataloader())
    stream = torch.cat([c.targets for c in val], 1)[0].tolist()
    lines, line = [], []
    for token in stream:
        if token == EOS_ID:
            lines.append(data.tgt_tokenizer.decode(line))
            line = []
        else:
            line.append(token)
    assert lines == ["abc"] * 5 and not line
    assert all(c.inputs.shape == (2, 8) for c in list(data.train_dataloader())[:-1])
    with pytest.raises(ValueError, match="no 'predict' stage"):
        data.setup("predict")
