"""BaRISTA's pretraining: masked latent reconstruction at channel or region scale (``specs/barista.md`` §7).

The paper publishes the idea, not the recipe; every choice below is brainfm's configurable
default (spec §7)::

    latents z (B, L, 64)  = pooler output of each token (before the spatial embedding)
    target               = z.detach()                                   (target: tokenizer_sg)
                         | EMA copy of the patch encoder + pooler (decay 0.996) (target: ema_teacher)
    target               = layer_norm(target) over its 64 features     (target_norm: token; default none)
    mask units           = channels (all 12 patches) or regions (all channels of a region_id)
                           drawn at random until >= mask_ratio of the tokens are masked,
                           at least one unit left visible
    input                = where(masked, mask_token, z) + spatial embedding (RoPE positions kept)
    h = backbone.encode(input)
    loss_latent          = MSE(multi_head_fc(h), target) on masked tokens       Linear(64 -> 64)
    loss_raw             = MSE(masked_recon(h), raw patch) on masked tokens     Linear(64 -> 512)
    loss                 = loss_latent + raw_weight * loss_raw

The raw-patch term anchors the jointly trained patch encoder against collapse (its output is
the latent target). Heads, mask token and the EMA teacher live here, so the backbone's
parameters are exactly the released model's.

``target_norm: token`` standardises every target token over its features (like MAE's
normalised pixel targets): the jointly trained encoder's output scale then cannot drift, so
the latent loss and its trivial predictor (the mean target) stay on one scale for the whole
run. The EMA teacher is updated at every training forward from the student's current weights
(one step behind an update after the optimiser step; with gradient accumulation, once per
micro-batch) and is copied from the student the first time it is used.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.models.barista import BaristaBackbone, DilatedConvEncoder, refuse_without_regions
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
    target : "tokenizer_sg" | "ema_teacher"
        The pooler output, stop-gradient (spec default), or the output of an exponential moving
        average of the patch encoder and pooler (spec option).
    target_norm : "none" | "token"
        Standardise each target token over its features (``token``) or not (spec default).
    ema_decay : float
        Decay of the EMA teacher (0.996; ``target: ema_teacher`` only); 1.0 keeps the teacher at
        its first copy of the student, i.e. fixed targets from the initial (random) patch encoder.
    raw_weight : float
        Weight of the raw-patch reconstruction term.
    dim : int
        Token width (the backbone's).
    patch_size : int
        Samples per patch (the backbone's).
    encoder_channels : list of int | None
        Channel counts of the backbone's temporal encoder (the EMA teacher copies it; default
        the released ``[1, 5, 5, 5, 5, 1]``).
    """

    def __init__(self, mask_unit: Literal["channel", "region"] = "channel", mask_ratio: float = 0.5,
                 target: Literal["tokenizer_sg", "ema_teacher"] = "tokenizer_sg",
                 target_norm: Literal["none", "token"] = "none", ema_decay: float = 0.996, raw_weight: float = 1.0,
                 dim: int = 64, patch_size: int = 512, encoder_channels: list[int] | None = None) -> None:
        super().__init__()
        if mask_unit not in ("channel", "region"):
            raise ConfigError(f"Invalid value for the 'mask_unit' parameter. Allowed values are 'channel', 'region', "
                              f"but got {mask_unit!r} instead.")
        if target not in ("tokenizer_sg", "ema_teacher"):
            raise ConfigError(f"Invalid value for the 'target' parameter. Allowed values are 'tokenizer_sg', "
                              f"'ema_teacher', but got {target!r} instead.")
        if target_norm not in ("none", "token"):
            raise ConfigError(f"Invalid value for the 'target_norm' parameter. Allowed values are 'none', 'token', "
                              f"but got {target_norm!r} instead.")
        if not 0.0 <= ema_decay <= 1.0:
            raise ConfigError(f"Invalid value for the 'ema_decay' parameter: must lie in [0, 1], got {ema_decay}.")
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"Invalid value for the 'mask_ratio' parameter: must lie in (0, 1), got {mask_ratio}.")
        self.mask_unit, self.mask_ratio, self.raw_weight = mask_unit, float(mask_ratio), float(raw_weight)
        self.patch_size, self.target, self.target_norm, self.ema_decay = patch_size, target, target_norm, float(ema_decay)
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.multi_head_fc = nn.Linear(dim, dim)  # predicts the latent target
        self.masked_recon = nn.Linear(dim, patch_size)  # predicts the raw patch
        if target == "ema_teacher":  # a frozen copy of the patch encoder and pooler, moved by EMA
            self.teacher_encoder = DilatedConvEncoder(encoder_channels)
            self.teacher_pooler = nn.Linear(patch_size, dim, bias=False)
            for p in [*self.teacher_encoder.parameters(), *self.teacher_pooler.parameters()]:
                p.requires_grad_(False)
            self.register_buffer("teacher_ready", torch.zeros((), dtype=torch.bool))

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None, backbone: Backbone | None) -> None:
        """Refuse region masking on recordings without regions (naming them), and other backbones."""
        if not isinstance(backbone, BaristaBackbone):
            raise ConfigError(f"MaskedLatentObjective trains a BaristaBackbone, got {type(backbone).__name__}.")
        if backbone.patch_size != self.patch_size or backbone.dim != self.mask_token.shape[0]:
            raise ConfigError(f"The objective's dim/patch_size ({self.mask_token.shape[0]}, {self.patch_size}) differ "
                              f"from the backbone's ({backbone.dim}, {backbone.patch_size}).")
        if self.mask_unit == "region":
            refuse_without_regions(facts, "Region-scale masking (mask_unit: region)")
        if self.target == "ema_teacher":
            own = {k: v.shape for k, v in self.teacher_encoder.state_dict().items()}
            if own != {k: v.shape for k, v in backbone.temporal_encoder.state_dict().items()}:
                raise ConfigError("The EMA teacher's temporal encoder differs from the backbone's: set "
                                  "--model.objective.init_args.encoder_channels to the backbone's encoder_channels.")

    @torch.no_grad()
    def update_teacher(self, backbone: BaristaBackbone) -> None:
        """Move the EMA teacher towards the backbone's patch encoder and pooler (copy it the first time)."""
        pairs = [(self.teacher_encoder, backbone.temporal_encoder), (self.teacher_pooler, backbone.temporal_pooler)]
        for teacher, student in pairs:
            for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
                if bool(self.teacher_ready):
                    t.lerp_(s.detach(), 1.0 - self.ema_decay)
                else:
                    t.copy_(s.detach())
        self.teacher_ready.fill_(True)

    def targets(self, latents: torch.Tensor, batch: Batch, backbone: BaristaBackbone) -> torch.Tensor:
        """The latent target of every token, (B, L, dim), without gradient."""
        if self.target == "tokenizer_sg":
            target = latents.detach()
        else:
            if self.training or not bool(self.teacher_ready):
                self.update_teacher(backbone)
            with torch.no_grad():
                b, c, t = batch.signal.shape
                n = t // self.patch_size
                patches = batch.signal[..., : n * self.patch_size].reshape(b * c * n, 1, self.patch_size)
                pooled = self.teacher_pooler(self.teacher_encoder(patches).squeeze(1))  # (B*C*n, dim)
                target = pooled.view(b, c, n, -1).transpose(1, 2).reshape(b, n * c, -1)  # time-major
        if self.target_norm == "token":
            target = F.layer_norm(target, target.shape[-1:], eps=1e-6)
        return target

    def units(self, batch: Batch) -> torch.Tensor:
        """Mask unit of each channel, (B, C)."""
        channel = torch.arange(batch.region_ids.shape[1], device=batch.region_ids.device).expand_as(batch.region_ids)
        if self.mask_unit == "channel":
            return channel
        # a region id, or (for channels without one) a unit of their own beyond every region id
        return torch.where(batch.region_ids > 1, batch.region_ids, channel + int(batch.region_ids.max()) + 1)

    def predict(self, batch: Batch, backbone: BaristaBackbone) -> dict[str, torch.Tensor]:
        """Per-token predictions and targets of one masked forward (the loss terms are computed from them).

        Parameters
        ----------
        batch : Batch
            Windows (per-window z-scored signal).
        backbone : BaristaBackbone
            The model being trained.

        Returns
        -------
        out : dict of str to torch.Tensor
            ``latent_prediction`` and ``target`` (B, L, dim), ``raw_prediction`` and ``raw_target``
            (B, L, patch_size), ``masked`` and ``valid`` (B, L) booleans; tokens are time-major
            (token ``t * C + c`` is patch ``t`` of channel ``c``). Targets carry no gradient.
        """
        latents, spatial, positions, valid = backbone.tokenize(batch)  # (B, L, D) x2, (L,), (B, L)
        n = latents.shape[1] // batch.signal.shape[1]
        masked = draw_unit_mask(self.units(batch), batch.channel_mask, self.mask_ratio).repeat(1, n)  # (B, L)
        tokens = torch.where(masked.unsqueeze(-1), self.mask_token.to(latents.dtype), latents) + spatial
        hidden = backbone.encode(tokens, positions, valid)
        target = self.targets(latents, batch, backbone)  # stop-gradient or EMA teacher, (B, L, dim)
        b, c, _ = batch.signal.shape
        raw_patches = batch.signal[..., : n * self.patch_size].reshape(b, c, n, self.patch_size)
        raw_patches = raw_patches.transpose(1, 2).reshape(b, n * c, self.patch_size)  # time-major like tokens
        return {"latent_prediction": self.multi_head_fc(hidden), "target": target,
                "raw_prediction": self.masked_recon(hidden), "raw_target": raw_patches,
                "masked": masked, "valid": valid}

    def forward(self, batch: Batch, tokenizer: Tokenizer | None = None,
                backbone: Backbone | None = None) -> dict[str, torch.Tensor]:
        """Loss terms: ``loss``, ``latent``, ``raw``; logged, not optimised: ``latent_baseline`` (the
        MSE of the trivial predictor fitted on the batch itself, its mean masked target, whose ``raw``
        counterpart is 1 for z-scored windows: an optimistic reference, see ``bench/barista_pretrain.py``
        for one fitted on training windows), ``target_std`` (per-feature standard deviation of the
        masked targets, averaged over features: near 0 means the target collapsed) and
        ``masked_fraction``."""
        assert isinstance(backbone, BaristaBackbone)
        out = self.predict(batch, backbone)
        target, masked = out["target"], out["masked"]
        latent = masked_mse(out["latent_prediction"], target, masked)
        raw = masked_mse(out["raw_prediction"], out["raw_target"], masked)
        fraction = masked.sum() / out["valid"].sum().clamp_min(1)
        # the trivial predictor: the mean masked target of the batch (raw patches: 0, the window mean)
        weight = masked.to(target.dtype).unsqueeze(-1)
        mean_target = (target * weight).sum((0, 1)) / weight.sum().clamp_min(1.0)
        baseline = masked_mse(mean_target.expand_as(target), target, masked)
        spread = ((target - mean_target).square() * weight).sum((0, 1)) / weight.sum().clamp_min(1.0)  # (dim,)
        return {"loss": latent + self.raw_weight * raw, "latent": latent.detach(), "raw": raw.detach(),
                "latent_baseline": baseline, "target_std": spread.sqrt().mean(), "masked_fraction": fraction.detach()}
