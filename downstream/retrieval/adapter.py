"""Modality adapters: Medformer, TSConv patch embedding and projection (spec §4.1).

An adapter maps one modality's input to a ``out_dim``-d concept-space vector:

    EEG (B, 63, 250) / MEG (B, 271, 201) / fMRI (B, 7000)
    -> [fMRI only: Linear(7000 -> 8192) viewed as (B, 8, 1024)]
    -> Medformer                   (B, tokens, 250)        tokens: 221 / 178 / 899
    -> TSConv patch embedding      (B, 36 * 40 = 1440)
    -> projection                  (B, 1024)               Linear, residual GELU block, LayerNorm

Sizes are data (:class:`AdapterConfig`), with the reference's shapes as named presets.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from brainfm._check import check_option
from brainfm.downstream.retrieval.medformer import AUGMENTATIONS, Medformer

__all__ = ["ADAPTER_PRESETS", "AdapterConfig", "ModalityAdapter", "zero_pad_voxels"]


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Sizes of one modality adapter; the defaults are the reference's."""

    n_chans: int
    """Channels C of the Medformer input (for fMRI: pseudo-channels of the stem)."""
    n_times: int
    """Samples L of the Medformer input (for fMRI: pseudo-samples of the stem)."""
    n_voxels: int | None = None
    """fMRI only: length of the (zero-padded) beta vector fed to the linear stem."""
    d_model: int = 250
    """Medformer token width."""
    n_heads: int = 4
    """Medformer attention heads."""
    d_ff: int = 256
    """Medformer feed-forward width."""
    n_layers: int = 1
    """Medformer layers."""
    dropout: float = 0.25
    """Medformer dropout."""
    patch_lens: tuple[int, ...] = (2, 4, 8)
    """Medformer patch lengths (equal to the strides)."""
    augmentations: tuple[str, ...] = AUGMENTATIONS
    """Training augmentations drawn per granularity; empty for none."""
    augment_ratio: float = 0.1
    """Masked/dropped fraction of the augmentations (unpublished: brainfm default)."""
    jitter_std: float = 0.1
    """Jitter noise standard deviation (unpublished: brainfm default)."""
    n_filters: int = 40
    """TSConv filters (and the width of each of its output positions)."""
    temporal_kernel: int = 25
    """TSConv first kernel along the Medformer width."""
    pool_kernel: int = 51
    """TSConv average-pool kernel."""
    pool_stride: int = 5
    """TSConv average-pool stride."""
    tsconv_dropout: float = 0.5
    """TSConv dropout."""
    out_dim: int = 1024
    """Concept-space width."""
    proj_dropout: float = 0.5
    """Dropout in the projection's residual block."""

    def __post_init__(self) -> None:
        if self.tsconv_width < 1:
            raise ValueError(
                f"TSConv leaves no output for d_model={self.d_model}: d_model - temporal_kernel + 1 "
                f"must be at least pool_kernel ({self.temporal_kernel}, {self.pool_kernel}); "
                f"lower temporal_kernel or pool_kernel for narrow adapters."
            )

    @property
    def tsconv_width(self) -> int:
        """Positions left along the Medformer width after the TSConv kernel and pool."""
        return (self.d_model - self.temporal_kernel + 1 - self.pool_kernel) // self.pool_stride + 1

    @property
    def embedding_dim(self) -> int:
        """Flattened TSConv output (1,440 with the reference sizes)."""
        return self.tsconv_width * self.n_filters

    @classmethod
    def from_name(cls, name: str, **overrides: object) -> AdapterConfig:
        """A named preset ("eeg", "meg", "fmri"), with fields replaced by ``overrides``.

        Parameters
        ----------
        name : str
            Preset name.
        **overrides
            Fields to change.

        Returns
        -------
        config : AdapterConfig
        """
        check_option("name", name, ADAPTER_PRESETS)
        return dataclasses.replace(ADAPTER_PRESETS[name], **overrides)


ADAPTER_PRESETS = {
    "eeg": AdapterConfig(n_chans=63, n_times=250),  # THINGS-EEG2: 63 channels, 1 s at 250 Hz
    "meg": AdapterConfig(n_chans=271, n_times=201),  # THINGS-MEG: the model code's 271 x 201
    "fmri": AdapterConfig(n_chans=8, n_times=1024, n_voxels=7000),  # betas -> 8 x 1024
}


