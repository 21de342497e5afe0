"""Rotary position embedding (RoPE), in the two conventions the published models use.

- ``"half"`` (GPT-NeoX / BaRISTA): the head's features are split in two halves, ``x[:d/2]`` and
  ``x[d/2:]`` form the rotated pairs.
- ``"pairs"`` (BrainOmni, the complex form): adjacent features ``(x[2i], x[2i+1])`` form the pairs.

``per_head_bands=True`` computes the frequencies ``base^(-2i/d_att)`` across the whole attention
width ``d_att = n_heads * head_dim`` and gives each head its own band of them (BrainOmni spec
§5.6); otherwise every head uses the same ``head_dim/2`` frequencies.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["RotaryEmbedding"]


class RotaryEmbedding(nn.Module):
    """Rotate query/key features by angles ``position * frequency``.

    Parameters
    ----------
    head_dim : int
        Features per head (even).
    n_heads : int
        Heads (only used with ``per_head_bands``).
    base : float
        Frequency base (10,000 in both references).
    convention : {"half", "pairs"}
        Which features are paired (module docstring).
    per_head_bands : bool
        Give each head its own band of frequencies computed over ``n_heads * head_dim``.

    Notes
    -----
    ``inv_freq`` (shape ``(n_heads, head_dim/2)`` or ``(1, head_dim/2)``) is a non-persistent
    buffer: it is derived from the arguments, so checkpoints need not carry it.
    """

    def __init__(self, head_dim: int, n_heads: int = 1, base: float = 10_000.0,
                 convention: Literal["half", "pairs"] = "half", per_head_bands: bool = False) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}.")
        if convention not in ("half", "pairs"):
            raise ValueError(f"Invalid value for the 'convention' parameter. Allowed values are 'half', 'pairs', but got {convention!r} instead.")
        self.head_dim, self.n_heads, self.base, self.convention = head_dim, n_heads, base, convention
        width = n_heads * head_dim if per_head_bands else head_dim
        inv_freq = base ** (-torch.arange(0, width, 2, dtype=torch.float64) / width)  # (width/2,)
        inv_freq = inv_freq.reshape(n_heads if per_head_bands else 1, head_dim // 2)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def angles(self, positions: torch.Tensor) -> torch.Tensor:
        """Angles ``(..., T, H or 1, head_dim/2)`` for integer or float ``positions`` of shape ``(..., T)``."""
        return positions.to(torch.float32)[..., None, None] * self.inv_freq

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``x``.

        Parameters
        ----------
        x : torch.Tensor, shape (B, H, T, head_dim)
            Queries or keys.
        positions : torch.Tensor, shape (T,) or (B, T)
            Position of each step (tokens sharing a position get the same rotation).

        Returns
        -------
        rotated : torch.Tensor
            Same shape and dtype as ``x``.
        """
        angles = self.angles(positions)  # (T, h, d/2) or (B, T, h, d/2)
        angles = angles.transpose(-3, -2)  # (h, T, d/2) or (B, h, T, d/2)
        if self.convention == "pairs" and x.dtype in (torch.float32, torch.float64) and x.stride(-1) == 1 \
                and all(s % 2 == 0 for s in x.stride()[:-1]) and x.storage_offset() % 2 == 0:
            # the complex form: one complex product instead of slices, four products and a stack
            # (~4x faster forward + backward on the CPU); (..., d) -> (..., d/2) complex, a view
            rotation = torch.polar(torch.ones_like(angles), angles).to(torch.complex64 if x.dtype == torch.float32
                                                                        else torch.complex128)
            pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
            return torch.view_as_real(pairs * rotation).flatten(-2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        if self.convention == "half":
            first, second = x[..., : self.head_dim // 2], x[..., self.head_dim // 2:]
            return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
