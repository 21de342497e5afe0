"""Block iteration and per-channel statistics without a float64 copy of the whole signal.

Recording steps see the whole float32 signal. Whatever they compute in float64 they compute
over blocks of rows or of samples no larger than :data:`BLOCK_BYTES`, so a step's extra
memory stays a small, fixed amount however long the recording is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from brainfm.store.encoding import QUANTILE_SAMPLES

__all__ = ["BLOCK_BYTES", "channel_robust_amplitude", "channel_std", "row_blocks", "time_blocks"]

#: Bytes of float64 a step works on at once.
BLOCK_BYTES = 16 * 2**20


def time_blocks(start: int, stop: int, n_rows: int, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, int]]:
    """Split the samples ``[start, stop)`` into spans whose float64 copy over ``n_rows`` fits a block.

    Parameters
    ----------
    start, stop : int
        Sample span to cover.
    n_rows : int
        Rows copied per span.
    block_bytes : int
        Bytes of float64 allowed per span.

    Returns
    -------
    spans : iterator of (int, int)
        ``[a, b)`` spans covering ``[start, stop)`` in order.
    """
    step = max(1, block_bytes // (8 * max(n_rows, 1)))
    for a in range(start, stop, step):
        yield a, min(a + step, stop)


def row_blocks(rows: np.ndarray, n_times: int, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """Split row indices into groups whose float64 copy of ``n_times`` samples fits a block.

    Parameters
    ----------
    rows : numpy.ndarray of int
        Row indices.
    n_times : int
        Samples per row.
    block_bytes : int
        Bytes of float64 allowed per group (at least one row per group).

    Returns
    -------
    groups : iterator of numpy.ndarray
        Consecutive slices of ``rows``.
    """
    step = max(1, block_bytes // (8 * max(n_times, 1)))
    for a in range(0, len(rows), step):
        yield rows[a : a + step]


def _reduce_rows(data: np.ndarray, rows: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``reduce`` (a (n, n_times) float32 block -> (n,) values) per block of ``rows``."""
    rows = np.asarray(rows, dtype=int)
    out = np.zeros(len(rows))
    if data.shape[1] == 0:
        return out
    done = 0
    for group in row_blocks(rows, data.shape[1]):
        out[done : done + len(group)] = reduce(data[group])  # a copy of this group only
        done += len(group)
    return out


def channel_std(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Standard deviation over time of each listed row (float64 accumulation, per block).

    Parameters
    ----------
    data : numpy.ndarray, shape (n_channels, n_times)
        The signal.
    rows : numpy.ndarray of int
        Rows to measure.

    Returns
    -------
    std : numpy.ndarray of float64, shape (len(rows),)
        One value per row, in the signal's unit.
    """
    return _reduce_rows(data, rows, lambda block: block.std(axis=1, dtype=np.float64))


def channel_robust_amplitude(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Robust amplitude of each listed row: 0.7413 times its interquartile range over time.

    For Gaussian samples this equals the standard deviation; brief large transients (eye
    blinks, movement) barely change it, unlike the standard deviation. Long recordings use
    65,536 evenly spaced samples per channel.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_channels, n_times)
        The signal.
    rows : numpy.ndarray of int
        Rows to measure.

    Returns
    -------
    amplitude : numpy.ndarray of float64, shape (len(rows),)
        One value per row, in the signal's unit.
    """
    step = -(-data.shape[1] // QUANTILE_SAMPLES) if data.shape[1] else 1

    def robust(block: np.ndarray) -> np.ndarray:
        q1, q3 = np.percentile(block[:, ::step], [25, 75], axis=1)
        return 0.7413 * (np.asarray(q3, dtype=np.float64) - q1)

    return _reduce_rows(data, rows, robust)

