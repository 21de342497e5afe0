"""How faithful a tokenizer is: reconstruction metrics per sensor type and code usage per level.

Accumulated batch by batch (:class:`ReconstructionQuality`, :class:`CodeUsage`), so that
``brainfm tokenizer report``, the quality benchmark and tests compute them the same way:

- **PCC**: Pearson correlation between each channel's window and its reconstruction, averaged
  over channel-windows (BrainOmni's reported metric);
- **NMSE**: ``sum (x - x_hat)^2 / sum (x - mean x)^2`` over all channel-windows of a type
  (1 for a reconstruction that is the window's mean, 0 for a perfect one);
- **relative PSD error per band**: ``|P_hat - P| / P`` of the band power of the mean
  periodogram (Hann-windowed, mean removed) of reconstructions and signals;
- **code usage** per level: share of the codebook used at least once, perplexity
  ``exp(entropy)`` of the code frequencies, and dead codes (never used).
"""

from __future__ import annotations

import math

import torch

from brainfm.data.channels import SENSOR_TYPE_IDS

__all__ = ["BANDS", "CodeUsage", "ReconstructionQuality", "pearson"]

#: Frequency bands (Hz), upper edges exclusive; gamma stops at 100 Hz or below Nyquist.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0), "gamma": (30.0, 100.0),
}

_TYPE_NAMES = {v: k for k, v in SENSOR_TYPE_IDS.items()}


