"""BaRISTA's two readout heads for fine-tuning (``specs/barista.md`` §6.7).

``weighted`` (the reference): the features ``(B, L, 64)`` of a fixed montage (``L`` = channels x
patches) are weighted per token, ``Linear(L -> 1, no bias)``, then ``Linear(64 -> n_classes)``;
it ties the head to one montage. ``mean``: the mean over real tokens, then
``Linear(64 -> n_classes)``; it takes any montage (as in the braindecode port).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from brainfm.errors import ConfigError

__all__ = ["BaristaReadout"]


class BaristaReadout(nn.Module):
    """Classify windows from BaRISTA token features.

    Parameters
    ----------
    readout : "weighted" | "mean"
        The head (module docstring).
    n_classes : int
        Outputs (2 in the reference tasks).
    dim : int
        Feature width (64).
    n_tokens : int | None
        Tokens per window (channels x patches), required by ``weighted``.
    """

    def __init__(self, readout: Literal["weighted", "mean"] = "weighted", n_classes: int = 2, dim: int = 64,
                 n_tokens: int | None = None) -> None:
        super().__init__()
        if readout not in ("weighted", "mean"):
            raise ConfigError(f"Invalid value for the 'readout' parameter. Allowed values are 'weighted', 'mean', "
                              f"but got {readout!r} instead.")
        if readout == "weighted" and not n_tokens:
            raise ConfigError("The weighted readout needs n_tokens (channels x patches of the montage); "
                              "use readout: mean for varying montages.")
        self.readout, self.n_tokens = readout, n_tokens
        self.token_weights = nn.Linear(n_tokens, 1, bias=False) if readout == "weighted" else None
        self.classifier = nn.Linear(dim, n_classes)

    def forward(self, features: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, dim) features (and (B, L) real-token mask) -> (B, n_classes) logits."""
        if self.token_weights is not None:
            if features.shape[1] != self.n_tokens:
                raise ValueError(f"The weighted readout was built for {self.n_tokens} tokens per window, got "
                                 f"{features.shape[1]}: the montage differs; use readout: mean.")
            pooled = self.token_weights(features.transpose(1, 2)).squeeze(-1)  # (B, dim, L) -> (B, dim)
        else:
            if valid is None:
                valid = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
            weight = valid.to(features.dtype).unsqueeze(-1)
            pooled = (features * weight).sum(1) / weight.sum(1).clamp_min(1.0)
        return self.classifier(pooled)
