"""Block iteration and per-channel statistics without a float64 copy of the whole signal.

Recording steps see the whole float32 signal. Whatever they compute in float64 they compute
over blocks of rows or of samples no larger than :data:`BLOCK_BYTES`, so a step's extra
memory stays a small, fixed amount however long the recording is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from brainfm.store.encoding import channel_stats

__all__ = ["BLOCK_BYTES", "row_blocks", "row_stats", "time_blocks"]

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


class _Rows:
    """The listed rows of a signal, sliced a block of rows at a time as ``channel_stats`` reads it."""

    def __init__(self, data: np.ndarray, rows: np.ndarray) -> None:
        self._data = data
        self._rows = np.asarray(rows, dtype=int)
        self.shape = (len(self._rows), data.shape[1])

    def __getitem__(self, key: slice) -> np.ndarray:
        return self._data[self._rows[key]]  # a copy of this block of rows only


def row_stats(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-channel mean, standard deviation, median and IQR of the listed rows, per block.

    :func:`brainfm.store.encoding.channel_stats` (the statistics stored with every
    recording) over ``data[rows]``, read :data:`BLOCK_BYTES` at a time, so the rows are never
    copied as a whole.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_channels, n_times)
        The signal.
    rows : numpy.ndarray of int
        Rows to measure.

    Returns
    -------
    stats : numpy.ndarray of float64, shape (len(rows), 4)
        Columns :data:`~brainfm.store.format.STAT_NAMES` (``mean, std, median, iqr``), in
        the signal's unit.
    """
    return channel_stats(_Rows(data, rows), block_bytes=BLOCK_BYTES)
