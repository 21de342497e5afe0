"""The 80-lag per-channel linear autoregressive baseline generator (MEG-GPT spec §7.2).

One model per channel, ``x_t = b + sum_k w_k x_{t-k} + e_t`` with ``k = 1..n_lags``, fitted on
every real recording (windows never cross a recording's end). The reference fits it with
scikit-learn's ``SGDRegressor(alpha=1e-4)`` (squared loss, L2 penalty); brainfm solves the
same objective in closed form,

    minimise  (1 / 2n) sum_t (x_t - b - w . x_{t-1..t-p})^2  +  (alpha / 2) |w|^2,

i.e. ridge regression with penalty ``n * alpha`` on the weights (none on the intercept), which
is the point SGD approaches; ``tests/downstream/generation/test_ar_baseline.py`` checks the
two against each other. Generation runs the recursion with Gaussian innovations whose
standard deviation is each channel's residual standard deviation, started from zeros and
a burn-in that is dropped, or from a prompt of real samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from brainfm._check import check_range, ensure_int
from brainfm._logging import warn

__all__ = ["ARBaseline", "fit_ar_baseline", "generate_ar"]

_ROWS_PER_BLOCK = 16384  # design rows formed at once (16384 x 81 float64 = 10 MiB)


@dataclass
class ARBaseline:
    """A fitted per-channel AR model.

    Attributes
    ----------
    coefficients : numpy.ndarray
        (C, n_lags); ``coefficients[c, k]`` multiplies ``x_c[t - 1 - k]``.
    intercept : numpy.ndarray
        (C,) intercepts.
    noise_std : numpy.ndarray
        (C,) residual standard deviation of the fit (the innovation scale when generating).
    alpha : float
        L2 penalty of the fit.
    stable : numpy.ndarray
        (C,) whether each channel's recursion is stable (every root of its characteristic
        polynomial inside the unit circle).
    """

    coefficients: np.ndarray
    intercept: np.ndarray
    noise_std: np.ndarray
    alpha: float
    stable: np.ndarray

    @property
    def n_lags(self) -> int:
        """Number of lags."""
        return int(self.coefficients.shape[1])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.coefficients.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists), for saving beside a report."""
        return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ARBaseline:
        """Rebuild a model saved with :meth:`to_dict`."""
        return cls(
            coefficients=np.asarray(data["coefficients"], dtype=np.float64),
            intercept=np.asarray(data["intercept"], dtype=np.float64),
            noise_std=np.asarray(data["noise_std"], dtype=np.float64),
            alpha=float(data["alpha"]),
            stable=np.asarray(data["stable"], dtype=bool),
        )


