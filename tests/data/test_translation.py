import gzip
import logging
from types import SimpleNamespace

import lightning as L
import pytest
import tiny
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from tiny import quiet_trainer

from s2s.data import (
    DataError,
    Example,
    TokenBatchSampler,
    TranslationBatch,
    TranslationData,
    collate,
    make_batches,
)
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, TokenizerConfig

DE = [
    "ein Hund läuft",
    "eine Katze schläft",
    "zwei Männer spielen Fußball",
    "ein Kind isst",
    "Frauen gehen über die Straße",
    "der Ball ist rot",
    "ein Mann fährt Rad",
    "die Sonne scheint",
]
EN = [
    "a dog runs",
    "a cat sleeps",
    "two men play football",
    "a child eats",
    "women cross the street",
    "the ball is red",
    "a man rides a bike",
    "the sun shines",
]
LONG_DE = " ".join(["ein Hund läuft"] * 20)
MAX_LEN = 30


def tokenizer_config(data_dir) -> TokenizerConfig:
    return TokenizerConfig(vocab_size=320, cache_dir=str(data_dir.parent / "cache"))


def write(path, lines, *, gz=False):
    data = "".join(line + "\n" for line in lines).encode()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.fixture
def data_dir(tmp_path):
    """train (8 pairs, gzipped), val (plain) and test (plain) splits."""
    root = tmp_path / "data"
    root.mkdir()
    write(root / "train.de", DE, gz=True)
    write(root / "train.en", EN, gz=True)
    write(root / "val.de", [DE[2], "", LONG_DE])
    write(root / "val.en", [EN[2], "", EN[0]])
    write(root / "test_2016_flickr.de", DE[::-1])
    write(root / "test_2016_flickr.en", EN[::-1])
    return root


def make_data(data_dir, **kwargs) -> TranslationData:
    options = dict(
        data_dir=str(data_dir),
        tokenizer=tokenizer_config(data_dir),
        max_len=MAX_LEN,
        max_tokens=40,
        eval_max_tokens=40,
    )
    return TranslationData(**{**options, **kwargs})


