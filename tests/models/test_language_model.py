import lightning as L
import pytest
import torch
from tiny import quiet_trainer

from s2s.checkpoint import load_model
from s2s.data.text_stream import Prompts, StreamChunk, TextStreamData, make_prompts
from s2s.decoding import beam_search, greedy
from s2s.decoding.config import SearchConfig
from s2s.models.language_model import LanguageModel
from s2s.optim import OptimConfig
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID, TokenizerConfig

VOCAB = 12
CELLS = ["lstm", "gru", "rnn"]

# training_step logs; outside a Trainer Lightning only warns that it cannot.
no_trainer_warning = pytest.mark.filterwarnings("ignore:.*self.trainer. reference")


def tiny_lm(cell: str = "lstm", **kwargs) -> LanguageModel:
    torch.manual_seed(0)
    options = dict(embedding_size=8, hidden_size=8, cell=cell, num_layers=2, dropout=0.0)
    return LanguageModel(VOCAB, **{**options, **kwargs})


# Two chunks of a 2-row stream: tokens 4 and 5 only in the first, 6..9 only in the second.
FIRST = StreamChunk(
    torch.tensor([[4, 5, 4], [5, 4, 5]]), torch.tensor([[5, 4, 5], [4, 5, 4]]), True
)
SECOND = StreamChunk(torch.tensor([[6, 7], [8, 9]]), torch.tensor([[7, 8], [9, 6]]), False)


@pytest.mark.parametrize("cell", CELLS)
def test_state_values_carry_across_chunks(cell):
    model = tiny_lm(cell)
    whole, _ = model(torch.cat([FIRST.inputs, SECOND.inputs], 1))
    chunked = torch.cat(
        [model.chunk_logits(FIRST, "train"), model.chunk_logits(SECOND, "train")], 1
    )
    torch.testing.assert_close(chunked, whole)
    fresh, _ = model(SECOND.inputs)
    assert not torch.allclose(fresh, whole[:, 3:], atol=1e-4)  # the carried state matters
    # A stream's first chunk starts afresh, whatever was read before.
    torch.testing.assert_close(model.chunk_logits(FIRST, "train"), whole[:, :3])


def test_each_stage_carries_its_own_state():
    model = tiny_lm()
    model.chunk_logits(FIRST, "train")
    model.chunk_logits(StreamChunk(SECOND.inputs, SECOND.targets, True), "val")  # in between
    train_second = model.chunk_logits(SECOND, "train")  # continues the train stream, not val's
    whole, _ = model(torch.cat([FIRST.inputs, SECOND.inputs], 1))
    torch.testing.assert_close(train_second, whole[:, 3:])


@no_trainer_warning
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_stop_at_chunk_boundaries(cell):
    model = tiny_lm(cell)
    model.training_step(FIRST, 0)
    model.zero_grad()
    model.training_step(SECOND, 1).backward()
    grad = model.embedding.weight.grad
    assert grad[[4, 5]].abs().sum() == 0  # tokens read only in the first chunk get no gradient
    assert grad[[6, 7, 8, 9]].abs().sum(1).min() > 0
    # The same loss without truncation does reach the first chunk: the test can fail.
    model.zero_grad()
    logits, _ = model(torch.cat([FIRST.inputs, SECOND.inputs], 1))
    torch.nn.functional.cross_entropy(
        logits[:, 3:].flatten(0, 1), SECOND.targets.flatten()
    ).backward()
    assert model.embedding.weight.grad[[4, 5]].abs().sum(1).min() > 0


def prompts(*seqs: list[int]) -> Prompts:
    width = max(map(len, seqs)) + 1
    ids = torch.full((len(seqs), width), PAD_ID)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq) + 1] = torch.tensor([BOS_ID, *seq])
    return Prompts(ids, torch.tensor([len(s) + 1 for s in seqs]))


@pytest.mark.parametrize("cell", CELLS)
def test_decoding_continues_the_prompt_as_the_forward_pass_predicts(cell):
    model = tiny_lm(cell).eval()
    prompt = [4, 9, 6]
    hyp = greedy(model, prompts(prompt), max_len_b=5)[0]
    seq = [BOS_ID, *prompt]  # the greedy continuation, recomputed by whole forward passes
    for _ in range(len(hyp.tokens)):
        logits, _ = model(torch.tensor([seq]))
        log_probs = logits[0, -1].log_softmax(-1)
        log_probs[[PAD_ID, BOS_ID, EOS_ID]] = -torch.inf  # the random model never ends early
        seq.append(int(log_probs.argmax()))
    assert hyp.tokens == seq[4:]
    assert len(hyp.tokens) == 5  # the length limit


@pytest.mark.parametrize("cell", CELLS)
def test_a_prompt_decodes_the_same_alone_and_in_a_padded_batch(cell):
    model = tiny_lm(cell).eval()
    config = SearchConfig(beam_size=3, max_len_b=6)
    alone = beam_search(model, prompts([5, 6]), config)[0][0]
    batched = beam_search(model, prompts([7, 8, 9, 10, 11], [5, 6], []), config)[1][0]
    assert batched.tokens == alone.tokens
    assert batched.score == pytest.approx(alone.score, abs=1e-5)


def test_tied_embeddings_share_one_matrix_and_need_equal_sizes():
    model = tiny_lm(tie_embeddings=True)
    assert model.output.weight is model.embedding.weight
    with pytest.raises(ValueError, match="embedding_size"):
        tiny_lm(tie_embeddings=True, hidden_size=6)


def train_hello_lm(tmp_path, max_steps: int = 150) -> tuple[L.Trainer, LanguageModel]:
    """A char LM trained on lines of "hello world" (about a second on one core)."""
    (tmp_path / "train.txt").write_text("hello world\n" * 60, encoding="utf-8")
    (tmp_path / "val.txt").write_text("hello world\n" * 8, encoding="utf-8")
    data = TextStreamData(
        str(tmp_path / "train.txt"),
        str(tmp_path / "val.txt"),
        tokenizer=TokenizerConfig(type="char", vocab_size=300, cache_dir=str(tmp_path / "cache")),
        batch_size=4,
        eval_batch_size=2,
        tbptt_steps=16,
    )
    L.seed_everything(0)
    model = LanguageModel(
        data.tgt_vocab_size, 32, 32, num_layers=1, dropout=0.0, optim=OptimConfig(lr=0.01)
    )
    trainer = quiet_trainer(max_steps=max_steps, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(model, data)
    return trainer, model


def test_char_lm_learns_to_continue_a_repeated_text(tmp_path):
    trainer, model = train_hello_lm(tmp_path)
    assert trainer.callback_metrics["val/ppl"] < 1.1
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    model = load_model(tmp_path / "lm.ckpt")
    tok = model.tokenizers["tgt"]
    for prompt in ["", "h", "hello w"]:
        hyp = greedy(model, make_prompts([prompt], tok), max_len_b=30)[0]
        assert tok.decode(tok.encode(prompt) + hyp.tokens) == "hello world"
