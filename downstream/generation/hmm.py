"""A Gaussian hidden Markov model fitted to many 1-D series at once (NumPy, Baum-Welch + Viterbi).

Each of ``S`` series gets its own HMM (its own means, variances, transitions); the series are
fitted together, so the per-sample recursion runs once over time with every series in one
vectorised step. Speed is on a par with hmmlearn per series (``bench/burst_hmm.py``: 0.9x), without
its compiled dependency; ``tests/downstream/generation/test_hmm.py`` checks it against hmmlearn
when installed.

The recursions are the scaled forward-backward of Rabiner (1989) and the log-space Viterbi;
emissions are univariate Gaussians. Initialisation is deterministic (state means at evenly
spaced quantiles of each series), so a fit needs no seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainfm._check import check_range, ensure_int

__all__ = ["GaussianHMMFit", "fit_gaussian_hmm", "viterbi"]

_VAR_FLOOR = 1e-6  # relative to each series' variance: keeps a state from collapsing onto one value


@dataclass
class GaussianHMMFit:
    """The fitted parameters of ``S`` independent ``K``-state Gaussian HMMs.

    States are sorted by mean, lowest first, so state ``K - 1`` is the high-amplitude one.

    Attributes
    ----------
    means : numpy.ndarray
        (S, K) state means.
    variances : numpy.ndarray
        (S, K) state variances.
    transitions : numpy.ndarray
        (S, K, K) transition probabilities, rows sum to 1 (``[s, i, j]`` = P(j at t+1 | i at t)).
    start : numpy.ndarray
        (S, K) initial state probabilities.
    log_likelihood : numpy.ndarray
        (S,) log-likelihood of each series under its final parameters.
    n_iter : int
        EM iterations run.
    converged : bool
        Whether every series' log-likelihood gain fell under ``tol`` before ``n_iter``.
    """

    means: np.ndarray
    variances: np.ndarray
    transitions: np.ndarray
    start: np.ndarray
    log_likelihood: np.ndarray
    n_iter: int
    converged: bool


def _emission_probs(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian likelihoods scaled per sample: ``b (S, T, K)`` with max 1 over K, and their log scale ``(S, T)``."""
    # (S, T, K)
    log_b = -0.5 * (np.log(2 * np.pi * variances)[:, None, :]
                    + (x[:, :, None] - means[:, None, :]) ** 2 / variances[:, None, :])
    scale = log_b.max(axis=2)
    return np.exp(log_b - scale[:, :, None]), scale


