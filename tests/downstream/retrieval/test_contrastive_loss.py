"""Contrastive loss in both modes (spec §5.1, §8.6)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss


def _features(batch: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=generator), torch.randn(batch, dim, generator=generator)


def test_parity_logits_are_unexponentiated_scale_times_raw_products():
    loss = ContrastiveLoss("brainflora")
    a, b = _features(8, 16, seed=0)
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert loss.logit_scale.item() == pytest.approx(2.659, abs=1e-3)
    torch.testing.assert_close(loss.logits(a, b), 2.6593 * a @ b.T, rtol=1e-4, atol=1e-4)


def test_standard_logits_are_exp_scale_times_cosines_clamped_at_100():
    loss = ContrastiveLoss("standard")
    a, b = _features(8, 16, seed=1)
    cosines = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    torch.testing.assert_close(loss.logits(a, b), (1 / 0.07) * cosines, rtol=1e-4, atol=1e-4)
    # scaling the inputs changes nothing in standard mode, everything in parity mode
    torch.testing.assert_close(loss.logits(3 * a, b), loss.logits(a, b))
    parity = ContrastiveLoss("brainflora")
    assert not torch.allclose(parity.logits(3 * a, b), parity.logits(a, b))
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    torch.testing.assert_close(loss.logits(a, b), 100.0 * cosines, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["brainflora", "standard"])
def test_loss_is_symmetric_in_its_inputs(mode):
    loss = ContrastiveLoss(mode)
    a, b = _features(16, 32, seed=2)
    torch.testing.assert_close(loss(a, b), loss(b, a))


@pytest.mark.parametrize("mode", ["brainflora", "standard"])
def test_identical_well_separated_pairs_with_a_large_scale_give_near_zero_loss(mode):
    loss = ContrastiveLoss(mode)
    with torch.no_grad():
        loss.logit_scale.fill_(50.0 if mode == "brainflora" else math.log(100.0))
    a = torch.eye(16)  # orthonormal: every pair well separated
    assert loss(a, a).item() < 1e-6
    # and a wrong pairing is heavily penalised
    assert loss(a, a.roll(1, dims=0)).item() > 10.0


@pytest.mark.parametrize("mode", ["brainflora", "standard"])
def test_random_features_give_about_log_batch(mode):
    batch = 64
    a, b = _features(batch, 4096, seed=3)
    if mode == "brainflora":
        # raw products: small features so that 2.659 * a.b stays near zero, as it does for
        # independent features of small norm
        a, b = a / 64.0, b / 64.0
    value = ContrastiveLoss(mode)(a, b).item()
    assert value == pytest.approx(math.log(batch), rel=0.05)


@pytest.mark.parametrize("mode", ["brainflora", "standard"])
def test_gradients_reach_the_scale_and_both_inputs(mode):
    loss = ContrastiveLoss(mode)
    a, b = _features(8, 16, seed=4)
    a.requires_grad_(True)
    b.requires_grad_(True)
    loss(a, b).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs() > 0
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_fixed_scale_and_invalid_arguments():
    assert not ContrastiveLoss(learn_scale=False).logit_scale.requires_grad
    with pytest.raises(ValueError, match="'clip_mode' parameter"):
        ContrastiveLoss("clip")
    with pytest.raises(ValueError, match="init_temperature must be positive"):
        ContrastiveLoss(init_temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        ContrastiveLoss()(torch.zeros(4, 3), torch.zeros(4, 2))


def test_default_mode_is_standard():
    assert ContrastiveLoss().clip_mode == "standard"
