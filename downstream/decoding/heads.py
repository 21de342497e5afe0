"""Classification heads on (B, N, D) token features, parametrised by pooling (never copied per task)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["ClassificationHead", "pool_tokens"]


def pool_tokens(features: torch.Tensor, pooling: Literal["mean", "cls", "flatten"]) -> torch.Tensor:
    """(B, N, D) -> (B, D) by mean over tokens or the first token, or (B, N x D) flattened."""
    if pooling == "mean":
        return features.mean(dim=1)
    if pooling == "cls":
        return features[:, 0]
    if pooling == "flatten":
        return features.flatten(1)
    raise ValueError(f"Unknown pooling {pooling!r}; allowed: 'mean', 'cls', 'flatten'.")


class ClassificationHead(nn.Module):
    """Pooling -> linear, or pooling -> MLP (LayerNorm, Linear, GELU, dropout, Linear).

    ``weighted`` pooling is BaRISTA's readout (``specs/barista.md`` §6.7): a learned weight per
    token, ``Linear(N -> 1, no bias)`` over the (B, D, N) features, gives (B, D); it ties the head
    to one montage (N = channels x patches).

    Parameters
    ----------
    n_tokens, feature_dim : int
        N and D of the features.
    n_outputs : int
        Classes.
    pooling : "mean" | "cls" | "flatten" | "weighted"
        How tokens are pooled.
    kind : "linear" | "mlp"
        Head type.
    hidden : int
        MLP width.
    drop_prob : float
        MLP dropout.
    """

    def __init__(self, n_tokens: int, feature_dim: int, n_outputs: int,
                 pooling: Literal["mean", "cls", "flatten", "weighted"] = "mean", kind: Literal["linear", "mlp"] = "linear",
                 hidden: int = 128, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.pooling, self.n_tokens = pooling, int(n_tokens)
        self.token_weights = nn.Linear(n_tokens, 1, bias=False) if pooling == "weighted" else None
        n_in = n_tokens * feature_dim if pooling == "flatten" else feature_dim
        if kind == "linear":
            self.net: nn.Module = nn.Sequential(nn.LayerNorm(n_in), nn.Linear(n_in, n_outputs))
        elif kind == "mlp":
            self.net = nn.Sequential(nn.LayerNorm(n_in), nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(drop_prob),
                                     nn.Linear(hidden, n_outputs))
        else:
            raise ValueError(f"Unknown head {kind!r}; allowed: 'linear', 'mlp'.")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, n_outputs) logits."""
        if self.token_weights is not None:
            if features.shape[1] != self.n_tokens:
                raise ValueError(f"The weighted pooling was built for {self.n_tokens} tokens per trial, got "
                                 f"{features.shape[1]}: the montage differs; use pooling: mean.")
            return self.net(self.token_weights(features.transpose(1, 2)).squeeze(-1))  # (B, D, N) -> (B, D)
        return self.net(pool_tokens(features, self.pooling))
