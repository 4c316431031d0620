import random

import pytest
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from s2s.data import TokenBatchSampler

_rng = random.Random(0)
LENGTHS = [_rng.randint(1, 40) for _ in range(500)]


def cost(batch: list[int], lengths: list[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


@pytest.mark.parametrize("shuffle", [True, False])
def test_budget_respected_and_every_index_once(shuffle):
    sampler = TokenBatchSampler(LENGTHS, 200, shuffle=shuffle, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(cost(b, LENGTHS) <= 200 for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))


def test_greedy_cut_by_hand():
    # Sorted lengths 1 2 3 3 5: [1, 2, 3] costs 9 <= 10, adding a 3 would cost 12; [3, 5] costs 10.
    sampler = TokenBatchSampler([5, 3, 1, 3, 2], 10, shuffle=False)
    assert list(sampler) == [[2, 4, 1], [3, 0]]


def test_oversized_example_is_alone():
    sampler = TokenBatchSampler([2, 50, 2, 2], 10, shuffle=True)
    batches = list(sampler)
    assert [1] in batches
    assert sorted(map(sorted, batches)) == [[0, 2, 3], [1]]


def test_eval_batches_deterministic_and_length_sorted():
    a = TokenBatchSampler(LENGTHS, 200, shuffle=False)
    b = TokenBatchSampler(LENGTHS, 200, shuffle=False)
    b.set_epoch(5)
    assert list(a) == list(a) == list(b)
    flat = [LENGTHS[i] for batch in a for i in batch]
    assert flat == sorted(LENGTHS)


def test_set_epoch_changes_order_and_seed_epoch_reproduce():
    sampler = TokenBatchSampler(LENGTHS, 200, shuffle=True, seed=1)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1
    assert len(epoch0) == len(epoch1)

    again = TokenBatchSampler(LENGTHS, 200, shuffle=True, seed=1)
    assert list(again) == epoch0
    again.set_epoch(1)
    assert list(again) == epoch1
    assert list(TokenBatchSampler(LENGTHS, 200, shuffle=True, seed=2)) != epoch0


def test_training_batches_are_length_buckets():
    # Shuffling changes which equal-length examples share a batch and the batch order, never the
    # lengths a batch holds: those are the evaluation batches'.
    def profiles(sampler):
        return sorted(sorted(LENGTHS[i] for i in batch) for batch in sampler)

    train = TokenBatchSampler(LENGTHS, 200, shuffle=True)
    train.set_epoch(2)
    assert profiles(train) == profiles(TokenBatchSampler(LENGTHS, 200, shuffle=False))


def test_ties_are_broken_at_random():
    lengths = [4] * 12  # 3 batches of 4 equal-length examples
    first = TokenBatchSampler(lengths, 16, shuffle=True)
    groups = [sorted(map(sorted, first))]
    for epoch in range(1, 4):
        first.set_epoch(epoch)
        groups.append(sorted(map(sorted, first)))
    assert any(g != groups[0] for g in groups)


def shares(lengths, max_tokens, num_replicas, *, shuffle=True, epoch=0):
    out = []
    for rank in range(num_replicas):
        sampler = TokenBatchSampler(
            lengths, max_tokens, shuffle=shuffle, seed=7, num_replicas=num_replicas, rank=rank
        )
        sampler.set_epoch(epoch)
        out.append(list(sampler))
        assert len(out[-1]) == len(sampler)
    return out


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize(
    ("lengths", "max_tokens"),
    [
        (LENGTHS, 200),
        (LENGTHS, 40),  # batches of 1 to 40 examples
        ([3] * 7, 9),  # 3 batches (3, 3, 1)
        ([3] * 5, 100),  # one batch of 5
        ([2, 2, 9], 9),  # 2 batches (2, 1)
        ([1, 1, 1], 3),  # exactly one example per replica when num_replicas is 3
    ],
)
@pytest.mark.parametrize("shuffle", [True, False])
def test_ddp_shares_disjoint_complete_equal(lengths, max_tokens, num_replicas, shuffle):
    for epoch in range(2):
        per_rank = shares(lengths, max_tokens, num_replicas, shuffle=shuffle, epoch=epoch)
        assert len({len(batches) for batches in per_rank}) == 1  # same number of batches
        assert all(batches for batches in per_rank)
        seen = [i for batches in per_rank for batch in batches for i in batch]
        assert sorted(seen) == list(range(len(lengths)))  # disjoint and complete
        assert all(cost(b, lengths) <= max_tokens for batches in per_rank for b in batches)


def test_ddp_split_of_single_batch():
    # One batch of 5 split for 2 replicas: the largest batch is halved, lengths stay sorted.
    assert shares([5, 4, 3, 2, 1], 100, 2, shuffle=False) == [[[4, 3]], [[2, 1, 0]]]


def test_fewer_examples_than_replicas_raises():
    with pytest.raises(ValueError, match="2 examples are fewer than the 3 replicas"):
        TokenBatchSampler([1, 2], 100, shuffle=False, num_replicas=3, rank=0)


def test_unshareable_single_example_batches_raise():
    # Three examples, each alone under the budget: 3 batches cannot be split for 2 replicas.
    with pytest.raises(ValueError, match="increase max_tokens"):
        TokenBatchSampler([6, 6, 6], 10, shuffle=False, num_replicas=2, rank=0)


def test_no_examples_gives_no_batches():
    sampler = TokenBatchSampler([], 10, shuffle=True)
    assert list(sampler) == []
    assert len(sampler) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be positive"),
        ({"num_replicas": 2, "rank": 2}, "rank 2 is not in"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenBatchSampler([1, 2, 3], **{"max_tokens": 10, "shuffle": False, **kwargs})


def test_lightning_reaches_set_epoch():
    # Lightning sets the epoch on `dataloader.batch_sampler.sampler`, not on the batch sampler.
    sampler = TokenBatchSampler(LENGTHS, 200, shuffle=True)
    loader = DataLoader(range(len(LENGTHS)), batch_sampler=sampler)
    _set_sampler_epoch(loader, 3)
    assert sampler.epoch == 3
