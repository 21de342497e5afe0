"""Welch power spectra of real and generated signals and their relative error per frequency band."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from brainfm._check import check_range

__all__ = ["BANDS", "band_power", "psd_relative_error", "welch_psd"]

#: The frequency bands of the realism report, Hz (lower edge included, upper excluded; gamma up to 45 Hz).
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}


def welch_psd(
    signals: Sequence[np.ndarray],
    sfreq: float,
    *,
    fmin: float = 1.0,
    fmax: float = 45.0,
    window_s: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density of each recording, between ``fmin`` and ``fmax``.

    Parameters
    ----------
    signals : sequence of numpy.ndarray
        Recordings, each (C, T) with the same C.
    sfreq : float
        Sampling rate, Hz.
    fmin, fmax : float
        Frequency range kept, Hz (both included).
    window_s : float
        Welch segment length, s (Hann window, 50 % overlap); shorter recordings use their length.

    Returns
    -------
    freqs : numpy.ndarray
        (F,) frequencies, Hz.
    psd : numpy.ndarray
        (R, C, F) power spectral density per recording and channel (signal unit² / Hz).
    """
    from scipy.signal import welch

    check_range("window_s", window_s, 0.0, inclusive=False)
    if not 0 <= fmin < fmax <= sfreq / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sfreq / 2 = {sfreq / 2:g} Hz, got fmin={fmin:g}, fmax={fmax:g}.")
    nperseg = round(window_s * sfreq)
    spectra = []
    freqs = np.array([])
    for signal in signals:
        n = min(nperseg, signal.shape[-1])
        freqs, psd = welch(np.asarray(signal, dtype=np.float64), fs=sfreq, nperseg=n, noverlap=n // 2, axis=-1)
        keep = (freqs >= fmin) & (freqs <= fmax)
        spectra.append((freqs[keep], psd[..., keep]))
    grids = {len(f) for f, _ in spectra}
    if len(grids) > 1:
        raise ValueError(
            f"recordings shorter than window_s={window_s:g} s give coarser spectra ({sorted(grids)} bins); "
            "lower window_s to the shortest recording's length."
        )
    freqs = spectra[0][0]
    return freqs, np.stack([p for _, p in spectra])


def band_power(freqs: np.ndarray, psd: np.ndarray, bands: Mapping[str, tuple[float, float]] = BANDS) -> np.ndarray:
    """Mean power spectral density in each band.

    Parameters
    ----------
    freqs : numpy.ndarray
        (F,) frequencies, Hz.
    psd : numpy.ndarray
        (..., F) spectra.
    bands : mapping of str to (float, float)
        Band edges, Hz (lower included, upper excluded; the last band includes its upper edge).

    Returns
    -------
    power : numpy.ndarray
        (..., n_bands) mean density per band, in the order of ``bands``.
    """
    names = list(bands)
    columns = []
    for i, name in enumerate(names):
        low, high = bands[name]
        keep = (freqs >= low) & ((freqs <= high) if i == len(names) - 1 else (freqs < high))
        if not keep.any():
            raise ValueError(f"band {name!r} ({low:g}-{high:g} Hz) holds no frequency bin of the spectrum.")
        columns.append(psd[..., keep].mean(axis=-1))
    return np.stack(columns, axis=-1)


def psd_relative_error(
    freqs: np.ndarray,
    real_psd: np.ndarray,
    generated_psd: np.ndarray,
    bands: Mapping[str, tuple[float, float]] = BANDS,
) -> dict[str, object]:
    """Relative error of the generated spectrum against the real one, per band and over all bins.

    Per channel, the band power ``P`` (mean density over the band) gives
    ``|P_generated - P_real| / P_real``; the report gives its mean over channels and the
    per-channel values. ``broadband`` is the mean of ``|S_generated - S_real| / S_real`` over
    channels and every frequency bin.

    Parameters
    ----------
    freqs : numpy.ndarray
        (F,) frequencies, Hz.
    real_psd, generated_psd : numpy.ndarray
        (C, F) spectra (for example the mean over recordings).
    bands : mapping of str to (float, float)
        Band edges, Hz.

    Returns
    -------
    errors : dict
        ``{"bands": {name: {"range_hz": [low, high], "relative_error": float, "per_channel": [...]}},
        "broadband": float}``.
    """
    if real_psd.shape != generated_psd.shape:
        raise ValueError(f"real and generated spectra differ in shape: {real_psd.shape} vs {generated_psd.shape}.")
    tiny = np.finfo(np.float64).tiny
    real_bands = band_power(freqs, real_psd, bands)
    generated_bands = band_power(freqs, generated_psd, bands)
    relative = np.abs(generated_bands - real_bands) / np.maximum(real_bands, tiny)  # (C, n_bands)
    broadband = np.abs(generated_psd - real_psd) / np.maximum(real_psd, tiny)
    return {
        "bands": {
            name: {
                "range_hz": list(bands[name]),
                "relative_error": float(relative[:, i].mean()),
                "per_channel": relative[:, i].tolist(),
            }
            for i, name in enumerate(bands)
        },
        "broadband": float(broadband.mean()),
    }
