"""Medformer encoder as the BrainFLORA modality adapters use it (spec §4.1, step 1).

Input (B, C, L). Per patch length p in (2, 4, 8) the input is replication-padded by p samples on
the right and cut into ``(L + p - p) // p + 1`` tokens by a Conv2d whose kernel spans all C
channels and p samples, so each token sees every channel (cross-channel tokens). Tokens get a
sinusoidal position plus a learned vector per granularity. One encoder layer attends within
each granularity, then among the last token of each granularity (the router), then applies a
Conv1d feed-forward; the granularities are concatenated, normalised, passed through GELU and
dropout. Token counts: 221 for (63, 250), 178 for (271, 201), 899 for (8, 1024).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from brainfm._check import check_option

__all__ = ["AUGMENTATIONS", "Medformer", "n_tokens"]

AUGMENTATIONS = ("flip", "shuffle", "frequency", "jitter", "mask", "drop")


def n_tokens(n_times: int, patch_len: int) -> int:
    """Tokens of one granularity: the input padded by ``patch_len`` and cut with stride ``patch_len``.

    Parameters
    ----------
    n_times : int
        Input length L in samples.
    patch_len : int
        Patch length (and stride) p in samples.

    Returns
    -------
    n : int
        ``L // p + 1``.
    """
    return (n_times + patch_len - patch_len) // patch_len + 1


def _sinusoidal(n_positions: int, d_model: int) -> torch.Tensor:
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table


def _augment(x: torch.Tensor, name: str, ratio: float, jitter_std: float) -> torch.Tensor:
    """One training augmentation of a (B, C, L) batch; each sample is affected on its own."""
    batch, n_chans, n_times = x.shape
    if name == "flip":  # time reversal of a random half of the batch
        chosen = torch.rand(batch, 1, 1, device=x.device) < 0.5
        return torch.where(chosen, x.flip(-1), x)
    if name == "shuffle":  # channel order permuted for a random half of the batch
        order = torch.rand(batch, n_chans, device=x.device).argsort(dim=1)
        shuffled = torch.gather(x, 1, order[:, :, None].expand_as(x))
        chosen = torch.rand(batch, 1, 1, device=x.device) < 0.5
        return torch.where(chosen, shuffled, x)
    if name == "frequency":  # a contiguous band of `ratio` of the frequency bins zeroed
        spectrum = torch.fft.rfft(x, dim=-1)
        n_bins = spectrum.shape[-1]
        width = max(1, int(ratio * n_bins))
        start = torch.randint(0, n_bins - width + 1, (batch, 1, 1), device=x.device)
        bins = torch.arange(n_bins, device=x.device)
        keep = (bins < start) | (bins >= start + width)
        return torch.fft.irfft(spectrum * keep, n=n_times, dim=-1)
    if name == "jitter":
        return x + jitter_std * torch.randn_like(x)
    if name == "mask":  # `ratio` of the time samples zeroed across all channels
        keep = torch.rand(batch, 1, n_times, device=x.device) >= ratio
        return x * keep
    return F.dropout(x, p=ratio, training=True)  # "drop"


class _PatchEmbedding(nn.Module):
    """Cross-channel tokens of every granularity, with positions, as a list of (B, N_p, D)."""

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        d_model: int,
        patch_lens: Sequence[int],
        dropout: float,
        augmentations: Sequence[str],
        augment_ratio: float,
        jitter_std: float,
    ) -> None:
        super().__init__()
        for name in augmentations:
            check_option("augmentations", name, AUGMENTATIONS)
        self.patch_lens = tuple(patch_lens)
        self.augmentations = tuple(augmentations)
        self.augment_ratio = augment_ratio
        self.jitter_std = jitter_std
        self.pads = nn.ModuleList(nn.ReplicationPad1d((0, p)) for p in self.patch_lens)
        # Conv2d(1 -> D, kernel (C, p), stride (1, p)): one token spans all channels for p samples
        self.tokenizers = nn.ModuleList(
            nn.Conv2d(1, d_model, kernel_size=(n_chans, p), stride=(1, p)) for p in self.patch_lens
        )
        longest = max(n_tokens(n_times, p) for p in self.patch_lens)
        self.register_buffer("position", _sinusoidal(longest, d_model), persistent=False)
        self.granularity = nn.Parameter(torch.randn(len(self.patch_lens), d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens = []
        for index, (pad, tokenizer) in enumerate(zip(self.pads, self.tokenizers, strict=True)):
            signal = x
            if self.training and self.augmentations:
                choice = int(torch.randint(len(self.augmentations), ()))
                signal = _augment(signal, self.augmentations[choice], self.augment_ratio, self.jitter_std)
            padded = pad(signal)  # (B, C, L + p)
            embedded = tokenizer(padded[:, None]).squeeze(2).transpose(1, 2)  # (B, N_p, D)
            embedded = embedded + self.position[: embedded.shape[1]] + self.granularity[index]
            tokens.append(self.dropout(embedded))
        return tokens


class _Attention(nn.Module):
    """Full multi-head self-attention with ``d_model // n_heads`` per head (250 / 4 -> 62)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        inner = (d_model // n_heads) * n_heads
        self.query = nn.Linear(d_model, inner)
        self.key = nn.Linear(d_model, inner)
        self.value = nn.Linear(d_model, inner)
        self.out = nn.Linear(inner, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, n, self.n_heads, -1).transpose(1, 2)  # (B, H, N, d_head)

        attended = F.scaled_dot_product_attention(
            heads(self.query(x)),
            heads(self.key(x)),
            heads(self.value(x)),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(attended.transpose(1, 2).reshape(batch, n, -1))


class _MedformerLayer(nn.Module):
    """Self-attention within each granularity, then among the granularities' last (router) tokens."""

    def __init__(self, n_granularities: int, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.intra = nn.ModuleList(_Attention(d_model, n_heads, dropout) for _ in range(n_granularities))
        self.inter = _Attention(d_model, n_heads, dropout)

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        attended = [attention(x) for attention, x in zip(self.intra, tokens, strict=True)]
        routers = self.inter(torch.stack([x[:, -1] for x in attended], dim=1))  # (B, G, D)
        return [torch.cat([x[:, :-1], routers[:, i : i + 1]], dim=1) for i, x in enumerate(attended)]


class _EncoderLayer(nn.Module):
    """Residual attention, then a Conv1d feed-forward; LayerNorms shared by the granularities."""

    def __init__(self, n_granularities: int, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attention = _MedformerLayer(n_granularities, d_model, n_heads, dropout)
        self.conv1 = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.conv2 = nn.Conv1d(d_ff, d_model, kernel_size=1)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for x, update in zip(tokens, self.attention(tokens), strict=True):
            x = self.norm1(x + self.dropout(update))
            y = self.dropout(F.gelu(self.conv1(x.transpose(1, 2))))  # (B, d_ff, N)
            y = self.dropout(self.conv2(y).transpose(1, 2))  # (B, N, D)
            out.append(self.norm2(x + y))
        return out


class Medformer(nn.Module):
    """Multi-granularity cross-channel transformer encoder (one layer by default).

    Parameters
    ----------
    n_chans : int
        Input channels C.
    n_times : int
        Input samples L.
    d_model : int
        Token width (250 in the reference).
    n_heads : int
        Attention heads.
    d_ff : int
        Feed-forward width.
    n_layers : int
        Encoder layers (1 in the reference).
    dropout : float
        Dropout probability (0.25).
    patch_lens : sequence of int
        Patch lengths, equal to their strides (2, 4, 8).
    augmentations : sequence of str
        Training augmentations, one drawn per granularity and batch; empty for none.
    augment_ratio : float
        Masked/dropped fraction for "frequency", "mask" and "drop".
    jitter_std : float
        Standard deviation of "jitter" noise, in the input's units.
    """

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        d_model: int = 250,
        n_heads: int = 4,
        d_ff: int = 256,
        n_layers: int = 1,
        dropout: float = 0.25,
        patch_lens: Sequence[int] = (2, 4, 8),
        augmentations: Sequence[str] = AUGMENTATIONS,
        augment_ratio: float = 0.1,
        jitter_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_chans = n_chans
        self.n_times = n_times
        self.patch_lens = tuple(patch_lens)
        self.embedding = _PatchEmbedding(
            n_chans, n_times, d_model, self.patch_lens, dropout, augmentations, augment_ratio, jitter_std
        )
        self.layers = nn.ModuleList(
            _EncoderLayer(len(self.patch_lens), d_model, n_heads, d_ff, dropout) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    @property
    def n_outputs(self) -> int:
        """Total tokens over all granularities."""
        return sum(n_tokens(self.n_times, p) for p in self.patch_lens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode (B, C, L) signals into (B, N_tokens, d_model) features."""
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.n_chans, self.n_times):
            raise ValueError(
                f"Medformer expects input (batch, {self.n_chans}, {self.n_times}), got {tuple(x.shape)}."
            )
        tokens = self.embedding(x)
        for layer in self.layers:
            tokens = layer(tokens)
        features = self.norm(torch.cat(tokens, dim=1))  # (B, sum N_p, D)
        return self.dropout(F.gelu(features))