def zero_pad_voxels(betas: np.ndarray | torch.Tensor, n_voxels: int = 7000) -> np.ndarray | torch.Tensor:
    """Zero-pad fMRI beta vectors at the end to ``n_voxels`` (the reference pads to 7,000).

    Parameters
    ----------
    betas : array or Tensor of shape (..., n)
        Beta vectors, ``n <= n_voxels``.
    n_voxels : int
        Target length.

    Returns
    -------
    padded : array or Tensor of shape (..., n_voxels)
        Same type as ``betas``; the first ``n`` values unchanged, zeros after.
    """
    n = betas.shape[-1]
    if n > n_voxels:
        raise ValueError(
            f"fMRI betas have {n} voxels, more than n_voxels={n_voxels}; raise n_voxels in the "
            f"adapter config or restrict the voxels (the reference keeps visual ROIs only)."
        )
    if isinstance(betas, torch.Tensor):
        return torch.nn.functional.pad(betas, (0, n_voxels - n))
    widths = [(0, 0)] * (betas.ndim - 1) + [(0, n_voxels - n)]
    return np.pad(betas, widths)


class _TSConv(nn.Sequential):
    """Temporal-spatial convolution over the Medformer output viewed as a (1, tokens, width) image."""

    def __init__(self, n_tokens: int, config: AdapterConfig) -> None:
        filters = config.n_filters
        super().__init__(
            nn.Conv2d(1, filters, (1, config.temporal_kernel)),
            nn.AvgPool2d((1, config.pool_kernel), (1, config.pool_stride)),
            nn.BatchNorm2d(filters),
            nn.ELU(),
            nn.Conv2d(filters, filters, (n_tokens, 1)),  # (B, F, 1, W): spans every token
            nn.BatchNorm2d(filters),
            nn.ELU(),
            nn.Dropout(config.tsconv_dropout),
            nn.Conv2d(filters, filters, (1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x[:, None])  # (B, F, 1, W)
        return out.flatten(2).transpose(1, 2).flatten(1)  # (B, W * F), position-major


class _Projection(nn.Module):
    """Linear, then a residual [GELU, Linear, Dropout] block, then LayerNorm."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.residual = nn.Sequential(nn.GELU(), nn.Linear(out_dim, out_dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.norm(x + self.residual(x))


class ModalityAdapter(nn.Module):
    """One modality's encoder into the concept space.

    Parameters
    ----------
    config : AdapterConfig | str
        Sizes, or the name of a preset ("eeg", "meg", "fmri").

    Notes
    -----
    Input (B, C, L) for EEG/MEG and (B, n_voxels) for fMRI; output (B, out_dim). The output is
    a LayerNorm, not L2-normalised (the reference's contrastive loss uses it as it is).
    """

    def __init__(self, config: AdapterConfig | str) -> None:
        super().__init__()
        self.config = AdapterConfig.from_name(config) if isinstance(config, str) else config
        c = self.config
        self.stem = (
            nn.Linear(c.n_voxels, c.n_chans * c.n_times) if c.n_voxels is not None else None
        )
        self.medformer = Medformer(
            c.n_chans,
            c.n_times,
            d_model=c.d_model,
            n_heads=c.n_heads,
            d_ff=c.d_ff,
            n_layers=c.n_layers,
            dropout=c.dropout,
            patch_lens=c.patch_lens,
            augmentations=c.augmentations,
            augment_ratio=c.augment_ratio,
            jitter_std=c.jitter_std,
        )
        self.tsconv = _TSConv(self.medformer.n_outputs, c)
        self.projection = _Projection(c.embedding_dim, c.out_dim, c.proj_dropout)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-item input shape: (n_voxels,) for fMRI, (n_chans, n_times) otherwise."""
        if self.config.n_voxels is not None:
            return (self.config.n_voxels,)
        return (self.config.n_chans, self.config.n_times)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch into (B, out_dim) concept-space features."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"This adapter expects input (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}."
                + (" Zero-pad shorter fMRI vectors with zero_pad_voxels." if self.stem is not None else "")
            )
        if self.stem is not None:
            x = self.stem(x).reshape(x.shape[0], self.config.n_chans, self.config.n_times)
        tokens = self.medformer(x)  # (B, n_tokens, d_model)
        return self.projection(self.tsconv(tokens))

