"""BrainOmni masking and masked-token loss (spec brainomni.md §9 items 11 and 12)."""

from __future__ import annotations

import torch

from brainfm.models.token_masking import mask_token_grid, masked_token_loss


def _grid(b: int, c: int, w: int) -> torch.Tensor:
    """Features whose first value is the position's own id (so a kept feature is recognisable)."""
    ids = torch.arange(b * c * w, dtype=torch.float64).reshape(b, c, w, 1)
    return torch.cat([ids, torch.zeros_like(ids)], dim=-1)  # (B, C', W, 2)


def test_masking_proportions_over_1e5_positions():  # item 11
    features = _grid(4, 16, 1563)  # 100,032 positions
    token = torch.tensor([-1.0, 7.0], dtype=torch.float64)
    out, masked = mask_token_grid(features, token, generator=torch.Generator().manual_seed(0))
    n = masked.numel()
    assert n >= 100_000
    assert abs(masked.float().mean().item() - 0.5) < 0.01
    holds_token = (out == token).all(-1)
    assert not (holds_token & ~masked).any()  # the mask token only where masked
    assert abs(holds_token[masked].float().mean().item() - 0.8) < 0.01
    # unmasked positions keep their own feature exactly
    assert torch.equal(out[~masked], features[~masked])
    # masked positions without the mask token hold another position's feature
    others = masked & ~holds_token
    assert others.sum() > 0.19 * masked.sum()
    own = out[others][:, 0] == features[others][:, 0]
    assert int(own.sum()) <= 3  # only by a coincidental draw (expected ~0.1 of 10^4)
    valid = (out[others][:, 0] >= 0) & (out[others][:, 0] < n) & (out[others][:, 1] == 0)
    assert valid.all()  # a real feature of the minibatch, not noise


def test_masking_is_reproducible_with_a_generator_and_differs_between_seeds():
    features, token = _grid(2, 4, 10), torch.zeros(2, dtype=torch.float64)
    a = mask_token_grid(features, token, generator=torch.Generator().manual_seed(1))
    b = mask_token_grid(features, token, generator=torch.Generator().manual_seed(1))
    c = mask_token_grid(features, token, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_mask_token_receives_the_gradient_of_the_positions_it_fills():
    features = torch.randn(2, 4, 8, 3)
    token = torch.zeros(3, requires_grad=True)
    out, masked = mask_token_grid(features, token, generator=torch.Generator().manual_seed(0))
    out.sum().backward()
    holds_token = (out == 0).all(-1) & masked
    assert torch.allclose(token.grad, torch.full((3,), float(holds_token.sum())))


def test_loss_ignores_logits_at_unmasked_positions():  # item 12
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 16, 20, 4, 32, generator=g)
    targets = torch.randint(0, 32, (2, 16, 20, 4), generator=g)
    masked = torch.rand(2, 16, 20, generator=g) < 0.5
    loss, accuracy = masked_token_loss(logits, targets, masked)
    changed = logits.clone()
    changed[~masked] = torch.randn(int((~masked).sum()), 4, 32, generator=g) * 100
    assert torch.equal(masked_token_loss(changed, targets, masked)[0], loss)
    # ... while a change at one masked position does change it
    changed = logits.clone()
    first = masked.nonzero()[0]
    changed[tuple(first)] += 5 * torch.randn(4, 32, generator=g)
    assert not torch.equal(masked_token_loss(changed, targets, masked)[0], loss)
    assert accuracy.shape == (4,)


def test_loss_is_the_mean_cross_entropy_over_masked_positions_and_levels_and_accuracy_per_level():
    logits = torch.full((1, 1, 3, 2, 4), -10.0)
    targets = torch.tensor([[[[0, 1], [2, 3], [1, 1]]]])
    masked = torch.tensor([[[True, True, False]]])
    logits[0, 0, 0, 0, 0] = 10.0  # right
    logits[0, 0, 0, 1, 0] = 10.0  # wrong (target 1)
    logits[0, 0, 1, 0, 2] = 10.0  # right
    logits[0, 0, 1, 1, 3] = 10.0  # right
    logits[0, 0, 2, :, :] = 0.0  # unmasked: ignored
    loss, accuracy = masked_token_loss(logits, targets, masked)
    expected = torch.nn.functional.cross_entropy(logits[0, 0, :2].reshape(4, 4), targets[0, 0, :2].reshape(4))
    assert torch.allclose(loss, expected)
    assert accuracy.tolist() == [1.0, 0.5]


def test_a_grid_without_masked_positions_gives_zero_loss_with_a_gradient_path():
    logits = torch.randn(1, 2, 3, 4, 5, requires_grad=True)
    loss, accuracy = masked_token_loss(logits, torch.zeros(1, 2, 3, 4, dtype=torch.long),
                                       torch.zeros(1, 2, 3, dtype=torch.bool))
    assert float(loss.detach()) == 0.0 and accuracy.tolist() == [0.0] * 4
    loss.backward()
    assert logits.grad is not None