def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis (0 where either side is constant).

    Parameters
    ----------
    x, y : torch.Tensor
        Same shape (..., T).

    Returns
    -------
    r : torch.Tensor
        Shape (...).
    """
    xc = x - x.mean(-1, keepdim=True)
    yc = y - y.mean(-1, keepdim=True)
    denominator = (xc.pow(2).sum(-1) * yc.pow(2).sum(-1)).sqrt()
    return torch.where(denominator > 0, (xc * yc).sum(-1) / denominator.clamp_min(1e-30), torch.zeros_like(denominator))


def _periodogram(x: torch.Tensor) -> torch.Tensor:
    """Hann-windowed periodogram (..., T // 2 + 1) of windows (..., T), mean removed."""
    window = torch.hann_window(x.shape[-1], periodic=False, dtype=x.dtype, device=x.device)
    spectrum = torch.fft.rfft((x - x.mean(-1, keepdim=True)) * window)
    return spectrum.abs().pow(2) / window.pow(2).sum()


class ReconstructionQuality:
    """Accumulates PCC, NMSE and mean spectra per sensor type over batches.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    """

    def __init__(self, sfreq: float) -> None:
        self.sfreq = float(sfreq)
        self.pcc_sum: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.error: dict[str, float] = {}
        self.spread: dict[str, float] = {}
        self.psd: dict[str, torch.Tensor] = {}
        self.psd_hat: dict[str, torch.Tensor] = {}
        self.n_times: int | None = None

    def update(self, signal: torch.Tensor, reconstruction: torch.Tensor, mask: torch.Tensor,
               sensor_type: torch.Tensor) -> None:
        """Add a batch.

        Parameters
        ----------
        signal, reconstruction : torch.Tensor, shape (B, C, T)
            The reference windows and their reconstruction, in the same units.
        mask : torch.Tensor of bool, shape (B, C)
            Channel-windows that count.
        sensor_type : torch.Tensor of int64, shape (B, C)
            :data:`~brainfm.data.channels.SENSOR_TYPE_IDS` of each channel.
        """
        if self.n_times is None:
            self.n_times = int(signal.shape[-1])
        x, y = signal.double(), reconstruction.double()
        for type_id in torch.unique(sensor_type[mask]).tolist():
            rows = mask & (sensor_type == type_id)
            xs, ys = x[rows], y[rows]  # (n, T)
            name = _TYPE_NAMES.get(int(type_id), str(type_id))
            self.pcc_sum[name] = self.pcc_sum.get(name, 0.0) + float(pearson(xs, ys).sum())
            self.count[name] = self.count.get(name, 0) + int(xs.shape[0])
            self.error[name] = self.error.get(name, 0.0) + float((xs - ys).pow(2).sum())
            self.spread[name] = self.spread.get(name, 0.0) + float((xs - xs.mean(-1, keepdim=True)).pow(2).sum())
            psd, psd_hat = _periodogram(xs).sum(0), _periodogram(ys).sum(0)
            self.psd[name] = self.psd.get(name, torch.zeros_like(psd)) + psd
            self.psd_hat[name] = self.psd_hat.get(name, torch.zeros_like(psd_hat)) + psd_hat

    @property
    def types(self) -> list[str]:
        """Sensor types seen, sorted."""
        return sorted(self.count)

    def pcc(self) -> dict[str, float]:
        """Mean PCC per type."""
        return {t: self.pcc_sum[t] / self.count[t] for t in self.types}

    def nmse(self) -> dict[str, float]:
        """NMSE per type (NaN for a type whose windows are all constant)."""
        return {t: self.error[t] / self.spread[t] if self.spread[t] > 0 else math.nan for t in self.types}

    def frequencies(self) -> torch.Tensor:
        """Frequencies (Hz) of the spectra."""
        return torch.fft.rfftfreq(self.n_times or 1, d=1.0 / self.sfreq).double()

    def mean_psd(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Mean periodogram per type: (signal, reconstruction)."""
        return {t: (self.psd[t] / self.count[t], self.psd_hat[t] / self.count[t]) for t in self.types}

    def band_powers(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Band power per type and band: (signal, reconstruction); bands above Nyquist are left out."""
        freqs = self.frequencies()
        nyquist = self.sfreq / 2
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for t, (psd, psd_hat) in self.mean_psd().items():
            out[t] = {}
            for band, (lo, hi) in BANDS.items():
                bins = (freqs >= lo) & (freqs < min(hi, nyquist))
                if lo >= nyquist or not bool(bins.any()):
                    continue
                out[t][band] = (float(psd[bins].sum()), float(psd_hat[bins].sum()))
        return out

    def psd_rel_error(self) -> dict[str, dict[str, float]]:
        """``|P_hat - P| / P`` per type and band."""
        return {t: {band: abs(p_hat - p) / p if p > 0 else math.nan for band, (p, p_hat) in bands.items()}
                for t, bands in self.band_powers().items()}


class CodeUsage:
    """Counts of each code per level.

    Parameters
    ----------
    n_levels : int
        Codebook levels (1 for sample tokenizers).
    n_codes : int
        Codes per level that can be used.
    offset : int
        Code value of the first usable code (1 for sample tokenizers, whose code 0 is reserved).
    """

    def __init__(self, n_levels: int, n_codes: int, offset: int = 0) -> None:
        self.offset = int(offset)
        self.counts = torch.zeros(n_levels, n_codes, dtype=torch.int64)

    def update(self, codes: torch.Tensor) -> None:
        """Add codes ``(N, levels)`` (one row per coded position; codes outside the range are ignored)."""
        for level in range(self.counts.shape[0]):
            values = codes[:, level] - self.offset
            values = values[(values >= 0) & (values < self.counts.shape[1])]
            self.counts[level] += torch.bincount(values, minlength=self.counts.shape[1])

    def usage(self) -> list[float]:
        """Share of codes used at least once, per level."""
        return [float((row > 0).double().mean()) for row in self.counts]

    def dead_codes(self) -> list[int]:
        """Codes never used, per level."""
        return [int((row == 0).sum()) for row in self.counts]

    def perplexity(self) -> list[float]:
        """``exp(entropy)`` of the code frequencies per level (the effective number of codes)."""
        out = []
        for row in self.counts.double():
            total = row.sum()
            if total == 0:
                out.append(0.0)
                continue
            p = row[row > 0] / total
            out.append(float(torch.exp(-(p * p.log()).sum())))
        return out
