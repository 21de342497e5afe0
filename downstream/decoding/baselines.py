"""Classical baselines, fitted on the same folds as the deep models (scikit-learn estimators on X (n, C, T)).

==============  ===========================================================================
name            pipeline
==============  ===========================================================================
bandpower_lr    log Welch band power per channel (delta 1-4, theta 4-8, alpha 8-13, beta
                13-30, gamma 30-45 Hz, capped below Nyquist) -> z-score -> logistic regression
tangent_lr      covariance (OAS shrinkage) -> Riemannian tangent space at the training
                mean (pyriemann) -> logistic regression
csp_lda         common spatial patterns (mne.decoding.CSP, 4 components, log variance,
                Ledoit-Wolf) -> linear discriminant analysis (motor imagery)
cca             SSVEP: largest canonical correlation of the trial with sine/cosine
                references at each stimulus frequency and its 2nd and 3rd harmonics ->
                logistic regression on those correlations (the classic CCA detector picks the
                largest; the classifier also learns a resting class, which has no frequency)
==============  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["BANDS", "CCAFeatures", "LogBandPower", "make_baseline"]

#: Frequency bands of ``bandpower_lr`` in Hz.
BANDS: tuple[tuple[float, float], ...] = ((1, 4), (4, 8), (8, 13), (13, 30), (30, 45))


class LogBandPower(TransformerMixin, BaseEstimator):
    """Log of the mean Welch power in each band of each channel.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    bands : sequence of (float, float)
        Band edges in Hz; bands reaching above Nyquist are cut at it, empty ones dropped.
    """

    def __init__(self, sfreq: float, bands: Sequence[tuple[float, float]] = BANDS) -> None:
        self.sfreq = sfreq
        self.bands = bands

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> LogBandPower:  # noqa: N803
        """Nothing to learn."""
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """(n, C, T) -> (n, C * n_bands)."""
        from scipy.signal import welch

        n_per_segment = min(X.shape[-1], int(round(2 * self.sfreq)))
        freqs, power = welch(X, fs=self.sfreq, nperseg=n_per_segment, axis=-1)  # (n, C, F)
        nyquist = self.sfreq / 2
        columns = []
        for low, high in self.bands:
            keep = (freqs >= low) & (freqs < min(high, nyquist))
            if keep.any():
                columns.append(np.log(power[..., keep].mean(axis=-1) + 1e-20))
        return np.stack(columns, axis=-1).reshape(len(X), -1)


class CCAFeatures(TransformerMixin, BaseEstimator):
    """Largest canonical correlation between each trial and sine/cosine references per frequency.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    freqs : sequence of float
        Stimulus frequencies in Hz.
    n_harmonics : int
        Harmonics in each reference (1 = the fundamental only).
    """

    def __init__(self, sfreq: float, freqs: Sequence[float], n_harmonics: int = 3) -> None:
        self.sfreq = sfreq
        self.freqs = freqs
        self.n_harmonics = n_harmonics

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> CCAFeatures:  # noqa: N803
        """Nothing to learn."""
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """(n, C, T) -> (n, n_freqs) canonical correlations in [0, 1]."""
        n_times = X.shape[-1]
        t = np.arange(n_times) / self.sfreq
        bases = []
        for f in self.freqs:
            columns = [fn(2 * np.pi * h * f * t) for h in range(1, self.n_harmonics + 1) for fn in (np.sin, np.cos)]
            q, _ = np.linalg.qr(np.stack(columns, axis=1) - np.stack(columns, axis=1).mean(axis=0))
            bases.append(q)  # (T, 2 n_harmonics), orthonormal
        out = np.empty((len(X), len(bases)))
        for i, trial in enumerate(X):
            centred = (trial - trial.mean(axis=1, keepdims=True)).T  # (T, C)
            q_x, _ = np.linalg.qr(centred)
            for j, q_y in enumerate(bases):
                # canonical correlations are the singular values of Q_x^T Q_y
                out[i, j] = np.linalg.svd(q_x.T @ q_y, compute_uv=False)[0]
        return out


def _logistic(seed: int) -> object:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=seed)


def make_baseline(name: str, sfreq: float, n_channels: int, seed: int, stimulus_freqs: Sequence[float] = ()) -> Pipeline:
    """A fresh, unfitted baseline pipeline.

    Parameters
    ----------
    name : str
        One of ``bandpower_lr``, ``tangent_lr``, ``csp_lda``, ``cca``.
    sfreq : float
        Sampling rate in Hz.
    n_channels : int
        Channels per trial.
    seed : int
        Seed of the classifier.
    stimulus_freqs : sequence of float
        Stimulus frequencies (``cca``).

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Takes X (n, C, T).
    """
    if name == "bandpower_lr":
        return make_pipeline(LogBandPower(sfreq), StandardScaler(), _logistic(seed))
    if name == "tangent_lr":
        try:
            from pyriemann.estimation import Covariances
            from pyriemann.tangentspace import TangentSpace
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ImportError("The tangent_lr baseline needs pyriemann: pip install pyriemann") from exc
        return make_pipeline(Covariances(estimator="oas"), TangentSpace(metric="riemann"), StandardScaler(), _logistic(seed))
    if name == "csp_lda":
        from mne.decoding import CSP
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        return make_pipeline(CSP(n_components=min(4, n_channels), reg="ledoit_wolf", log=True),
                             LinearDiscriminantAnalysis())
    if name == "cca":
        return make_pipeline(CCAFeatures(sfreq, list(stimulus_freqs)), StandardScaler(), _logistic(seed))
    raise ValueError(f"Unknown baseline {name!r}.")
