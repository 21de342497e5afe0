"""Sensor encoder: one embedding per channel from its position, orientation and type (BrainOmni spec §4.2 step 2)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SensorEncoder"]


class SensorEncoder(nn.Module):
    """pos (6) -> Linear(6, dim/2) -> SELU -> Linear(dim/2, dim), plus a type embedding; then
    ``h + FF(h)`` with FF = Linear(dim, 4 dim) -> SELU -> Linear(4 dim, dim); then RMSNorm.

    Parameters
    ----------
    dim : int
        Embedding width.
    n_types : int
        Sensor types (EEG 0, MAG 1, GRAD 2 for BrainOmni).
    """

    def __init__(self, dim: int = 256, n_types: int = 3) -> None:
        super().__init__()
        self.position = nn.Sequential(nn.Linear(6, dim // 2), nn.SELU(), nn.Linear(dim // 2, dim))
        self.type_embedding = nn.Embedding(n_types, dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SELU(), nn.Linear(4 * dim, dim))
        self.norm = nn.RMSNorm(dim)

    def forward(self, sensor_pos: torch.Tensor, sensor_type: torch.Tensor) -> torch.Tensor:
        """(B, C, 6) positions and orientations, (B, C) type ids -> (B, C, dim); padding (-1) uses type 0."""
        h = self.position(sensor_pos) + self.type_embedding(sensor_type.clamp_min(0))
        return self.norm(h + self.feed_forward(h))
