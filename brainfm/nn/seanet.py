"""SEANet convolutional encoder and decoder (EnCodec's defaults), per channel (BrainOmni spec §4.2 steps 4, 8).

All convolutions use weight normalisation, reflect padding and are non-causal. With
``ratios=[8, 4, 2]`` the encoder maps ``(N, 1, 512)`` to ``(N, dimension, 8)`` (hop 64) and the
decoder maps it back.

Compute paths (same values as pad-then-convolve, to float rounding):

- inside the encoder and decoder, activations are kept as ``(N, C, 1, L)`` tensors in
  channels-last memory (one time row per channel), and the convolutions run as 2-D
  convolutions with ``(1, k)`` kernels: oneDNN then works on the layout directly instead of
  reordering every activation to its blocked layout and back, and the LSTM reads the
  ``(N, L, C)`` view without a copy;

- reflect padding without a padded copy: the convolution pads with zeros internally and only
  the few output frames whose receptive field reaches the padding are recomputed from a
  reflect-padded slice of the edge;
- the weight-normalised weight ``g v / |v|`` is computed once per forward and, while
  gradients are off (evaluation, ``torch.no_grad``/``torch.inference_mode``), kept between
  calls and recomputed when ``g`` or ``v`` change (an optimiser step, ``load_state_dict``);
- ELUs whose input is a fresh intermediate run in place;
- while gradients are off and torch runs on one thread, the windows go through the encoder
  and decoder in chunks whose widest activation is about :data:`CHUNK_BYTES` (64 windows of
  32 x 512 float32 samples), so that each layer's input and output stay in the core's cache
  instead of streaming ~25 MB per layer through memory (``tokenize`` of 190 windows 1.19x
  faster, docs/benchmarks.md). With gradients on, autograd keeps every activation anyway; with
  several threads the extra parallel regions cost more than the cache saves (0.70x at two
  threads on a loaded machine), so the whole batch runs at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["SEANetDecoder", "SEANetEncoder", "normalised_weight", "to_rows"]

_CHANNELS_LAST = torch.channels_last
#: Bytes of the widest activation of one chunk of windows under inference (see the module docstring).
CHUNK_BYTES = 4 * 2**20


def _chunked(model: nn.Module, x: torch.Tensor, widest: int) -> torch.Tensor:
    """``model(to_rows(x))[:, :, 0]``, in chunks of windows while gradients are off on one thread.

    Parameters
    ----------
    model : torch.nn.Module
        The layers, on ``(N, C, 1, L)`` channels-last rows.
    x : torch.Tensor, shape (N, C, L)
        Input windows.
    widest : int
        Elements of the widest activation per window (channels x samples).

    Returns
    -------
    y : torch.Tensor, shape (N, C_out, L_out)
        The same values as one call over all windows (each window is computed independently).
    """
    per_chunk = max(1, CHUNK_BYTES // max(1, widest * x.element_size()))
    if torch.is_grad_enabled() or torch.get_num_threads() > 1 or x.shape[0] <= per_chunk:
        return model(to_rows(x))[:, :, 0]
    return torch.cat([model(to_rows(part))[:, :, 0] for part in x.split(per_chunk)])


def normalised_weight(conv: nn.Module) -> torch.Tensor:
    """The weight of a weight-normalised 1-D convolution as a ``(*, *, 1, k)`` channels-last
    2-D kernel, cached while gradients are off.

    With gradients enabled the weight is recomputed from ``g`` and ``v`` (so that the
    gradient reaches them); otherwise the last computed weight is reused as long as ``g`` and
    ``v`` are the same tensors with the same storage, unmodified since (their version counters:
    an optimiser step, ``copy_`` or ``load_state_dict`` changes them; ``.to()`` moves their data).

    Parameters
    ----------
    conv : torch.nn.Module
        A ``Conv1d`` or ``ConvTranspose1d`` with the ``weight_norm`` parametrisation on ``weight``.

    Returns
    -------
    weight : torch.Tensor, shape (w0, w1, 1, k)
        ``g * v / |v|`` with a unit height axis, in channels-last memory.
    """
    if torch.is_grad_enabled():
        return conv.weight.unsqueeze(2).contiguous(memory_format=_CHANNELS_LAST)
    g = conv.parametrizations.weight.original0
    v = conv.parametrizations.weight.original1
    # ``.to()`` swaps ``.data`` without touching the version counters: the storage and dtype are in the key
    key = (g._version, v._version, g.data_ptr(), v.data_ptr(), v.dtype, v.device)
    cached = conv.__dict__.get("_folded_weight")
    if cached is not None and cached[0] is g and cached[1] is v and cached[2] == key:
        return cached[3]
    weight = conv.weight.unsqueeze(2).contiguous(memory_format=_CHANNELS_LAST)
    conv.__dict__["_folded_weight"] = (g, v, key, weight)
    return weight


def to_rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, L) -> (N, C, 1, L) in channels-last memory (the layout inside the encoder and decoder)."""
    return x.unsqueeze(2).contiguous(memory_format=_CHANNELS_LAST)


