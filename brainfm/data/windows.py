"""Window arithmetic on a recording's time axis: window starts, bad spans, overlaps (no torch).

Everything here works in samples. A window is the half-open sample range
``[start, start + window_size_samples)``; a bad span is ``[start, stop)`` in samples, made
from events whose description starts with ``BAD`` (any case, as MNE's
``reject_by_annotation``). :mod:`brainfm.loading` builds its window index from these
functions and ``brainfm store stats`` counts windows with them, so both always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from brainfm._check import check_option

__all__ = [
    "LAST_WINDOW_POLICIES",
    "bad_spans",
    "fixed_window_starts",
    "overlaps_spans",
    "seconds_to_samples",
]

#: What to do with the samples after the last full window: ``"drop"`` them, or ``"shift"``
#: a last window back so that it ends at the last sample (it overlaps the previous one;
#: braindecode's ``drop_last_window=False``).
LAST_WINDOW_POLICIES: tuple[str, ...] = ("drop", "shift")


def seconds_to_samples(parameter: str, seconds: float, sfreq: float, *, allow_zero: bool = False) -> int:
    """Convert a duration to a whole number of samples (rounded to nearest).

    Parameters
    ----------
    parameter : str
        Name of the parameter, for the error message.
    seconds : float
        The duration in seconds.
    sfreq : float
        Sampling rate in Hz.
    allow_zero : bool
        Whether a duration of zero samples is allowed.

    Returns
    -------
    n_samples : int
        ``round(seconds * sfreq)``.
    """
    n_samples = int(round(float(seconds) * float(sfreq)))
    if n_samples < 0 or (n_samples == 0 and not allow_zero):
        raise ValueError(
            f"Invalid value for the {parameter!r} parameter: {seconds!r} s is {n_samples} samples at "
            f"{sfreq:g} Hz; it must be at least one sample."
        )
    return n_samples


def fixed_window_starts(
    n_times: int,
    window_size_samples: int,
    stride_samples: int,
    last_window: Literal["drop", "shift"] = "drop",
) -> np.ndarray:
    """Start samples of fixed-length windows over a recording.

    Parameters
    ----------
    n_times : int
        Samples in the recording.
    window_size_samples : int
        Samples per window (> 0).
    stride_samples : int
        Samples between consecutive starts (> 0).
    last_window : "drop" | "shift"
        Policy for the samples after the last full window (see :data:`LAST_WINDOW_POLICIES`).
        A recording shorter than one window yields no window under either policy.

    Returns
    -------
    starts : numpy.ndarray of int64, shape (n_windows,)
        Increasing start samples; every window lies inside ``[0, n_times)``.
    """
    if window_size_samples <= 0 or stride_samples <= 0:
        raise ValueError(
            f"window_size_samples and stride_samples must be positive, got {window_size_samples} "
            f"and {stride_samples}."
        )
    check_option("last_window", last_window, LAST_WINDOW_POLICIES)
    if n_times < window_size_samples:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, n_times - window_size_samples + 1, stride_samples, dtype=np.int64)
    last = n_times - window_size_samples
    if last_window == "shift" and starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    return starts


def bad_spans(
    onsets_s: Sequence[float] | np.ndarray,
    durations_s: Sequence[float] | np.ndarray,
    descriptions: Sequence[str] | np.ndarray,
    sfreq: float,
) -> np.ndarray:
    """Merge the events whose description starts with ``BAD`` into sorted sample spans.

    Parameters
    ----------
    onsets_s, durations_s : array-like of float
        Event onsets and durations in seconds from the first sample.
    descriptions : array-like of str
        Event descriptions; those starting with ``BAD`` (any case) are bad spans.
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    spans : numpy.ndarray of int64, shape (n_spans, 2)
        Non-overlapping ``[start, stop)`` sample ranges, sorted. A zero-duration bad event
        marks the one sample it falls on.
    """
    descriptions = np.asarray(descriptions, dtype=object)
    is_bad = np.array([str(d).upper().startswith("BAD") for d in descriptions], dtype=bool)
    if not is_bad.any():
        return np.zeros((0, 2), dtype=np.int64)
    onsets = np.asarray(onsets_s, dtype=np.float64)[is_bad]
    durations = np.asarray(durations_s, dtype=np.float64)[is_bad]
    starts = np.floor(onsets * sfreq).astype(np.int64)
    stops = np.maximum(np.ceil((onsets + durations) * sfreq).astype(np.int64), starts + 1)
    order = np.argsort(starts, kind="stable")
    starts, stops = starts[order], stops[order]
    # Merge overlapping or touching spans: a new span begins where its start exceeds every
    # earlier stop.
    running_stop = np.maximum.accumulate(stops)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > running_stop[:-1]
    group = np.cumsum(new) - 1
    merged_starts = starts[new]
    merged_stops = np.zeros(len(merged_starts), dtype=np.int64)
    np.maximum.at(merged_stops, group, stops)
    return np.stack([merged_starts, merged_stops], axis=1)


def overlaps_spans(starts: np.ndarray, window_size_samples: int, spans: np.ndarray) -> np.ndarray:
    """Whether each window ``[start, start + window_size_samples)`` overlaps a span.

    Parameters
    ----------
    starts : numpy.ndarray of int, shape (n_windows,)
        Window start samples.
    window_size_samples : int
        Samples per window.
    spans : numpy.ndarray of int, shape (n_spans, 2)
        Sorted, non-overlapping ``[start, stop)`` spans (as from :func:`bad_spans`).

    Returns
    -------
    overlaps : numpy.ndarray of bool, shape (n_windows,)
        True where the window shares at least one sample with a span.
    """
    starts = np.asarray(starts, dtype=np.int64)
    if len(spans) == 0 or len(starts) == 0:
        return np.zeros(len(starts), dtype=bool)
    # The first span that ends after the window starts is the only candidate.
    candidate = np.searchsorted(spans[:, 1], starts, side="right")
    valid = candidate < len(spans)
    overlaps = np.zeros(len(starts), dtype=bool)
    overlaps[valid] = spans[candidate[valid], 0] < starts[valid] + window_size_samples
    return overlaps
