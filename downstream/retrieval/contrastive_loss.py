"""CLIP-style symmetric contrastive loss with a learned temperature (spec §5.1).

Two modes:

- ``"standard"``: both sides L2-normalised, logits ``exp(logit_scale) * a . b`` with the scale
  clamped at 100, as in CLIP and open_clip.
- ``"brainflora"``: the reference's behaviour, needed to reuse its checkpoints: features are
  used as they come (the adapters end in a LayerNorm, not an L2 normalisation) and
  ``logit_scale`` multiplies the logits without exponentiation, so the initial effective
  temperature is 1 / 2.659 = 0.376 instead of 0.07.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from brainfm._check import check_option

__all__ = ["CLIP_MODES", "ContrastiveLoss"]

CLIP_MODES = ("brainflora", "standard")
_MAX_SCALE = 100.0


class ContrastiveLoss(nn.Module):
    """Symmetric cross-entropy between brain and target features, matched by batch position.

    Parameters
    ----------
    clip_mode : {"standard", "brainflora"}
        ``"standard"`` (default, as issue 12 asks: L2-normalised features, ``exp(logit_scale)``
        clamped at 100) or ``"brainflora"`` (parity with the reference, needed to reuse its
        checkpoints: raw features, scale without ``exp``).
    init_temperature : float
        Initial temperature; ``logit_scale`` starts at ``log(1 / init_temperature)``
        (2.659 for the default 0.07).
    learn_scale : bool
        Whether ``logit_scale`` is a trained parameter (it is in the reference).
    """

    def __init__(
        self, clip_mode: str = "standard", init_temperature: float = 0.07, learn_scale: bool = True
    ) -> None:
        super().__init__()
        self.clip_mode = check_option("clip_mode", clip_mode, CLIP_MODES)
        if not init_temperature > 0:
            raise ValueError(f"init_temperature must be positive, got {init_temperature}.")
        value = torch.tensor(math.log(1.0 / init_temperature), dtype=torch.float32)
        self.logit_scale = nn.Parameter(value, requires_grad=learn_scale)

    def scale(self) -> torch.Tensor:
        """The multiplier applied to the similarities in the current mode."""
        if self.clip_mode == "standard":
            return self.logit_scale.exp().clamp(max=_MAX_SCALE)
        return self.logit_scale

    def logits(self, brain: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Similarity logits (B, B): row i compares brain item i with every target.

        Parameters
        ----------
        brain : Tensor of shape (B, D)
            Brain features.
        target : Tensor of shape (B, D)
            Target (concept) features; row i matches brain row i.

        Returns
        -------
        logits : Tensor of shape (B, B)
        """
        if brain.ndim != 2 or brain.shape != target.shape:
            raise ValueError(
                f"brain and target must both be (batch, features) with the same shape, "
                f"got {tuple(brain.shape)} and {tuple(target.shape)}."
            )
        if self.clip_mode == "standard":
            brain = F.normalize(brain, dim=-1)
            target = F.normalize(target, dim=-1)
        return self.scale() * brain @ target.T

    def forward(self, brain: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of the brain-to-target and target-to-brain cross-entropies.

        Parameters
        ----------
        brain : Tensor of shape (B, D)
            Brain features.
        target : Tensor of shape (B, D)
            Target features; row i matches brain row i.

        Returns
        -------
        loss : Tensor (scalar)
        """
        logits = self.logits(brain, target)
        labels = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
