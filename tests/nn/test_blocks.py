"""Shared blocks of brainfm.nn: RoPE conventions and bands, masked SDPA attention, feed-forward."""

from __future__ import annotations

import math

import pytest
import torch

from brainfm.nn.attention import SelfAttention, attend
from brainfm.nn.feedforward import FeedForward, GatedFeedForward
from brainfm.nn.rope import RotaryEmbedding


@pytest.mark.parametrize("convention", ["half", "pairs"])
def test_rope_scores_depend_only_on_relative_position(convention):
    rope = RotaryEmbedding(8, convention=convention)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(p: int, s: int) -> float:
        return float((rope(q, torch.tensor([p])) * rope(k, torch.tensor([s]))).sum())

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    # a rotation keeps the norm
    assert rope(q, torch.tensor([7])).norm() == pytest.approx(float(q.norm()), rel=1e-6)


def test_rope_conventions_differ_by_a_feature_permutation():
    half, pairs = RotaryEmbedding(8, convention="half"), RotaryEmbedding(8, convention="pairs")
    x = torch.randn(2, 3, 5, 8, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(5)
    order = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])  # (x0, x4) are the first "half" pair
    assert torch.allclose(half(x, positions)[..., order], pairs(x[..., order], positions), atol=1e-6)


def test_rope_per_head_bands_split_one_frequency_table_across_heads():
    rope = RotaryEmbedding(4, n_heads=3, base=10_000.0, convention="pairs", per_head_bands=True)
    width = 12
    expected = torch.tensor([10_000.0 ** (-2 * i / width) for i in range(width // 2)]).reshape(3, 2)
    assert torch.allclose(rope.inv_freq, expected)
    # head 2 rotates slower than head 0 at the same position
    x = torch.zeros(1, 3, 1, 4)
    x[..., 0] = 1.0
    out = rope(x, torch.tensor([1]))
    assert out[0, 0, 0, 1] > out[0, 2, 0, 1] > 0
    assert "inv_freq" not in rope.state_dict()


def test_attend_zeroes_rows_without_keys_and_matches_softmax_elsewhere():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 4, 3, generator=g) for _ in range(3))
    mask = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4, [False, False, False, True]])
    out = attend(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert (out[:, :, 1] == 0).all()
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(3)
    manual = logits.masked_fill(~mask, float("-inf"))[:, :, [0, 2, 3]].softmax(-1) @ v
    assert torch.allclose(out[:, :, [0, 2, 3]], manual, atol=1e-5)


def test_self_attention_causal_and_deterministic_in_eval():
    rope = RotaryEmbedding(4)
    block = SelfAttention(8, 2, attn_dropout=0.5, out_dropout=0.5, rope=rope).eval()
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
    pos = torch.arange(6)
    a = block(x, pos, is_causal=True)
    assert torch.equal(a, block(x, pos, is_causal=True))
    changed = x.clone()
    changed[:, 4:] += 1.0  # the future must not change the past
    b = block(changed, pos, is_causal=True)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6) and not torch.allclose(a[:, 4:], b[:, 4:])
    with pytest.raises(ValueError, match="positions"):
        block(x)


def test_feed_forward_shapes_and_gated_names():
    assert FeedForward(8, 32, activation="selu")(torch.randn(3, 8)).shape == (3, 8)
    gated = GatedFeedForward(8, 16)
    assert {"gate_proj.weight", "up_proj.weight", "down_proj.weight"} <= set(gated.state_dict())
    with pytest.raises(ValueError, match="Allowed values"):
        FeedForward(8, 8, activation="swish")
