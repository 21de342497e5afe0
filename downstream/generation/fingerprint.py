"""Recording fingerprinting: can each generated recording be matched to the real one it was conditioned on?

Per recording, a feature vector is computed from real and from generated data; every generated
recording is ranked against all real ones by correlation distance (``1 - Pearson r``) and the
report gives the share whose own real recording is among the ``k`` nearest (MEG-GPT spec §7.2,
after the reference's ``3_subject_fingerprints.py``; k in {1, 5} is brainfm's default).

Features (``kind``):

- ``psd``: log Welch spectrum averaged over channels, 1-45 Hz;
- ``spatial``: log total power per channel;
- ``spatial_spectral``: log Welch spectrum of every channel;
- ``tde_cov``: covariance of the time-delay embedding (21 lags, -10..+10 samples) of all
  channels, upper triangle, the feature the reference matches on; refused above 2,048
  embedded dimensions (pick channels or parcels first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainfm._check import check_option, ensure_int
from brainfm.downstream.generation.spectra import welch_psd

__all__ = ["FINGERPRINT_FEATURES", "fingerprint_accuracy", "fingerprint_features", "tde_covariance"]

FINGERPRINT_FEATURES = ("psd", "spatial", "spatial_spectral", "tde_cov")
_MAX_TDE_DIM = 2048


def tde_covariance(signal: np.ndarray, n_lags: int = 21) -> np.ndarray:
    """Covariance of the time-delay embedding of a (C, T) signal.

    Parameters
    ----------
    signal : numpy.ndarray
        (C, T) signal.
    n_lags : int
        Number of delays, odd (centred on zero).

    Returns
    -------
    covariance : numpy.ndarray
        (C * n_lags, C * n_lags) covariance, channel-major (channel c, lag l at ``c * n_lags + l``).
    """
    n_lags = ensure_int("n_lags", n_lags)
    n_channels, n_times = signal.shape
    if n_channels * n_lags > _MAX_TDE_DIM:
        raise ValueError(
            f"a time-delay embedding of {n_channels} channels x {n_lags} lags has {n_channels * n_lags} "
            f"dimensions (limit {_MAX_TDE_DIM}); pick fewer channels or use kind='spatial_spectral'."
        )
    if n_times <= n_lags:
        raise ValueError(f"a recording of {n_times} samples is too short for {n_lags} lags.")
    x = np.asarray(signal, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, n_lags, axis=1)  # (C, T - n_lags + 1, n_lags)
    embedded = windows.transpose(0, 2, 1).reshape(n_channels * n_lags, -1)  # (C * n_lags, T')
    embedded = embedded - embedded.mean(axis=1, keepdims=True)
    return embedded @ embedded.T / (embedded.shape[1] - 1)


def fingerprint_features(
    signals: Sequence[np.ndarray], sfreq: float, kind: str = "psd", *, fmin: float = 1.0, fmax: float = 45.0
) -> np.ndarray:
    """One feature vector per recording.

    Parameters
    ----------
    signals : sequence of numpy.ndarray
        Recordings, each (C, T).
    sfreq : float
        Sampling rate, Hz.
    kind : str
        One of :data:`FINGERPRINT_FEATURES`.
    fmin, fmax : float
        Spectral range of the PSD features, Hz.

    Returns
    -------
    features : numpy.ndarray
        (R, n_features).
    """
    check_option("kind", kind, FINGERPRINT_FEATURES)
    if kind == "tde_cov":
        rows = []
        for signal in signals:
            covariance = tde_covariance(signal)
            rows.append(covariance[np.triu_indices(covariance.shape[0])])
        return np.stack(rows)
    freqs, psd = welch_psd(signals, sfreq, fmin=fmin, fmax=fmax)  # (R, C, F)
    log_psd = np.log(np.maximum(psd, np.finfo(np.float64).tiny))
    if kind == "psd":
        return log_psd.mean(axis=1)
    if kind == "spatial":
        return np.log(np.maximum(psd.mean(axis=2), np.finfo(np.float64).tiny))
    return log_psd.reshape(len(log_psd), -1)


def fingerprint_accuracy(
    real_features: np.ndarray, generated_features: np.ndarray, top_k: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Share of generated recordings whose own real recording is among the k nearest by correlation distance.

    Row ``i`` of ``generated_features`` belongs to row ``i`` of ``real_features``.

    Parameters
    ----------
    real_features, generated_features : numpy.ndarray
        (R, n_features) each, same R.
    top_k : sequence of int
        The k values.

    Returns
    -------
    accuracy : dict
        ``{"top1": ..., "top5": ..., "chance_top1": 1/R, ...}`` (k larger than R counts as R).
    """
    if real_features.shape != generated_features.shape:
        raise ValueError(
            f"fingerprinting pairs generated recording i with real recording i: got {real_features.shape[0]} real "
            f"and {generated_features.shape[0]} generated feature rows of widths "
            f"{real_features.shape[1:]} and {generated_features.shape[1:]}."
        )

    def standardise(f: np.ndarray) -> np.ndarray:
        f = f - f.mean(axis=1, keepdims=True)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), np.finfo(np.float64).tiny)

    distance = 1.0 - standardise(generated_features) @ standardise(real_features).T  # (R gen, R real)
    n = distance.shape[0]
    own = np.diagonal(distance)[:, None]
    rank = (distance < own).sum(axis=1)  # 0 = own recording nearest (ties count in its favour)
    result: dict[str, float] = {}
    for k in top_k:
        k = ensure_int("top_k", k)
        result[f"top{k}"] = float((rank < min(k, n)).mean())
        result[f"chance_top{k}"] = min(k, n) / n
    return result