def _frames(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
    """Output frames (N, C_out, F) of a convolution of x (N, C_in, L) with weight (C_out, C_in, 1, k)
    as one matrix product (no per-call weight reordering)."""
    c_out, c_in, _, k = weight.shape
    patches = x.unfold(-1, k, stride).transpose(1, 2)  # (N, frames, C_in, k)
    out = patches.reshape(x.shape[0], -1, c_in * k) @ weight[:, :, 0].reshape(c_out, c_in * k).t()
    if bias is not None:
        out = out + bias
    return out.transpose(1, 2)


class _Conv(nn.Module):
    """Weight-normalised Conv1d with non-causal reflect padding (output length ceil(L / stride))."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel, stride))
        self.kernel, self.stride = kernel, stride

    def _pads(self, length: int) -> tuple[int, int]:
        """Left and right padding of an input of ``length`` samples."""
        total = self.kernel - self.stride
        frames = (length - self.kernel + total) / self.stride + 1
        extra = (math.ceil(frames) - 1) * self.stride + (self.kernel - total) - length
        right = total // 2
        return total - right, right + extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, 1, L) channels-last -> (N, C_out, 1, ceil(L / stride)) channels-last."""
        weight, bias = normalised_weight(self.conv), self.conv.bias
        length = x.shape[-1]
        left, right = self._pads(length)
        k, s = self.kernel, self.stride
        if left == 0 and right == 0:  # 1x1 convolutions
            return F.conv2d(x, weight, bias, (1, s))
        rows = x[:, :, 0]  # (N, C_in, L) view
        if x.shape[1] == 1:  # single input channel (the first layer): patches times weights, already channels-last
            y = _frames(F.pad(rows, (left, right), mode="reflect" if max(left, right) < length else "constant"),
                        weight, bias, s)
            return y.unsqueeze(2)
        if left == right:
            n_out = (length + 2 * left - k) // s + 1
            n_left = -(-left // s)  # output frames that read left padding
            first_right = -(-(length + left - k + 1) // s)  # first output frame that reads right padding
            m_left = (n_left - 1) * s + k - left  # input samples those left frames read
            start_right = first_right * s - left
            # only worth it where the edge frames are a small share of the output (long inputs):
            # on short ones the edges are most of the work and the padded copy is small
            if m_left <= length and left < m_left and 0 <= start_right and right < length - start_right \
                    and n_left <= first_right <= n_out and 8 * (n_left + n_out - first_right) <= n_out:
                y = F.conv2d(x, weight, bias, (1, s), padding=(0, left))
                y[:, :, 0, :n_left] = _frames(F.pad(rows[..., :m_left], (left, 0), mode="reflect"), weight, bias, s)
                if first_right < n_out:
                    y[:, :, 0, first_right:] = _frames(F.pad(rows[..., start_right:], (0, right), mode="reflect"),
                                                       weight, bias, s)
                return y
        # reflect needs more samples than the padding; very short inputs are zero-padded instead
        mode = "reflect" if max(left, right) < length else "constant"
        return F.conv2d(to_rows(F.pad(rows, (left, right), mode=mode)), weight, bias, (1, s))


class _ConvTranspose(nn.Module):
    """Weight-normalised ConvTranspose1d, trimmed symmetrically to ``stride * L`` samples."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, stride))
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, 1, L) channels-last -> (N, C_out, 1, stride L)."""
        weight, bias = normalised_weight(self.conv), self.conv.bias
        total = self.kernel - self.stride
        right = total // 2
        left = total - right
        if left == right:  # the convolution trims both ends itself (no strided view for the next layers)
            return F.conv_transpose2d(x, weight, bias, (1, self.stride), padding=(0, left))
        y = F.conv_transpose2d(x, weight, bias, (1, self.stride))
        return y[..., left : y.shape[-1] - right]


class _ResBlock(nn.Module):
    """ELU -> Conv(d -> d/2, k3) -> ELU -> Conv(d/2 -> d, k1), plus a 1x1-conv shortcut."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        # the second ELU works on the fresh output of the first convolution: in place
        self.block = nn.Sequential(nn.ELU(), _Conv(dim, dim // 2, 3), nn.ELU(inplace=True), _Conv(dim // 2, dim, 1))
        self.shortcut = _Conv(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class _LSTM(nn.Module):
    """Two-layer LSTM over time with a skip connection, on (N, C, 1, T) channels-last (read as (N, T, C))."""

    def __init__(self, dim: int, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, _, t = x.shape
        y = x.permute(0, 2, 3, 1).reshape(n, t, c)  # a view for channels-last input
        return (self.lstm(y)[0] + y).reshape(n, 1, t, c).permute(0, 3, 1, 2)


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
            layers += [_ResBlock(width), nn.ELU(inplace=True), _Conv(width, width * 2, 2 * ratio, ratio)]
            width *= 2
        if lstm_layers:
            layers.append(_LSTM(width, lstm_layers))
        layers += [nn.ELU(inplace=True), _Conv(width, dimension, last_kernel_size)]
        self.model = nn.Sequential(*layers)
        self.hop = math.prod(ratios)
        self.n_filters = n_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, T) -> (N, dimension, T / hop); in cache-sized chunks of windows while gradients are off."""
        return _chunked(self.model, x, self.n_filters * x.shape[-1])


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
            layers += [nn.ELU(inplace=True), _ConvTranspose(width, width // 2, 2 * ratio, ratio), _ResBlock(width // 2)]
            width //= 2
        layers += [nn.ELU(inplace=True), _Conv(width, 1, last_kernel_size)]
        self.model = nn.Sequential(*layers)
        self.n_filters, self.hop = n_filters, math.prod(ratios)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dimension, L) -> (N, 1, L hop); in cache-sized chunks of windows while gradients are off."""
        return _chunked(self.model, x, self.n_filters * self.hop * x.shape[-1])
