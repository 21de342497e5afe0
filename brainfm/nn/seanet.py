"""SEANet convolutional encoder and decoder (EnCodec's defaults), per channel (BrainOmni spec §4.2 steps 4, 8).

All convolutions use weight normalisation, reflect padding and are non-causal. With
``ratios=[8, 4, 2]`` the encoder maps ``(N, 1, 512)`` to ``(N, dimension, 8)`` (hop 64) and the
decoder maps it back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["SEANetDecoder", "SEANetEncoder"]


class _Conv(nn.Module):
    """Weight-normalised Conv1d with non-causal reflect padding (output length ceil(L / stride))."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel, stride))
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.kernel - self.stride
        length = x.shape[-1]
        frames = (length - self.kernel + total) / self.stride + 1
        extra = (math.ceil(frames) - 1) * self.stride + (self.kernel - total) - length
        right = total // 2
        left = total - right
        pad_right = right + extra
        if left == 0 and pad_right == 0:  # 1x1 convolutions: no padded copy (a third of the encoder's pads)
            return self.conv(x)
        # reflect needs more samples than the padding; very short inputs are zero-padded instead
        mode = "reflect" if max(left, pad_right) < length else "constant"
        return self.conv(F.pad(x, (left, pad_right), mode=mode))


class _ConvTranspose(nn.Module):
    """Weight-normalised ConvTranspose1d, trimmed symmetrically to ``stride * L`` samples."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, stride))
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        total = self.kernel - self.stride
        right = total // 2
        left = total - right
        return y[..., left : y.shape[-1] - right]


class _ResBlock(nn.Module):
    """ELU -> Conv(d -> d/2, k3) -> ELU -> Conv(d/2 -> d, k1), plus a 1x1-conv shortcut."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ELU(), _Conv(dim, dim // 2, 3), nn.ELU(), _Conv(dim // 2, dim, 1))
        self.shortcut = _Conv(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class _LSTM(nn.Module):
    """Two-layer LSTM over time with a skip connection, on (N, C, T)."""

    def __init__(self, dim: int, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.transpose(1, 2)
        return (self.lstm(y)[0] + y).transpose(1, 2)


class SEANetEncoder(nn.Module):
    """(N, 1, T) -> (N, dimension, T / prod(ratios)).

    Parameters
    ----------
    n_filters : int
        Channels after the first convolution (doubled at each stage).
    ratios : list of int
        Decoder-order strides (EnCodec convention); the encoder uses them reversed.
    dimension : int
        Output features.
    kernel_size, last_kernel_size : int
        First and last convolution kernels.
    lstm_layers : int
        LSTM layers (0: none).
    """

    def __init__(self, n_filters: int = 32, ratios: tuple[int, ...] = (8, 4, 2), dimension: int = 256,
                 kernel_size: int = 5, last_kernel_size: int = 5, lstm_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [_Conv(1, n_filters, kernel_size)]
        width = n_filters
        for ratio in reversed(ratios):
            layers += [_ResBlock(width), nn.ELU(), _Conv(width, width * 2, 2 * ratio, ratio)]
            width *= 2
        if lstm_layers:
            layers.append(_LSTM(width, lstm_layers))
        layers += [nn.ELU(), _Conv(width, dimension, last_kernel_size)]
        self.model = nn.Sequential(*layers)
        self.hop = math.prod(ratios)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """(N, dimension, L) -> (N, 1, L * prod(ratios)); the mirror of :class:`SEANetEncoder`."""

    def __init__(self, n_filters: int = 32, ratios: tuple[int, ...] = (8, 4, 2), dimension: int = 256,
                 kernel_size: int = 5, last_kernel_size: int = 5, lstm_layers: int = 2) -> None:
        super().__init__()
        width = n_filters * 2 ** len(ratios)
        layers: list[nn.Module] = [_Conv(dimension, width, kernel_size)]
        if lstm_layers:
            layers.append(_LSTM(width, lstm_layers))
        for ratio in ratios:
            layers += [nn.ELU(), _ConvTranspose(width, width // 2, 2 * ratio, ratio), _ResBlock(width // 2)]
            width //= 2
        layers += [nn.ELU(), _Conv(width, 1, last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
