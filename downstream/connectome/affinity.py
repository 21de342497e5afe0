"""Pairwise affinities between node signals at every time point: the (T, W, P) tensor.

Each node signal is smoothed with a Gaussian kernel and differentiated (one derivative-of-
Gaussian filter); affinities compare the derivatives of the two nodes of every pair. Pairs are
the upper-triangle entries ``(i, j), i < j`` in row-major order (:func:`pair_index`). Kinds:

``coactivation`` (default)
    ``max(0, d_i(t) d_j(t))`` divided by its maximum over pairs at ``t``: high only when two
    nodes change together in the same direction; a time point with no co-activation is zero.
``gaussian``
    ``exp(-(d_i(t) - d_j(t))^2 / s_t^2)``, ``s_t`` the median over pairs of ``|d_i - d_j|``.
    Pairs of silent nodes get high affinity.
``sliding_corr``
    Pearson correlation of the two derivatives in a centred window, rectified at zero.

The tensor is float32 and built chunk by chunk in time, so no float64 copy of it (or of a
pair x time matrix of a whole recording) is ever made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from brainfm._check import check_option, check_range

__all__ = ["AFFINITY_KINDS", "affinity_tensor", "node_derivatives", "pair_index", "pair_mask"]

AFFINITY_KINDS = ("coactivation", "gaussian", "sliding_corr")
#: Bytes of float32 pair x time work arrays per chunk.
_CHUNK_BYTES = 4 * 2**20


def pair_index(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The node pairs of the pair mode, in order.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``N``.

    Returns
    -------
    rows, cols : numpy.ndarray
        ``P = N (N - 1) / 2`` indices with ``rows[p] < cols[p]``, row-major; pair ``p`` joins
        nodes ``rows[p]`` and ``cols[p]``.
    """
    return np.triu_indices(n_nodes, k=1)


def pair_mask(node_mask: np.ndarray) -> np.ndarray:
    """Which pairs are observed, from which nodes are.

    Parameters
    ----------
    node_mask : numpy.ndarray
        ``(W, N)`` bool, True where subject ``w`` has node ``n``.

    Returns
    -------
    mask : numpy.ndarray
        ``(W, P)`` bool: a pair is observed when both of its nodes are.
    """
    node_mask = np.asarray(node_mask, dtype=bool)
    rows, cols = pair_index(node_mask.shape[1])
    return node_mask[:, rows] & node_mask[:, cols]


def node_derivatives(signals: np.ndarray, sigma_samples: float = 2.0) -> np.ndarray:
    """Gaussian-smoothed first derivative of every node signal.

    Parameters
    ----------
    signals : numpy.ndarray
        ``(N, T)``; rows of missing nodes may be NaN (they stay NaN).
    sigma_samples : float
        Standard deviation of the Gaussian kernel, in samples; 0 for a plain first difference.

    Returns
    -------
    derivatives : numpy.ndarray
        ``(N, T)`` float32, per sample.
    """
    from scipy.ndimage import gaussian_filter1d

    signals = np.asarray(signals, dtype=np.float32)
    if sigma_samples > 0:
        return gaussian_filter1d(signals, sigma_samples, axis=1, order=1, mode="nearest", output=np.float32)
    return np.gradient(signals, axis=1).astype(np.float32, copy=False)


def _coactivation(d_rows: np.ndarray, d_cols: np.ndarray) -> np.ndarray:
    out = d_rows * d_cols  # (P, t)
    np.maximum(out, 0, out=out)
    peak = out.max(axis=0, keepdims=True)
    np.divide(out, peak, out=out, where=peak > 0)
    return out


