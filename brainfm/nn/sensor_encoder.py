"""Sensor encoder: one embedding per channel from its position, orientation and type (BrainOmni spec §4.2 step 2)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SensorEncoder", "normalize_positions"]


def normalize_positions(sensor_pos: torch.Tensor, sensor_type: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """BrainOmni's position normalisation (spec §3.2 step 5), per batch row and per modality group.

    For the EEG channels (type 0) and, separately, the MEG channels (types 1 and 2) with a known
    position: subtract their mean ``xyz``, then divide by ``sqrt(3 mean |xyz|^2)`` of the centred
    positions, so that each group has mean 0 and mean squared norm 1/3. Orientations (the last
    three values) are not scaled; channels outside ``known`` are left as they are.

    Parameters
    ----------
    sensor_pos : torch.Tensor, shape (B, C, 6)
        Positions (metres) and orientations.
    sensor_type : torch.Tensor of int, shape (B, C)
        EEG 0, MAG 1, GRAD 2 (others and padding: left as they are).
    known : torch.Tensor of bool, shape (B, C)
        Channels with a known position.

    Returns
    -------
    sensor_pos : torch.Tensor, shape (B, C, 6)
    """
    xyz = sensor_pos[..., :3]
    out = xyz.clone()
    for group in (sensor_type == 0, (sensor_type == 1) | (sensor_type == 2)):
        member = (group & known)[..., None].to(xyz.dtype)  # (B, C, 1)
        count = member.sum(1, keepdim=True).clamp_min(1.0)
        centred = xyz - (xyz * member).sum(1, keepdim=True) / count
        scale = torch.sqrt(3.0 * (centred.pow(2).sum(-1, keepdim=True) * member).sum(1, keepdim=True) / count)
        normalised = centred / scale.clamp_min(1e-12)
        out = torch.where(member.bool(), normalised, out)
    return torch.cat([out, sensor_pos[..., 3:]], -1)


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
