import math

import pytest
import torch

from s2s.nn.attention import LuongDotAttention, make_attention

KINDS = ["bahdanau", "luong_dot", "luong_general"]


def test_luong_dot_exact():
    attention = LuongDotAttention(2, 2)
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # (1, 3, 2)
    mask = torch.tensor([[True, True, False]])
    context, weights = attention(torch.tensor([[1.0, 0.0]]), attention.keys(memory), memory, mask)
    e = math.e
    torch.testing.assert_close(weights, torch.tensor([[e / (e + 1), 1 / (e + 1), 0.0]]))
    torch.testing.assert_close(context, torch.tensor([[e / (e + 1), 1 / (e + 1)]]))


@pytest.mark.parametrize("kind", KINDS)
def test_weights_are_a_distribution_over_real_positions(kind):
    torch.manual_seed(0)
    attention = make_attention(kind, query_size=6, memory_size=6)
    memory = torch.randn(3, 5, 6)
    mask = torch.arange(5) < torch.tensor([[5], [2], [1]])
    query = torch.randn(3, 6)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    assert weights.shape == (3, 5) and context.shape == (3, 6)
    assert torch.all(weights[~mask] == 0) and torch.all(weights[mask] > 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    torch.testing.assert_close(context, torch.einsum("ns,nsh->nh", weights, memory))
    # Whatever the padding holds, the result is the same.
    noisy = memory.where(mask[..., None], 100 * torch.randn(3, 5, 6))
    context2, weights2 = attention(query, attention.keys(noisy), noisy, mask)
    torch.testing.assert_close(weights2, weights)
    torch.testing.assert_close(context2, context)


@pytest.mark.parametrize("kind", KINDS)
def test_many_queries_equal_one_at_a_time(kind):
    torch.manual_seed(0)
    attention = make_attention(kind, query_size=4, memory_size=4)
    memory, queries = torch.randn(2, 3, 4), torch.randn(2, 5, 4)  # (N, S, H), (N, T, H)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    keys = attention.keys(memory)
    context, weights = attention(queries, keys, memory, mask)
    assert weights.shape == (2, 5, 3) and context.shape == (2, 5, 4)
    for t in range(5):
        context_t, weights_t = attention(queries[:, t], keys, memory, mask)
        torch.testing.assert_close(context[:, t], context_t)
        torch.testing.assert_close(weights[:, t], weights_t)


@pytest.mark.parametrize("kind", ["bahdanau", "luong_general"])
def test_query_and_memory_sizes_may_differ(kind):
    attention = make_attention(kind, query_size=4, memory_size=10)
    memory = torch.randn(2, 3, 10)
    context, _ = attention(torch.randn(2, 4), attention.keys(memory), memory, torch.ones(2, 3) > 0)
    assert context.shape == (2, 10)


def test_luong_dot_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"luong_dot.*decoder \(4\).*encoder output \(10\)"):
        make_attention("luong_dot", query_size=4, memory_size=10)


def test_none_and_unknown_kinds():
    assert make_attention("none", 4, 4) is None
    with pytest.raises(ValueError, match="unknown attention 'luong'"):
        make_attention("luong", 4, 4)


def test_bahdanau_scores_in_blocks_equal_the_whole_sum(monkeypatch):
    """Blocks of rows (here of one or two rows) give the scores of the whole (N, T, S, A) sum,
    with gradients, and the scores by the formula v^T tanh(W_q q + W_k k)."""
    torch.manual_seed(0)
    attention = make_attention("bahdanau", query_size=6, memory_size=4)
    query, keys = torch.randn(5, 3, 6), attention.keys(torch.randn(5, 7, 4))
    expected = attention.energy(
        torch.tanh(attention.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))
    ).squeeze(-1)
    whole = attention.scores(query, keys)
    monkeypatch.setattr("s2s.nn.attention._BLOCK", 2 * 3 * 7 * 6)  # two rows a block: 3 blocks
    blocked = attention.scores(query, keys)
    torch.testing.assert_close(whole, expected)
    torch.testing.assert_close(blocked, whole)
    grads = [torch.autograd.grad(s.sum(), attention.query_proj.weight)[0] for s in (whole, blocked)]
    torch.testing.assert_close(grads[0], grads[1])
