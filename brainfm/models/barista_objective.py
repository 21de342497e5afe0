"""BaRISTA's pretraining: masked latent reconstruction at channel or region scale (``specs/barista.md`` §7).

The paper publishes the idea, not the recipe; every choice below is brainfm's configurable
default (spec §7)::

    latents z (B, L, 64)  = pooler output of each token (before the spatial embedding)
    target               = z.detach()                                   (target: tokenizer_sg)
    mask units           = channels (all 12 patches) or regions (all channels of a region_id)
                           drawn at random until >= mask_ratio of the tokens are masked,
                           at least one unit left visible
    input                = where(masked, mask_token, z) + spatial embedding (RoPE positions kept)
    h = backbone.encode(input)
    loss_latent          = MSE(multi_head_fc(h), target) on masked tokens       Linear(64 -> 64)
    loss_raw             = MSE(masked_recon(h), raw patch) on masked tokens     Linear(64 -> 512)
    loss                 = loss_latent + raw_weight * loss_raw

The raw-patch term anchors the jointly trained patch encoder against collapse (its output is
the latent target). Heads and mask token live here, so the backbone's parameters are
exactly the released model's.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.models.barista import BaristaBackbone, refuse_without_regions
from brainfm.models.base import Backbone, Objective
from brainfm.nn.data_facts import DataFacts
from brainfm.tokenizers.base import Tokenizer

__all__ = ["MaskedLatentObjective", "draw_unit_mask", "masked_mse"]


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked tokens only.

    Parameters
    ----------
    prediction, target : torch.Tensor, shape (B, L, F)
        Predictions and targets per token.
    masked : torch.Tensor of bool, shape (B, L)
        Tokens that count.

    Returns
    -------
    loss : torch.Tensor
        Scalar: the mean over masked tokens of the per-token mean squared error (0 when none).
    """
    weight = masked.to(prediction.dtype)
    return ((prediction - target).square().mean(-1) * weight).sum() / weight.sum().clamp_min(1.0)