def _as_list(signals: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(signals, np.ndarray):
        if signals.ndim == 2:
            return [signals]
        if signals.ndim == 3:
            return list(signals)
        raise ValueError(f"signals must be (C, T), (R, C, T) or a list of (C, T) arrays, got shape {signals.shape}.")
    return [np.asarray(s) for s in signals]


def _is_stable(coefficients: np.ndarray) -> np.ndarray:
    stable = np.empty(coefficients.shape[0], dtype=bool)
    for c, w in enumerate(coefficients):
        # characteristic polynomial z^p - w_1 z^{p-1} - ... - w_p
        roots = np.roots(np.concatenate(([1.0], -w)))
        stable[c] = bool(np.all(np.abs(roots) < 1.0)) if roots.size else True
    return stable


def fit_ar_baseline(
    signals: np.ndarray | Sequence[np.ndarray],
    n_lags: int = 80,
    *,
    alpha: float = 1e-4,
) -> ARBaseline:
    """Fit one ridge-penalised linear AR model per channel on one or more recordings.

    Parameters
    ----------
    signals : numpy.ndarray | sequence of numpy.ndarray
        (C, T), (R, C, T) or a list of (C, T) recordings with the same channels (typically
        z-scored per channel, as MEG-GPT's input).
    n_lags : int
        AR order (80 in the reference).
    alpha : float
        L2 penalty in scikit-learn's ``SGDRegressor`` convention (1e-4 in the reference).

    Returns
    -------
    model : ARBaseline
        Coefficients, intercepts, residual scales and per-channel stability.
    """
    n_lags = ensure_int("n_lags", n_lags)
    check_range("n_lags", n_lags, 1)
    check_range("alpha", alpha, 0.0)
    recordings = _as_list(signals)
    if not recordings:
        raise ValueError("fit_ar_baseline needs at least one recording.")
    n_channels = recordings[0].shape[0]
    for i, signal in enumerate(recordings):
        if signal.ndim != 2 or signal.shape[0] != n_channels:
            raise ValueError(f"recording {i} has shape {signal.shape}; every recording must be ({n_channels}, T).")
        if not np.isfinite(signal).all():
            raise ValueError(f"recording {i} holds non-finite samples; the AR fit needs finite data.")
    usable = [s for s in recordings if s.shape[1] > n_lags]
    if not usable:
        raise ValueError(f"every recording is shorter than n_lags + 1 = {n_lags + 1} samples.")
    # Per channel sufficient statistics of the design [lags, 1]: G = Z'Z, h = Z'y, over all recordings.
    gram = np.zeros((n_channels, n_lags + 1, n_lags + 1))
    cross = np.zeros((n_channels, n_lags + 1))
    sum_y2 = np.zeros(n_channels)
    n = 0
    for signal in usable:
        x = np.asarray(signal, dtype=np.float64)
        # row t of the design holds x[t-1], ..., x[t-p], 1 for the target x[t], t = p..T-1
        lags = np.lib.stride_tricks.sliding_window_view(x[:, :-1], n_lags, axis=1)[:, :, ::-1]  # (C, T - p, p) view
        for first in range(0, lags.shape[1], _ROWS_PER_BLOCK):
            rows = slice(first, first + _ROWS_PER_BLOCK)
            y = x[:, n_lags:][:, rows]  # (C, rows)
            for c in range(n_channels):
                design = np.empty((y.shape[1], n_lags + 1))  # (rows, p + 1), contiguous for BLAS
                design[:, :-1] = lags[c, rows]
                design[:, -1] = 1.0
                gram[c] += design.T @ design
                cross[c] += design.T @ y[c]
            sum_y2 += (y**2).sum(axis=1)
            n += y.shape[1]
    penalty = np.eye(n_lags + 1) * alpha * n
    penalty[-1, -1] = 0.0  # the intercept is not penalised
    solution = np.linalg.solve(gram + penalty, cross[:, :, None])[:, :, 0]  # (C, p + 1)
    # residual sum of squares from the statistics: |y|^2 - 2 s'h + s'G s
    rss = sum_y2 - 2 * np.einsum("cp,cp->c", solution, cross) + np.einsum("cp,cpq,cq->c", solution, gram, solution)
    coefficients = solution[:, :-1]
    stable = _is_stable(coefficients)
    if not stable.all():
        warn(f"the AR({n_lags}) fit is unstable on {int((~stable).sum())} of {n_channels} channels "
             f"(indices {np.flatnonzero(~stable)[:10].tolist()}); their generated signals will diverge.")
    return ARBaseline(
        coefficients=coefficients,
        intercept=solution[:, -1],
        noise_std=np.sqrt(np.maximum(rss, 0.0) / n),
        alpha=float(alpha),
        stable=stable,
    )


def generate_ar(
    model: ARBaseline,
    n_times: int,
    *,
    n_recordings: int = 1,
    seed: int | None = 0,
    prompt: np.ndarray | None = None,
    burn_in: int | None = None,
) -> np.ndarray:
    """Generate signals from a fitted AR model.

    Parameters
    ----------
    model : ARBaseline
        From :func:`fit_ar_baseline`.
    n_times : int
        Samples per generated recording.
    n_recordings : int
        Independent recordings to generate (one random stream each).
    seed : int | None
        Seed of the innovations (``numpy.random.default_rng``); the same seed gives the same output.
    prompt : numpy.ndarray | None
        (C, >= n_lags) real samples to start from (the last ``n_lags`` are used, and not returned);
        None starts from zeros and drops a burn-in.
    burn_in : int | None
        Samples generated then dropped when starting from zeros; default ``10 * n_lags``.

    Returns
    -------
    signals : numpy.ndarray
        (n_recordings, C, n_times) float32.
    """
    n_times = ensure_int("n_times", n_times)
    check_range("n_times", n_times, 1)
    n_recordings = ensure_int("n_recordings", n_recordings)
    check_range("n_recordings", n_recordings, 1)
    p, n_channels = model.n_lags, model.n_channels
    if prompt is not None:
        prompt = np.asarray(prompt, dtype=np.float64)
        if prompt.ndim != 2 or prompt.shape[0] != n_channels or prompt.shape[1] < p:
            raise ValueError(
                f"prompt must be ({n_channels}, >= {p}) samples (the model's channels and lags), got {prompt.shape}."
            )
        burn_in = 0
        start = np.broadcast_to(prompt[:, -p:], (n_recordings, n_channels, p))
    else:
        burn_in = 10 * p if burn_in is None else ensure_int("burn_in", burn_in)
        check_range("burn_in", burn_in, 0)
        start = np.zeros((n_recordings, n_channels, p))
    rng = np.random.default_rng(seed)
    total = burn_in + n_times
    out = np.empty((n_recordings, n_channels, p + total))
    out[:, :, :p] = start
    innovations = rng.standard_normal((total, n_recordings, n_channels)) * model.noise_std
    weights = model.coefficients[:, ::-1]  # (C, p): weights[:, j] multiplies x[t - p + j]
    for t in range(total):
        window = out[:, :, t : t + p]  # (R, C, p): x[t-p .. t-1] in time order
        out[:, :, p + t] = np.einsum("rcp,cp->rc", window, weights) + model.intercept + innovations[t]
    return out[:, :, p + burn_in :].astype(np.float32)
