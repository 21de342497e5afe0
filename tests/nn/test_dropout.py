"""The CPU dropout with 16-bit random lanes, and attention dropout on its own unfused path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainfm.nn.attention import attend
from brainfm.nn.dropout import FastDropout, fast_dropout, keep_mask, rounded_drop_probability
from brainfm.nn.feedforward import FeedForward
from brainfm.nn.rope import RotaryEmbedding


@pytest.fixture(autouse=True)
def _isolated_rng():
    """Tests here seed torch's global generator (the code under test draws from it); keep that local."""
    with torch.random.fork_rng(devices=[]):
        yield

def test_keep_mask_is_bernoulli_with_p_rounded_to_16_bits():
    torch.random.manual_seed(0)
    n = 2_000_000
    for p in (0.1, 0.5, 0.9):
        keep = keep_mask((n,), p)
        assert keep.dtype == torch.bool and keep.shape == (n,)
        drop = 1.0 - rounded_drop_probability(p)
        assert abs(float(keep.float().mean()) - drop) < 5 * (drop * (1 - drop) / n) ** 0.5
    keep = keep_mask((n,), 0.5).float()
    # the four lanes of one 64-bit word and neighbouring words are independent (no lane biased or tied)
    lanes = keep.view(-1, 4)
    assert (lanes.mean(0) - 0.5).abs().max() < 0.005
    assert abs(float((lanes[:, 0] * lanes[:, 1]).mean()) - 0.25) < 0.005
    assert keep_mask((3, 5), 0.0).all() and not keep_mask((3, 5), 1.0).any()
    assert rounded_drop_probability(0.1) == 6554 / 65536


def test_fast_dropout_preserves_the_expectation_and_repeats_under_a_seed():
    x = torch.randn(4000, 64)
    torch.random.manual_seed(1)
    out = fast_dropout(x, 0.1)
    dropped = out == 0
    assert 0.09 < float(dropped.float().mean()) < 0.11
    torch.testing.assert_close(out[~dropped], (x / (1 - rounded_drop_probability(0.1)))[~dropped])
    torch.random.manual_seed(1)
    assert torch.equal(out, fast_dropout(x, 0.1))
    draws = 400
    mean = torch.stack([fast_dropout(x[:200], 0.3) for _ in range(draws)]).mean(0)
    z = (mean - x[:200]) / (x[:200].abs() * (0.3 / 0.7 / draws) ** 0.5)  # standard errors from E = x
    assert float(z.abs().max()) < 6 and abs(float(z.mean())) < 0.05  # unbiased
    module = FastDropout(0.1).eval()
    assert module(x) is x and fast_dropout(x, 0.1, training=False) is x
    with pytest.raises(ValueError, match="'p'"):
        FastDropout(1.0)
    ff = FeedForward(8, 16, dropout=0.1, fast_dropout=True)
    assert isinstance(ff.dropout, FastDropout) and set(ff.state_dict()) == set(FeedForward(8, 16).state_dict())


def test_attention_dropout_path_matches_softmax_with_its_mask_and_is_unbiased():
    torch.random.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 10, 8, dtype=torch.float64) for _ in range(3))
    torch.random.manual_seed(3)
    out = attend(q, k, v, dropout=0.2)
    torch.random.manual_seed(3)
    keep = keep_mask((2, 3, 10, 10), 0.2)
    weights = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, -1) * keep / (1 - rounded_drop_probability(0.2))
    torch.testing.assert_close(out, weights @ v)
    plain = F.scaled_dot_product_attention(q, k, v)
    mean = torch.stack([attend(q, k, v, dropout=0.2) for _ in range(3000)]).mean(0)
    torch.testing.assert_close(mean, plain, atol=0.05, rtol=0)
    q.requires_grad_(True)
    attend(q, k, v, dropout=0.2).sum().backward()
    assert q.grad is not None and bool(q.grad.abs().sum() > 0)


def test_rope_complex_form_equals_the_real_rotation():
    rope = RotaryEmbedding(8, 4, convention="pairs", per_head_bands=True)
    qkv = torch.randn(2, 12, 3, 4, 8)  # (B, T, 3, H, d) as the attention block views it
    q = qkv.permute(2, 0, 3, 1, 4)[0]  # strided (B, H, T, d): the complex path
    positions = torch.arange(12)
    angles = rope.angles(positions).transpose(-3, -2)  # (H, T, d/2)
    even, odd = q[..., 0::2], q[..., 1::2]
    expected = torch.stack([even * angles.cos() - odd * angles.sin(), even * angles.sin() + odd * angles.cos()], -1)
    torch.testing.assert_close(rope(q, positions), expected.flatten(-2))
    # the real path (bfloat16 has no complex form) agrees within its precision
    torch.testing.assert_close(rope(q.bfloat16(), positions).float(), expected.flatten(-2), atol=0.05, rtol=0.02)
