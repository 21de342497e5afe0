"""A compact CNN of the EEGNet family, a from-scratch deep baseline on (B, C, T) windows.

Adaptation of EEGNet-8,2 (Lawhern et al. 2018, J. Neural Eng. 15:056013), written from the
paper: a temporal convolution (F1 filters, half a second long), a depthwise spatial
convolution (D filters per temporal filter, max-norm left out), average pooling by 4, a
separable convolution (F2 = F1 x D filters), pooling by 8, and a linear classifier. Changes:
padding channels (``channel_mask`` False) are zeroed before the spatial convolution, and the
classifier is sized from ``n_times`` at construction.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EEGNet"]


class EEGNet(nn.Module):
    """EEGNet-style classifier.

    Parameters
    ----------
    n_chans : int
        Channels per window.
    n_times : int
        Samples per window.
    n_outputs : int
        Classes.
    sfreq : float
        Sampling rate in Hz (sets the temporal kernel to half a second).
    n_filters_time : int
        F1, temporal filters.
    depth_multiplier : int
        D, spatial filters per temporal filter.
    drop_prob : float
        Dropout probability.
    """

    def __init__(self, n_chans: int, n_times: int, n_outputs: int, sfreq: float, n_filters_time: int = 8,
                 depth_multiplier: int = 2, drop_prob: float = 0.25) -> None:
        super().__init__()
        kernel = max(3, int(round(sfreq / 2)) | 1)  # odd, ~0.5 s
        n_filters = n_filters_time * depth_multiplier
        self.features = nn.Sequential(
            nn.Conv2d(1, n_filters_time, (1, kernel), padding=(0, kernel // 2), bias=False),
            nn.BatchNorm2d(n_filters_time),
            nn.Conv2d(n_filters_time, n_filters, (n_chans, 1), groups=n_filters_time, bias=False),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.AvgPool2d((1, 4)),
            nn.Dropout(drop_prob),
            nn.Conv2d(n_filters, n_filters, (1, 15), padding=(0, 7), groups=n_filters, bias=False),
            nn.Conv2d(n_filters, n_filters, 1, bias=False),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.AvgPool2d((1, 8)),
            nn.Dropout(drop_prob),
        )
        n_out_times = n_times // 4 // 8
        if n_out_times < 1:
            raise ValueError(f"EEGNet needs windows of at least 32 samples, got n_times={n_times}.")
        self.classifier = nn.Linear(n_filters * n_out_times, n_outputs)

    def forward(self, signal: torch.Tensor, channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) signal -> (B, n_outputs) logits."""
        if channel_mask is not None:
            signal = signal * channel_mask[..., None]
        x = self.features(signal[:, None])  # (B, F2, 1, T // 32)
        return self.classifier(x.flatten(1))
