"""How the signal is laid out and compressed: chunk shapes, the codec, mantissa rounding."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bitround", "bitround_config", "channel_stats", "good_samples", "signal_chunk_times", "signal_compressors"]


def signal_chunk_times(n_channels: int, n_times: int, chunk_mib: float = 2.0) -> int:
    """Pick the time length of a signal chunk holding about ``chunk_mib`` MiB of float32.

    The length is a power of two between 256 and 65536 samples, and never more than the
    recording (so short recordings are one chunk). Zarr stores the last chunk of a recording
    at full size, so when a length up to 4x shorter pads the recording much less (by more
    than 1/64 of its length), the shorter one is taken: a 3-minute 21-channel recording at
    256 Hz (46,592 samples) is 3 chunks of 16,384 samples (5% padding), not 2 of 32,768
    (41%), which an uncompressed store would write to disk as it is.

    Parameters
    ----------
    n_channels : int
        Number of channels (every chunk holds all of them).
    n_times : int
        Number of samples in the recording.
    chunk_mib : float
        Target uncompressed chunk size in MiB.

    Returns
    -------
    chunk_times : int
        Samples per chunk along time.
    """
    target = chunk_mib * 2**20 / (4 * max(n_channels, 1))
    power = int(np.clip(np.round(np.log2(max(target, 1.0))), 8, 16))
    if n_times <= 2**power:
        return int(max(1, n_times))
    candidates = [2**p for p in range(max(8, power - 2), power + 1)]

    def stored(length: int) -> int:  # samples written, the last chunk padded
        return -(-n_times // length) * length

    least = min(stored(length) for length in candidates)
    return max(length for length in candidates if stored(length) <= least + n_times / 64)


def signal_compressors(compression: str, clevel: int, shuffle: str) -> tuple[list[Any] | None, dict[str, Any] | None]:
    """The Zarr compressors for the signal and their description for ``signal_encoding``.

    Parameters
    ----------
    compression : "none" | "lz4" | "zstd"
        No compression (the default: fastest to load, about 1.15x larger than lz4), Blosc's
        lz4 (about 1.15x smaller than float32 on real EEG; the loader then delivers about
        half the windows per second) or zstd (about 1.2x; slower still: for archives, best
        after mantissa rounding, about 2x).
    clevel : int
        Blosc compression level, 1-9.
    shuffle : "shuffle" | "bitshuffle"
        Byte shuffle, or bit shuffle (better after mantissa rounding).

    Returns
    -------
    compressors : list | None
        For ``create_array(compressors=...)``.
    description : dict | None
        ``{"name": "blosc", "cname", "clevel", "shuffle"}`` or None.
    """
    import zarr

    if compression == "none":
        return None, None
    codec = zarr.codecs.BloscCodec(cname=compression, clevel=clevel, shuffle=shuffle)
    return [codec], {"name": "blosc", "cname": compression, "clevel": clevel, "shuffle": shuffle}


def bitround(block: np.ndarray, keepbits: int) -> np.ndarray:
    """Round float32 mantissas to ``keepbits`` bits with :class:`numcodecs.BitRound`.

    Zeroed low mantissa bits compress far better; rounding is to nearest (ties to even), so
    the relative error of one sample is at most ``2 ** -(keepbits + 1)``. The rounded values
    are stored as ordinary float32 (no filter in the Zarr codec pipeline), so any Zarr reader
    reads them, and stores rounded by earlier brainfm versions read the same way.

    Parameters
    ----------
    block : numpy.ndarray of float32
        Finite values (left unchanged).
    keepbits : int
        Mantissa bits to keep, 1 to 23 (23 keeps everything).

    Returns
    -------
    rounded : numpy.ndarray of float32
        A rounded copy, same shape (``block`` itself when ``keepbits`` is 23).
    """
    from numcodecs import BitRound

    if block.dtype != np.float32:
        raise TypeError(f"bitround needs float32 data, got {block.dtype}.")
    if not 1 <= keepbits <= 23:
        raise ValueError(f"keepbits must lie in [1, 23], got {keepbits!r}.")
    if keepbits == 23:
        return block
    return np.asarray(BitRound(keepbits).encode(block)).view(np.float32).reshape(block.shape)


def bitround_config(keepbits: int | None) -> dict[str, Any] | None:
    """The numcodecs configuration of the rounding, as recorded in ``signal_encoding.bitround``.

    Parameters
    ----------
    keepbits : int | None
        Mantissa bits kept, or None (no rounding).

    Returns
    -------
    config : dict | None
        ``{"id": "bitround", "keepbits": keepbits}`` (:meth:`numcodecs.BitRound.get_config`),
        or None.
    """
    if keepbits is None:
        return None
    from numcodecs import BitRound

    return dict(BitRound(keepbits).get_config())


#: Median and IQR use at most this many evenly spaced samples per channel.
QUANTILE_SAMPLES = 2**16


def good_samples(n_times: int, spans: np.ndarray | None) -> np.ndarray | None:
    """The samples outside ``spans``, as a mask; None when every sample is outside them.

    Parameters
    ----------
    n_times : int
        Samples in the recording.
    spans : numpy.ndarray of int, shape (n_spans, 2) | None
        ``[start, stop)`` sample spans to leave out (``BAD`` spans,
        :func:`brainfm.data.windows.bad_spans`); they may reach outside the recording.

    Returns
    -------
    good : numpy.ndarray of bool, shape (n_times,) | None
        True outside every span; None when no span touches the recording.
    """
    if spans is None or not len(spans):
        return None
    good = np.ones(n_times, dtype=bool)
    for a, b in np.clip(np.asarray(spans, dtype=np.int64), 0, n_times).tolist():
        good[a:b] = False
    return None if good.all() else good


def channel_stats(signal: Any, block_bytes: int = 64 * 2**20, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per-channel mean, standard deviation, median and interquartile range.

    Mean and standard deviation use every sample (outside ``exclude``); median and IQR are
    exact for recordings of up to :data:`QUANTILE_SAMPLES` samples and otherwise computed on
    that many evenly spaced samples (every k-th), which is far more precise than
    normalisation needs and keeps the cost linear.

    Parameters
    ----------
    signal : array-like, shape (n_channels, n_times)
        The signal, read a block of rows at a time.
    block_bytes : int
        Memory for one block of rows in float64 (the standard deviation's temporary), so that
        the cost in memory does not grow with the recording's length beyond one row.
    exclude : numpy.ndarray of int, shape (n_spans, 2) | None
        ``[start, stop)`` sample spans left out of the statistics (the recording's ``BAD``
        spans, so that artefacts do not set the normalisation). When they cover every
        sample, every sample is used.

    Returns
    -------
    stats : numpy.ndarray, shape (n_channels, 4)
        float64 columns ``mean, std, median, iqr`` (see ``STAT_NAMES``).
    """
    n_channels, n_times = signal.shape
    good = good_samples(n_times, exclude)
    if good is not None and not good.any():
        good = None  # nothing outside the spans: statistics of the whole recording rather than none
    stats = np.zeros((n_channels, 4))
    block_channels = max(1, block_bytes // (8 * max(n_times, 1)))
    for start in range(0, n_channels, block_channels):
        rows = np.asarray(signal[start : start + block_channels])
        if good is not None:
            rows = rows[:, good]  # a copy of this block's good samples
        if rows.shape[1] == 0:
            continue
        stats[start : start + len(rows), 0] = rows.mean(axis=1, dtype=np.float64)
        stats[start : start + len(rows), 1] = rows.std(axis=1, dtype=np.float64)
        # percentiles on the float32 values (no float64 copy of the block)
        step = -(-rows.shape[1] // QUANTILE_SAMPLES)
        q25, q50, q75 = np.percentile(rows[:, ::step], [25, 50, 75], axis=1)
        stats[start : start + len(rows), 2] = q50
        stats[start : start + len(rows), 3] = q75 - q25
    return stats
