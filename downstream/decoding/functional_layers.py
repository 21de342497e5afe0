"""Functional neural-network layers (connectome-ntf spec §8), a from-scratch deep baseline.

Heinrichs, Heim and Weber (ICML 2023, arXiv:2301.05869): weights are functions expanded in a
fixed basis (Legendre polynomials on [-1, 1] or Fourier functions on [0, 1]) with learned
coefficients. ``FunctionalConv1d``'s kernel is ``basis @ coefficients``, shape
(resolution, C_in, F), applied as an ordinary 'valid' convolution over time; with pooling the
output is averaged over time (shift-invariant). No bias by default, as in the reference code;
an optional functional bias adds a basis expansion at each output time point.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["FunctionalConv1d", "FunctionalLinear", "FunctionalNet", "functional_basis"]


def functional_basis(kind: Literal["legendre", "fourier"], resolution: int, n_functions: int) -> torch.Tensor:
    """Basis matrix (resolution, n_functions) on an even grid.

    Parameters
    ----------
    kind : "legendre" | "fourier"
        Legendre polynomials on [-1, 1]; or 1, sqrt(2) cos(pi i s), sqrt(2) sin(pi (i + 1) s)
        alternating on [0, 1].
    resolution : int
        Grid points.
    n_functions : int
        Basis functions.

    Returns
    -------
    basis : torch.Tensor of float32
    """
    if kind == "legendre":
        grid = np.linspace(-1, 1, resolution)
        columns = [np.polynomial.legendre.Legendre.basis(i)(grid) for i in range(n_functions)]
    elif kind == "fourier":
        grid = np.linspace(0, 1, resolution)
        columns = [np.ones(resolution)]
        for i in range(1, n_functions):
            k = (i + 1) // 2 * 2  # 2, 2, 4, 4, ...
            columns.append(np.sqrt(2) * (np.cos(np.pi * k * grid) if i % 2 else np.sin(np.pi * k * grid)))
    else:
        raise ValueError(f"Unknown basis {kind!r}; allowed: 'legendre', 'fourier'.")
    return torch.tensor(np.stack(columns, axis=1), dtype=torch.float32)


class FunctionalConv1d(nn.Module):
    """Convolution whose kernel is a basis expansion: kernel (resolution, C_in, F) = basis @ coefficients."""

    def __init__(self, in_channels: int, filters: int, n_functions: int, resolution: int,
                 basis: Literal["legendre", "fourier"] = "legendre", pooling: bool = False,
                 bias: bool = False) -> None:
        super().__init__()
        self.register_buffer("basis", functional_basis(basis, resolution, n_functions))  # (R, n_fn)
        self.coefficients = nn.Parameter(torch.randn(n_functions, in_channels, filters) / np.sqrt(n_functions * in_channels))
        self.bias_coefficients = nn.Parameter(torch.zeros(n_functions, filters)) if bias else None
        self.pooling = pooling

    @property
    def kernel(self) -> torch.Tensor:
        """(resolution, C_in, F)."""
        return torch.einsum("rn,ncf->rcf", self.basis, self.coefficients)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, F, T - resolution + 1), or (B, F) with pooling."""
        weight = self.kernel.permute(2, 1, 0)  # (F, C_in, R) as conv1d wants
        y = F.conv1d(x, weight) / self.basis.shape[0]
        if self.bias_coefficients is not None:
            n_out = y.shape[-1]
            grid = functional_basis("legendre", n_out, self.bias_coefficients.shape[0]).to(y)  # (T', n_fn)
            y = y + (grid @ self.bias_coefficients).T[None]  # (1, F, T')
        return y.mean(dim=-1) if self.pooling else y


class FunctionalLinear(nn.Module):
    """Functional dense layer: each unit's weight is a function of time; input length = resolution."""

    def __init__(self, in_channels: int, units: int, n_functions: int, resolution: int,
                 basis: Literal["legendre", "fourier"] = "fourier", pooling: bool = True) -> None:
        super().__init__()
        self.register_buffer("basis", functional_basis(basis, resolution, n_functions))  # (R, n_fn)
        self.coefficients = nn.Parameter(torch.randn(n_functions, in_channels, units) / np.sqrt(n_functions * in_channels))
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, R) -> (B, units, R) output functions, or (B, units) pooled."""
        weights = torch.einsum("rn,ncu->rcu", self.basis, self.coefficients)  # (R, C_in, U)
        y = torch.einsum("bcr,rcu->bur", x, weights)
        return y.mean(dim=-1) if self.pooling else y


class FunctionalNet(nn.Module):
    """The reference template for (B, C, T) windows: per-channel standardisation -> two functional
    convolutions (ELU) -> a pooled functional dense layer -> logits."""

    def __init__(self, n_chans: int, n_times: int, n_outputs: int, filters: int = 16, resolution: int = 32) -> None:
        super().__init__()
        resolution = min(resolution, max(4, n_times // 4))
        self.conv1 = FunctionalConv1d(n_chans, filters, 8, resolution)
        self.conv2 = FunctionalConv1d(filters, filters, 12, resolution)
        n_rest = n_times - 2 * (resolution - 1)
        if n_rest < 1:
            raise ValueError(f"FunctionalNet needs windows longer than {2 * (resolution - 1)} samples, got {n_times}.")
        self.dense = FunctionalLinear(filters, n_outputs, 4, n_rest)

    def forward(self, signal: torch.Tensor, channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, n_outputs) logits."""
        x = F.layer_norm(signal, signal.shape[-1:], eps=1e-10)  # standardise each channel over time
        if channel_mask is not None:
            x = x * channel_mask[..., None]
        x = F.elu(self.conv1(x))
        x = F.elu(self.conv2(x))
        return self.dense(x)
