"""The quantile tokenizer: equal-probability bins of the training data (MEG-GPT spec §4.5).

Fitting accumulates a fine histogram of the (normalised) training samples of good
channels over ``[-clip, clip]``; the ``n_bins`` bin edges are the quantiles ``k / n_bins``
of that histogram, and a token decodes to its bin's median (quantile ``(k + 0.5) / n_bins``).
Under DDP the per-step histograms are summed over ranks, so every rank holds the same bins.
Token 0 is reserved (masked channels, unknown tokens), so ids run 1 .. ``n_bins``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from brainfm._check import check_range, ensure_int
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.tokenizers.base import SampleTokenizer

__all__ = ["QuantileTokenizer"]


class QuantileTokenizer(SampleTokenizer):
    """Equal-probability binning fit on the training data; no gradient-trained weights.

    Parameters
    ----------
    n_bins : int
        Bins; ``vocab_size`` is ``n_bins + 1``.
    clip : float
        Samples are clipped to ``[-clip, clip]`` (in the normalised units of the batch).
    resolution : int
        Cells of the fitting histogram over ``[-clip, clip]``.
    """

    def __init__(self, n_bins: int = 256, clip: float = 8.0, resolution: int = 16384) -> None:
        super().__init__()
        self.n_bins = ensure_int("n_bins", n_bins)
        check_range("n_bins", self.n_bins, 2, None)
        check_range("clip", clip, 0, None, inclusive=False)
        self.resolution = ensure_int("resolution", resolution)
        check_range("resolution", self.resolution, self.n_bins, None)
        self.clip = float(clip)
        self.register_buffer("counts", torch.zeros(self.resolution, dtype=torch.float64))

    @property
    def vocab_size(self) -> int:
        """``n_bins + 1`` (token 0 is reserved)."""
        return self.n_bins + 1

    @property
    def fitted(self) -> bool:
        """Whether any sample has been counted."""
        return bool(self.counts.sum() > 0)

    def update(self, values: torch.Tensor) -> None:
        """Count samples into the histogram (summed over DDP ranks when initialised).

        Parameters
        ----------
        values : torch.Tensor
            Samples (any shape) of good channels.
        """
        x = values.detach().to(torch.float64).flatten().clamp(-self.clip, self.clip)
        cells = ((x + self.clip) * (self.resolution / (2 * self.clip))).long().clamp(0, self.resolution - 1)
        histogram = torch.bincount(cells, minlength=self.resolution).to(self.counts)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(histogram)
        self.counts += histogram

    def quantiles(self, levels: torch.Tensor) -> torch.Tensor:
        """Values at the given cumulative probabilities (linear inside histogram cells).

        Parameters
        ----------
        levels : torch.Tensor of float64
            Probabilities in [0, 1].

        Returns
        -------
        values : torch.Tensor of float64
            Same shape as ``levels``.
        """
        if not self.fitted:
            raise ConfigError(
                "QuantileTokenizer has not seen any data: fit it first (brainfm pretrain fit with "
                "configs/pretrain/quantile.yaml, or tokenizer.update(samples))."
            )
        cdf = torch.cat([self.counts.new_zeros(1), torch.cumsum(self.counts, 0)]) / self.counts.sum()
        grid = torch.linspace(-self.clip, self.clip, self.resolution + 1, dtype=torch.float64, device=cdf.device)
        right = torch.searchsorted(cdf, levels.to(cdf), side="left").clamp(1, self.resolution)
        left = right - 1
        span = (cdf[right] - cdf[left]).clamp_min(1e-300)
        fraction = ((levels.to(cdf) - cdf[left]) / span).clamp(0, 1)
        return grid[left] + fraction * (grid[right] - grid[left])

    def edges(self) -> torch.Tensor:
        """The ``n_bins - 1`` inner bin edges (float64)."""
        return self.quantiles(torch.arange(1, self.n_bins, dtype=torch.float64) / self.n_bins)

    def medians(self) -> torch.Tensor:
        """The median of each bin (float64, ``n_bins`` values)."""
        return self.quantiles((torch.arange(self.n_bins, dtype=torch.float64) + 0.5) / self.n_bins)

    def cdf(self, signal: torch.Tensor) -> torch.Tensor:
        """The fitted cumulative distribution at every sample (the quantile tokenizer's companding)."""
        x = signal.detach().to(torch.float64).clamp(-self.clip, self.clip)
        cdf = torch.cat([self.counts.new_zeros(1), torch.cumsum(self.counts, 0)]) / self.counts.sum()
        position = (x + self.clip) * (self.resolution / (2 * self.clip))
        left = position.floor().long().clamp(0, self.resolution - 1)
        fraction = position - left
        return cdf[left] + fraction * (cdf[left + 1] - cdf[left])

    def tokenize(self, signal: torch.Tensor) -> torch.Tensor:
        """Token ids 1 .. ``n_bins`` of every sample."""
        edges = self.edges().to(signal.device)
        return torch.bucketize(signal.detach().to(torch.float64), edges, right=True) + 1

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Bin medians; token 0 gives 0."""
        values = torch.cat([torch.zeros(1, dtype=torch.float64), self.medians()]).to(torch.float32)
        return values.to(tokens.device)[tokens]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Count the batch into the histogram (in training), then the reconstruction error."""
        if self.training:
            self.update(batch.signal[batch.channel_mask])
        return super().loss(batch)