def test_collate_exact():
    batch = collate([Example(5, [7, 8], [9], "x y"), Example(2, [7], [9, 10, 11], "z")])
    assert batch.src.tolist() == [[7, 8, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt.tolist() == [
        [BOS_ID, 9, EOS_ID, PAD_ID, PAD_ID],
        [BOS_ID, 9, 10, 11, EOS_ID],
    ]
    assert batch.indices.tolist() == [5, 2]
    assert batch.refs == ["x y", "z"]
    assert batch.src.dtype == batch.tgt.dtype == batch.src_lengths.dtype == torch.long


def test_collate_without_targets():
    batch = collate([Example(0, []), Example(1, [4, 5])])
    assert batch.src.tolist() == [[EOS_ID, PAD_ID, PAD_ID], [4, 5, EOS_ID]]
    assert batch.src_lengths.tolist() == [1, 3]
    assert batch.tgt is None
    assert batch.refs == []


def test_batch_moves_to_device():
    batch = move_data_to_device(collate([Example(0, [4], [5], "r")]), torch.device("meta"))
    assert isinstance(batch, TranslationBatch)
    assert batch.src.is_meta and batch.tgt.is_meta and batch.indices.is_meta
    assert batch.refs == ["r"]


def test_val_batch_tensors(data_dir):
    dm = make_data(data_dir)
    dm.setup("validate")
    tok = dm.src_tokenizer
    batches = list(dm.val_dataloader())
    by_index = {}
    for batch in batches:
        for row, i in enumerate(batch.indices.tolist()):
            by_index[i] = (batch, row)

    batch, row = by_index[0]
    src, tgt = tok.encode(DE[2]), tok.encode(EN[2])
    width, tgt_width = batch.src.shape[1], batch.tgt.shape[1]
    assert batch.src[row].tolist() == src + [EOS_ID] + [PAD_ID] * (width - len(src) - 1)
    assert batch.tgt[row].tolist() == [BOS_ID, *tgt, EOS_ID] + [PAD_ID] * (tgt_width - len(tgt) - 2)
    assert batch.src_lengths[row] == len(src) + 1
    assert batch.refs[row] == EN[2]

    batch, row = by_index[1]  # empty pair: kept, with EOS alone
    assert batch.src[row, 0] == EOS_ID and batch.src_lengths[row] == 1
    assert batch.tgt[row, :2].tolist() == [BOS_ID, EOS_ID]
    assert batch.refs[row] == ""

    batch, row = by_index[2]  # over-long source: truncated, target kept whole
    assert batch.src_lengths[row] == MAX_LEN + 1
    assert batch.src[row, : MAX_LEN + 1].tolist() == [*tok.encode(LONG_DE)[:MAX_LEN], EOS_ID]


def test_eval_truncation_is_logged(data_dir, caplog):
    dm = make_data(data_dir)
    with caplog.at_level(logging.WARNING, logger="s2s.data.translation"):
        dm.setup("validate")
    assert "val: truncated 1 source lines to max_len=30 tokens" in caplog.messages


@pytest.mark.parametrize(
    ("min_len", "message", "kept"),
    [
        (1, "kept 5 of 8 pairs (2 empty/too short, 1 longer than 30 tokens)", [0, 1, 3, 5, 7]),
        (
            0,
            "kept 7 of 8 pairs (0 empty/too short, 1 longer than 30 tokens)",
            [0, 1, 2, 3, 4, 5, 7],
        ),
    ],
)
def test_training_filter_counts(tmp_path, caplog, min_len, message, kept):
    root = tmp_path / "data"
    root.mkdir()
    # Line 2: empty source; 4: whitespace-only target; 6: over-long source.
    write(root / "train.de", [DE[0], DE[1], "", DE[3], DE[4], DE[5], LONG_DE, DE[7]])
    write(root / "train.en", [EN[0], EN[1], EN[2], EN[3], " \t ", EN[5], EN[6], EN[7]])
    write(root / "val.de", DE[:2])
    write(root / "val.en", EN[:2])
    dm = make_data(root, min_len=min_len)
    with caplog.at_level(logging.INFO, logger="s2s.data.translation"):
        dm.setup("fit")
    assert f"train: {message}" in caplog.messages
    examples = dm.datasets["train"].examples
    assert [ex.index for ex in examples] == kept
    assert all(len(ex.src) <= MAX_LEN and len(ex.tgt) <= MAX_LEN for ex in examples)


@pytest.mark.parametrize("gz", [False, True])
def test_plain_and_gzip_files_agree(tmp_path, data_dir, gz):
    root = tmp_path / f"copy{gz}"
    root.mkdir()
    for lang, lines in (("de", DE), ("en", EN)):
        write(root / f"train.{lang}", lines, gz=gz)
        write(root / f"val.{lang}", lines[:3], gz=not gz)
    dm, reference = make_data(root), make_data(data_dir)
    dm.setup("fit")
    reference.setup("fit")
    assert dm.src_tokenizer == reference.src_tokenizer  # same content, same cached model
    assert dm.datasets["train"].examples == reference.datasets["train"].examples
    assert [ex.ref for ex in dm.datasets["val"].examples] == EN[:3]


def test_missing_split_names_expected_path(data_dir):
    dm = make_data(data_dir, test_split="nope")
    with pytest.raises(DataError, match=r"data/nope\.de\[\.gz\]: no such file"):
        dm.setup("test")


def test_missing_train_file_before_setup(data_dir):
    (data_dir / "train.en.gz").unlink()
    with pytest.raises(DataError, match=r"data/train\.en\[\.gz\]: no such file"):
        make_data(data_dir).src_vocab_size  # noqa: B018


def test_mismatched_line_counts(data_dir):
    write(data_dir / "val.en", EN[:2])
    with pytest.raises(DataError, match=r"val\.de has 3 lines but .*val\.en has 2"):
        make_data(data_dir).setup("validate")


def test_invalid_utf8_names_file_and_line(data_dir):
    (data_dir / "test_2016_flickr.en").write_bytes(b"good\nbad \xff\xfe\n")
    with pytest.raises(DataError, match=r"test_2016_flickr\.en:2: invalid UTF-8"):
        make_data(data_dir).setup("test")


def test_missing_predict_file(data_dir):
    with pytest.raises(DataError, match=r"absent\.txt: no such file"):
        make_data(data_dir, predict_file=str(data_dir / "absent.txt")).setup("predict")


def test_tokenizers_before_setup(data_dir):
    def train(*names):
        files = [data_dir / name for name in names]
        return Tokenizer.train(files, tokenizer_config(data_dir))

    joint = make_data(data_dir)
    assert joint.src_tokenizer is joint.tgt_tokenizer
    assert joint.src_tokenizer == train("train.de.gz", "train.en.gz")
    assert joint.src_vocab_size == joint.tgt_vocab_size == joint.src_tokenizer.vocab_size
    separate = make_data(data_dir, joint_vocab=False)
    assert separate.src_tokenizer == train("train.de.gz")
    assert separate.tgt_tokenizer == train("train.en.gz")
    assert separate.src_tokenizer != separate.tgt_tokenizer


def test_indices_restore_file_order(data_dir):
    dm = make_data(data_dir, eval_max_tokens=12)
    dm.setup("test")
    restored = [None] * len(DE)
    order = []
    for batch in dm.test_dataloader():
        for i, src, ref in zip(batch.indices.tolist(), batch.src, batch.refs, strict=True):
            restored[i] = (dm.src_tokenizer.decode(src), ref)
            order.append(i)
    assert order != sorted(order)  # batches are length-sorted, not in file order
    assert restored == list(zip(DE[::-1], EN[::-1], strict=True))


def test_predict_default_and_file(data_dir):
    dm = make_data(data_dir)
    dm.setup("predict")
    batches = list(dm.predict_dataloader())
    assert all(b.tgt is None and b.refs == [] for b in batches)
    assert sorted(i for b in batches for i in b.indices.tolist()) == list(range(len(DE)))

    write(data_dir / "input.txt", ["ein Hund", ""])
    dm = make_data(data_dir, predict_file=str(data_dir / "input.txt"))
    dm.setup("predict")
    (batch,) = dm.predict_dataloader()
    assert batch.indices.tolist() == [1, 0]  # the empty line is shorter
    assert batch.src[0].tolist()[0] == EOS_ID


def test_make_batches_matches_predict_loader(data_dir, caplog):
    dm = make_data(data_dir, max_len=6, eval_max_tokens=20)
    dm.setup("predict")
    expected = list(dm.predict_dataloader())
    with caplog.at_level(logging.WARNING, logger="s2s.data.translation"):
        got = make_batches(DE[::-1], dm.src_tokenizer, max_tokens=20, max_len=6)
    assert len(got) == len(expected) > 1
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a.src, b.src) and torch.equal(a.indices, b.indices)
        assert a.tgt is None and a.refs == []
    assert any(m.startswith("input: truncated") for m in caplog.messages)
    assert make_batches([], dm.src_tokenizer, max_tokens=20, max_len=6) == []


def fake_trainer(world_size, rank, use_distributed_sampler):
    connector = SimpleNamespace(use_distributed_sampler=use_distributed_sampler)
    return SimpleNamespace(
        world_size=world_size, global_rank=rank, _accelerator_connector=connector
    )


@pytest.mark.parametrize("hook", ["train", "val", "test", "predict"])
def test_distributed_sampler_guard(data_dir, hook):
    dm = make_data(data_dir)
    for stage in ("fit", "test", "predict"):
        dm.setup(stage)
    dm.trainer = fake_trainer(2, 1, use_distributed_sampler=True)
    with pytest.raises(ValueError, match=r"trainer\.use_distributed_sampler: false"):
        getattr(dm, f"{hook}_dataloader")()

    dm.trainer = fake_trainer(2, 1, use_distributed_sampler=False)
    sampler = getattr(dm, f"{hook}_dataloader")().batch_sampler
    assert (sampler.num_replicas, sampler.rank, sampler.shuffle) == (2, 1, hook == "train")

    dm.trainer = fake_trainer(1, 0, use_distributed_sampler=True)  # one device: nothing to shard
    assert getattr(dm, f"{hook}_dataloader")().batch_sampler.num_replicas == 1


def test_ddp_ranks_share_val_split(data_dir):
    dm = make_data(data_dir, eval_max_tokens=30)
    dm.setup("test")
    seen = []
    for rank in range(3):
        dm.trainer = fake_trainer(3, rank, use_distributed_sampler=False)
        seen.append([i for batch in dm.test_dataloader() for i in batch.indices.tolist()])
    assert sorted(i for share in seen for i in share) == list(range(len(DE)))


def test_installed_lightning_has_the_guarded_attribute():
    trainer = quiet_trainer(use_distributed_sampler=False)
    assert trainer._accelerator_connector.use_distributed_sampler is False


class Recorder(L.LightningModule):
    """Records the example indices of every training batch, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.epochs: list[list[list[int]]] = []

    def training_step(self, batch: TranslationBatch, batch_idx: int) -> torch.Tensor:
        if batch_idx == 0:
            self.epochs.append([])
        self.epochs[-1].append(batch.indices.tolist())
        return self.weight.sum() * 0

    def predict_step(self, batch: TranslationBatch, batch_idx: int) -> torch.Tensor:
        return batch.indices

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:.*no `validation_step`")
@pytest.mark.filterwarnings("ignore:You are using a custom batch sampler")
def test_trainer_sets_epoch_and_predicts(data_dir):
    dm = make_data(data_dir, max_tokens=12)
    model = Recorder()
    trainer = quiet_trainer(max_epochs=3, use_distributed_sampler=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)

    train = dm.datasets["train"]
    sampler = TokenBatchSampler(train.lengths, 12, shuffle=True, seed=0)
    expected = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        expected.append([[train[i].index for i in batch] for batch in sampler])
    assert model.epochs == expected
    assert expected[0] != expected[1]

    predictions = trainer.predict(model, datamodule=dm)
    assert sorted(torch.cat(predictions).tolist()) == list(range(len(DE)))


def sampling_data(tmp_path, alpha: float, reload: int = 1) -> TranslationData:
    """The tiny corpus's data module under a trainer that reloads its loaders every ``reload``
    epochs (0: never)."""
    init_args = tiny.config(tmp_path, tiny.write_corpus(tmp_path / "data"))["data"]["init_args"]
    data = tiny.translation_data(init_args | {"sampling_alpha": alpha})
    data.trainer = quiet_trainer(reload_dataloaders_every_n_epochs=reload)
    data.setup("fit")
    return data


def epoch_pairs(data: TranslationData, epoch: int) -> list[tuple[list[int], list[int]]]:
    data.trainer.fit_loop.epoch_progress.current.completed = epoch  # the trainer's current_epoch
    data.train_dataloader()
    return [(ex.src, ex.tgt) for ex in data.datasets["train"].examples]


def test_sampled_segmentations_change_by_epoch_but_never_at_evaluation(tmp_path):
    data = sampling_data(tmp_path / "sampled", alpha=0.1)
    first, second, first_again = epoch_pairs(data, 0), epoch_pairs(data, 1), epoch_pairs(data, 0)
    assert first != second  # re-sampled every epoch
    assert first == first_again  # seeded by the epoch: a resumed epoch trains on the same pieces
    best = sampling_data(tmp_path / "best", alpha=0.0)
    assert first != [(ex.src, ex.tgt) for ex in best.datasets["train"].examples]
    tok = data.tgt_tokenizer
    assert [tok.decode(tgt) for _, tgt in first] == [
        ex.ref for ex in best.datasets["train"].examples
    ]
    for split in ("val",):  # evaluation: the best segmentation, whatever the epoch
        sampled_val = [(ex.src, ex.tgt) for ex in data.datasets[split].examples]
        assert sampled_val == [(ex.src, ex.tgt) for ex in best.datasets[split].examples]


def test_sampling_needs_a_loader_every_epoch(tmp_path):
    data = sampling_data(tmp_path, alpha=0.1, reload=0)
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs: 1"):
        data.train_dataloader()