def draw_unit_mask(units: torch.Tensor, valid: torch.Tensor, ratio: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Mask whole units (channels or regions) of each window until ``ratio`` of its channels are masked.

    Parameters
    ----------
    units : torch.Tensor of int64, shape (B, C)
        Unit of each channel (channels of one unit are masked together).
    valid : torch.Tensor of bool, shape (B, C)
        Real, good channels (the others are never masked and do not count).
    ratio : float
        Fraction of valid channels to mask, in (0, 1).
    generator : torch.Generator | None
        Random source (CPU).

    Returns
    -------
    masked : torch.Tensor of bool, shape (B, C)
        Units are drawn in random order until at least ``ratio`` of the valid channels are
        masked, but one unit always stays visible (a window with one unit is not masked).
    """
    masked = torch.zeros_like(valid)
    for b in range(units.shape[0]):
        ids = units[b][valid[b]]
        unique, counts = torch.unique(ids, return_counts=True)
        if len(unique) < 2:
            continue
        order = torch.randperm(len(unique), generator=generator).to(unique.device)
        needed = math.ceil(ratio * int(valid[b].sum()))
        reached = torch.cumsum(counts[order], 0) >= needed
        k = int(torch.nonzero(reached)[0]) + 1 if bool(reached.any()) else len(unique)
        chosen = unique[order[: min(k, len(unique) - 1)]]
        masked[b] = valid[b] & torch.isin(units[b], chosen)
    return masked


class MaskedLatentObjective(Objective):
    """Masked latent reconstruction with a raw-patch anchor (module docstring).

    Parameters
    ----------
    mask_unit : "channel" | "region"
        Masking scale: whole channels, or all channels sharing a ``Batch.region_ids``
        (channels without a region are units of their own).
    mask_ratio : float
        Fraction of tokens masked per window (at least; whole units).
    target : "tokenizer_sg"
        The pooler output, stop-gradient (spec default).
    raw_weight : float
        Weight of the raw-patch reconstruction term.
    dim : int
        Token width (the backbone's).
    patch_size : int
        Samples per patch (the backbone's).
    """

    def __init__(self, mask_unit: Literal["channel", "region"] = "channel", mask_ratio: float = 0.5,
                 target: Literal["tokenizer_sg"] = "tokenizer_sg", raw_weight: float = 1.0, dim: int = 64,
                 patch_size: int = 512) -> None:
        super().__init__()
        if mask_unit not in ("channel", "region"):
            raise ConfigError(f"Invalid value for the 'mask_unit' parameter. Allowed values are 'channel', 'region', "
                              f"but got {mask_unit!r} instead.")
        if target != "tokenizer_sg":
            raise ConfigError(f"Invalid value for the 'target' parameter. Allowed values are 'tokenizer_sg', but got "
                              f"{target!r} instead.")
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"Invalid value for the 'mask_ratio' parameter: must lie in (0, 1), got {mask_ratio}.")
        self.mask_unit, self.mask_ratio, self.raw_weight = mask_unit, float(mask_ratio), float(raw_weight)
        self.patch_size = patch_size
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.multi_head_fc = nn.Linear(dim, dim)  # predicts the latent target
        self.masked_recon = nn.Linear(dim, patch_size)  # predicts the raw patch

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None, backbone: Backbone | None) -> None:
        """Refuse region masking on recordings without regions (naming them), and other backbones."""
        if not isinstance(backbone, BaristaBackbone):
            raise ConfigError(f"MaskedLatentObjective trains a BaristaBackbone, got {type(backbone).__name__}.")
        if backbone.patch_size != self.patch_size or backbone.dim != self.mask_token.shape[0]:
            raise ConfigError(f"The objective's dim/patch_size ({self.mask_token.shape[0]}, {self.patch_size}) differ "
                              f"from the backbone's ({backbone.dim}, {backbone.patch_size}).")
        if self.mask_unit == "region":
            refuse_without_regions(facts, "Region-scale masking (mask_unit: region)")

    def units(self, batch: Batch) -> torch.Tensor:
        """Mask unit of each channel, (B, C)."""
        channel = torch.arange(batch.region_ids.shape[1], device=batch.region_ids.device).expand_as(batch.region_ids)
        if self.mask_unit == "channel":
            return channel
        # a region id, or (for channels without one) a unit of their own beyond every region id
        return torch.where(batch.region_ids > 1, batch.region_ids, channel + int(batch.region_ids.max()) + 1)

    def forward(self, batch: Batch, tokenizer: Tokenizer | None = None,
                backbone: Backbone | None = None) -> dict[str, torch.Tensor]:
        """Loss terms: ``loss``, ``latent``, ``raw``; ``latent_baseline`` (the MSE of the trivial
        predictor, the batch's mean masked target, whose ``raw`` counterpart is 1 for
        z-scored windows) and ``masked_fraction`` are logged, not optimised."""
        assert isinstance(backbone, BaristaBackbone)
        latents, spatial, positions, valid = backbone.tokenize(batch)  # (B, L, D) x2, (L,), (B, L)
        n = latents.shape[1] // batch.signal.shape[1]
        masked = draw_unit_mask(self.units(batch), batch.channel_mask, self.mask_ratio).repeat(1, n)  # (B, L)
        tokens = torch.where(masked.unsqueeze(-1), self.mask_token.to(latents.dtype), latents) + spatial
        hidden = backbone.encode(tokens, positions, valid)
        target = latents.detach()  # stop-gradient target
        latent = masked_mse(self.multi_head_fc(hidden), target, masked)
        b, c, _ = batch.signal.shape
        raw_patches = batch.signal[..., : n * self.patch_size].reshape(b, c, n, self.patch_size)
        raw_patches = raw_patches.transpose(1, 2).reshape(b, n * c, self.patch_size)  # time-major like tokens
        raw = masked_mse(self.masked_recon(hidden), raw_patches, masked)
        fraction = masked.sum() / valid.sum().clamp_min(1)
        # the trivial predictor: the mean masked target of the batch (raw patches: 0, the window mean)
        weight = masked.to(target.dtype).unsqueeze(-1)
        mean_target = (target * weight).sum((0, 1)) / weight.sum().clamp_min(1.0)
        baseline = masked_mse(mean_target.expand_as(target), target, masked)
        return {"loss": latent + self.raw_weight * raw, "latent": latent.detach(), "raw": raw.detach(),
                "latent_baseline": baseline, "masked_fraction": fraction.detach()}
