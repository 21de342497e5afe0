"""Position-wise feed-forward blocks: a two-layer MLP or a gated (SwiGLU) one."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from brainfm.nn.dropout import FastDropout

__all__ = ["ACTIVATIONS", "FeedForward", "GatedFeedForward", "activation"]

#: Activations by name (YAML configs name them). ``leaky_relu`` uses slope 0.2 (MEG-GPT spec §5.1).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "selu": F.selu,
    "silu": F.silu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Invalid value for the 'activation' parameter. Allowed values are "
                         f"{', '.join(sorted(ACTIVATIONS))}, but got {name!r} instead.")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """``Linear(dim, hidden) -> activation -> Linear(hidden, dim) -> Dropout``.

    Parameters
    ----------
    dim, hidden : int
        Widths.
    activation : str
        Name in :data:`ACTIVATIONS`.
    dropout : float
        Dropout on the output.
    bias : bool
        Biases on both layers.
    fast_dropout : bool
        Draw the dropout mask with :class:`~brainfm.nn.dropout.FastDropout` (16 random bits per
        element, several times cheaper on the CPU) instead of :class:`torch.nn.Dropout`.
    """

    def __init__(self, dim: int, hidden: int, activation: str = "gelu", dropout: float = 0.0, bias: bool = True,
                 fast_dropout: bool = False) -> None:
        super().__init__()
        self.act = globals()["activation"](activation)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.dropout = FastDropout(dropout) if fast_dropout else nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class GatedFeedForward(nn.Module):
    """``down(act(gate(x)) * up(x))`` (SwiGLU with ``activation="silu"``; BaRISTA's MLP).

    Parameters
    ----------
    dim, hidden : int
        Widths.
    activation : str
        Name in :data:`ACTIVATIONS` applied to the gate.
    dropout : float
        Dropout on the output.
    bias : bool
        Biases on the three projections.
    """

    def __init__(self, dim: int, hidden: int, activation: str = "silu", dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.act = globals()["activation"](activation)
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)
        self.up_proj = nn.Linear(dim, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.dropout(self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x)))