def _gaussian(d_rows: np.ndarray, d_cols: np.ndarray, observed: np.ndarray) -> np.ndarray:
    out = d_rows - d_cols  # (P, t)
    np.abs(out, out=out)
    scale = np.median(out[observed] if observed.any() else out, axis=0, keepdims=True)  # over observed pairs
    zero = scale == 0
    # where all pairs differ by zero at t, every pair is maximally similar
    np.divide(out, np.where(zero, 1, scale), out=out)
    np.square(out, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    return out


def _sliding_corr(d_rows: np.ndarray, d_cols: np.ndarray, half: int, t0: int, t1: int) -> np.ndarray:
    """Rectified correlation at times ``t0:t1`` from derivative blocks covering ``t0-half : t1+half``."""
    n_block = d_rows.shape[1]
    lead = t0 - max(t0 - half, 0)  # samples before t0 held in the block

    def window_sums(values: np.ndarray) -> np.ndarray:
        # sums over the centred window of every t in t0:t1, from a float64 running sum of one chunk
        cumulative = np.zeros((values.shape[0], n_block + 1), dtype=np.float64)
        np.cumsum(values, axis=1, dtype=np.float64, out=cumulative[:, 1:])
        centre = np.arange(t1 - t0) + lead
        lo = np.clip(centre - half, 0, n_block)
        hi = np.clip(centre + half + 1, 0, n_block)
        return cumulative[:, hi] - cumulative[:, lo], (hi - lo)

    s_x, count = window_sums(d_rows)
    s_y, _ = window_sums(d_cols)
    s_xy, _ = window_sums(d_rows * d_cols)
    s_xx, _ = window_sums(d_rows * d_rows)
    s_yy, _ = window_sums(d_cols * d_cols)
    covariance = s_xy - s_x * s_y / count
    variance = (s_xx - s_x**2 / count) * (s_yy - s_y**2 / count)
    corr = np.divide(covariance, np.sqrt(np.clip(variance, 0, None)), out=np.zeros_like(covariance),
                     where=variance > 1e-30)
    return np.clip(corr, 0, 1).astype(np.float32)


def affinity_tensor(
    signals: Sequence[np.ndarray],
    node_mask: np.ndarray | None = None,
    *,
    kind: Literal["coactivation", "gaussian", "sliding_corr"] = "coactivation",
    sigma_samples: float = 2.0,
    window_samples: int = 512,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Build the time x subject x pair affinity tensor.

    Parameters
    ----------
    signals : sequence of numpy.ndarray
        One ``(N, T)`` array per subject (same ``N`` and ``T``); rows of missing nodes may be
        NaN.
    node_mask : numpy.ndarray | None
        ``(W, N)`` bool, True where a subject has the node; default: rows that are all finite.
    kind : str
        One of :data:`AFFINITY_KINDS`.
    sigma_samples : float
        Gaussian smoothing before the derivative, in samples.
    window_samples : int
        Window of ``sliding_corr``, in samples (centred).
    out : numpy.ndarray | None
        A float32 ``(T, W, P)`` array to fill (e.g. memory-mapped); default: a new one.

    Returns
    -------
    tensor : numpy.ndarray
        ``(T, W, P)`` float32, symmetric by construction (one entry per unordered pair),
        non-negative and finite; masked pairs are 0.
    mask : numpy.ndarray
        ``(W, P)`` bool, True for observed pairs.
    """
    check_option("kind", kind, AFFINITY_KINDS)
    check_range("sigma_samples", sigma_samples, low=0)
    if not signals:
        raise ValueError("affinity_tensor needs at least one subject's signals.")
    shapes = {np.shape(s) for s in signals}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"Every subject's signals must be (N, T) with the same N and T; got shapes {sorted(shapes)}.")
    n_nodes, n_times = next(iter(shapes))
    if node_mask is None:
        node_mask = np.stack([np.isfinite(s).all(axis=1) for s in signals])
    node_mask = np.asarray(node_mask, dtype=bool)
    mask = pair_mask(node_mask)
    rows, cols = pair_index(n_nodes)
    n_pairs = rows.size
    shape = (n_times, len(signals), n_pairs)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {shape}, got {out.dtype} {out.shape}.")
    chunk = max(1, min(n_times, _CHUNK_BYTES // (4 * max(n_pairs, 1))))
    half = int(window_samples) // 2
    for w, signal in enumerate(signals):
        derivative = node_derivatives(np.where(node_mask[w][:, None], signal, 0).astype(np.float32), sigma_samples)
        for t0 in range(0, n_times, chunk):
            t1 = min(t0 + chunk, n_times)
            if kind == "sliding_corr":
                lo, hi = max(t0 - half, 0), min(t1 + half, n_times)
                block = _sliding_corr(derivative[rows, lo:hi], derivative[cols, lo:hi], half, t0, t1)
            elif kind == "gaussian":
                block = _gaussian(derivative[rows, t0:t1], derivative[cols, t0:t1], mask[w])
            else:
                block = _coactivation(derivative[rows, t0:t1], derivative[cols, t0:t1])
            block[~mask[w]] = 0
            out[t0:t1, w, :] = block.T  # (t, P)
    return out, mask