def _forward_backward(b: np.ndarray, transitions: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled forward-backward. Returns normalised alpha, beta ``(S, T, K)`` and log of the scale factors ``(S, T)``."""
    n_series, n_times, n_states = b.shape
    alpha = np.empty_like(b)
    beta = np.empty_like(b)
    log_c = np.empty((n_series, n_times))
    a = start * b[:, 0]
    c = a.sum(axis=1)
    alpha[:, 0] = a / c[:, None]
    log_c[:, 0] = np.log(c)
    trans_t = np.ascontiguousarray(transitions)
    for t in range(1, n_times):
        # (S, 1, K) @ (S, K, K) -> (S, 1, K): sum_i alpha_{t-1}(i) A(i, j)
        a = np.matmul(alpha[:, t - 1, None, :], trans_t)[:, 0] * b[:, t]
        c = a.sum(axis=1)
        alpha[:, t] = a / c[:, None]
        log_c[:, t] = np.log(c)
    beta[:, -1] = 1.0
    for t in range(n_times - 2, -1, -1):
        # (S, K, K) @ (S, K, 1): sum_j A(i, j) b_{t+1}(j) beta_{t+1}(j)
        v = np.matmul(trans_t, (b[:, t + 1] * beta[:, t + 1])[:, :, None])[:, :, 0]
        beta[:, t] = v / v.sum(axis=1, keepdims=True)
    return alpha, beta, log_c


def _initial_parameters(x: np.ndarray, n_states: int, stay: float) -> tuple[np.ndarray, ...]:
    quantiles = (np.arange(n_states) + 0.5) / n_states
    means = np.quantile(x, quantiles, axis=1).T  # (S, K)
    variances = np.repeat(x.var(axis=1, keepdims=True) / n_states, n_states, axis=1)
    off = (1 - stay) / max(n_states - 1, 1)
    transitions = np.full((x.shape[0], n_states, n_states), off)
    transitions[:, np.arange(n_states), np.arange(n_states)] = stay if n_states > 1 else 1.0
    start = np.full((x.shape[0], n_states), 1.0 / n_states)
    return means, variances, transitions, start


def fit_gaussian_hmm(
    x: np.ndarray,
    n_states: int = 2,
    *,
    n_iter: int = 100,
    tol: float = 1e-4,
) -> GaussianHMMFit:
    """Fit one Gaussian HMM per row of ``x`` by expectation-maximisation (Baum-Welch).

    Parameters
    ----------
    x : numpy.ndarray
        (S, T) or (T,) series, finite, ``T >= 2``.
    n_states : int
        Number of hidden states ``K``.
    n_iter : int
        Most EM iterations.
    tol : float
        Stop when no series' log-likelihood per sample rises by more than this.

    Returns
    -------
    fit : GaussianHMMFit
        Parameters with states sorted by mean (lowest first).
    """
    n_states = ensure_int("n_states", n_states)
    check_range("n_states", n_states, 1)
    n_iter = ensure_int("n_iter", n_iter)
    check_range("n_iter", n_iter, 1)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"x must be (n_series, n_times) with n_times >= 2, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("x holds non-finite values; an HMM needs finite series.")
    floor = _VAR_FLOOR * np.maximum(x.var(axis=1), np.finfo(float).tiny)[:, None]
    means, variances, transitions, start = _initial_parameters(x, n_states, stay=0.95)
    previous = np.full(x.shape[0], -np.inf)
    converged = False
    iteration = 0
    for iteration in range(1, n_iter + 1):  # noqa: B007 - the count is reported
        b, log_scale = _emission_probs(x, means, variances)
        alpha, beta, log_c = _forward_backward(b, transitions, start)
        log_likelihood = log_c.sum(axis=1) + log_scale.sum(axis=1)
        gamma = alpha * beta
        gamma /= gamma.sum(axis=2, keepdims=True)  # (S, T, K)
        # xi summed over t: sum_t alpha_{t-1}(i) A(i, j) b_t(j) beta_t(j) / norm_t
        # without forming the (S, T-1, K, K) array: norm_t = sum_j (alpha_{t-1} A)(j) w_t(j)
        weights = b[:, 1:] * beta[:, 1:]  # (S, T-1, K)
        norm = np.einsum("sti,sij,stj->st", alpha[:, :-1], transitions, weights)  # (S, T-1)
        counts = transitions * np.einsum("sti,stj->sij", alpha[:, :-1] / norm[:, :, None], weights)  # (S, K, K)
        transitions = counts / np.maximum(counts.sum(axis=2, keepdims=True), np.finfo(float).tiny)
        start = gamma[:, 0]
        occupancy = np.maximum(gamma.sum(axis=1), np.finfo(float).tiny)  # (S, K)
        means = np.einsum("stk,st->sk", gamma, x) / occupancy
        variances = np.einsum("stk,stk->sk", gamma, (x[:, :, None] - means[:, None, :]) ** 2) / occupancy
        variances = np.maximum(variances, floor)
        gain = (log_likelihood - previous) / x.shape[1]
        previous = log_likelihood
        if np.all(gain < tol):
            converged = True
            break
    b, log_scale = _emission_probs(x, means, variances)
    _, _, log_c = _forward_backward(b, transitions, start)
    order = np.argsort(means, axis=1)  # (S, K) states by mean
    rows = np.arange(x.shape[0])[:, None]
    return GaussianHMMFit(
        means=means[rows, order],
        variances=variances[rows, order],
        transitions=transitions[rows[:, :, None], order[:, :, None], order[:, None, :]],
        start=start[rows, order],
        log_likelihood=log_c.sum(axis=1) + log_scale.sum(axis=1),
        n_iter=iteration,
        converged=converged,
    )


def viterbi(x: np.ndarray, fit: GaussianHMMFit) -> np.ndarray:
    """The most likely state sequence of each series under its fitted HMM.

    Parameters
    ----------
    x : numpy.ndarray
        (S, T) or (T,) series, as given to :func:`fit_gaussian_hmm`.
    fit : GaussianHMMFit
        Parameters for the same ``S`` series.

    Returns
    -------
    states : numpy.ndarray
        (S, T) int state indices (0 = lowest mean).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[0] != fit.means.shape[0]:
        raise ValueError(f"x has {x.shape[0]} series but the fit has {fit.means.shape[0]}.")
    n_series, n_times = x.shape
    log_b = -0.5 * (np.log(2 * np.pi * fit.variances)[:, None, :]
                    + (x[:, :, None] - fit.means[:, None, :]) ** 2 / fit.variances[:, None, :])  # (S, T, K)
    with np.errstate(divide="ignore"):
        log_a = np.log(fit.transitions)  # (S, K, K)
        delta = np.log(fit.start) + log_b[:, 0]
    back = np.empty((n_series, n_times, fit.means.shape[1]), dtype=np.intp)
    for t in range(1, n_times):
        scores = delta[:, :, None] + log_a  # (S, K from, K to)
        back[:, t] = scores.argmax(axis=1)
        delta = np.take_along_axis(scores, back[:, t, None, :], axis=1)[:, 0] + log_b[:, t]
    states = np.empty((n_series, n_times), dtype=np.intp)
    states[:, -1] = delta.argmax(axis=1)
    rows = np.arange(n_series)
    for t in range(n_times - 1, 0, -1):
        states[:, t - 1] = back[rows, t, states[:, t]]
    return states
