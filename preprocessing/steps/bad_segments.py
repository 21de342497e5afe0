"""Bad-segment detection (MEG-GPT / OSL style): outlying fixed-length segments become BAD events.

Adapted from the OHBA pipeline MEG-GPT uses (osl-ephys ``detect_badsegments``): per sensor
type, the recording is cut into segments of ``segment_samples``; each segment gets one score
per mode, and segments whose score is an outlier by the generalized ESD test (Rosner 1983)
are marked. What changed: the score is the root-mean-square of the per-channel standard
deviations (channels' offsets do not count, unlike a standard deviation over the pooled
block); segments never straddle an acquisition boundary; a last piece shorter than half a
segment joins the segment before it; and the marks of all types and modes are merged into
contiguous ``BAD_segment`` events. The signal is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from jsonargparse.typing import OpenUnitInterval, PositiveInt

from brainfm._check import check_option, check_range, ensure_int, validate_type
from brainfm.data.channels import CHANNEL_TYPES
from brainfm.preprocessing.steps._blocks import BLOCK_BYTES
from brainfm.preprocessing.steps.base import RecordingStep, SignalState

__all__ = ["BadSegments", "generalized_esd"]

_MODES = ("amplitude", "diff")


def generalized_esd(values: np.ndarray, alpha: float, max_outliers: int) -> np.ndarray:
    """Two-sided generalized extreme studentized deviate test (Rosner 1983).

    Up to ``max_outliers`` times, the value farthest from the mean of those left (in units
    of their sample standard deviation) is removed; the number of outliers is the largest
    i whose statistic R_i exceeds the critical value
    lambda_i = (n - i) t_(p, n-i-1) / sqrt((n - i - 1 + t^2)(n - i + 1)),
    p = 1 - alpha / (2 (n - i + 1)).

    Parameters
    ----------
    values : numpy.ndarray, shape (n,)
        The sample.
    alpha : float
        Significance level.
    max_outliers : int
        Most outliers tested for (at most n - 2).

    Returns
    -------
    outliers : numpy.ndarray of bool, shape (n,)
        True for the values found to be outliers.
    """
    from scipy.stats import t as student_t

    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    outliers = np.zeros(n, dtype=bool)
    max_outliers = min(int(max_outliers), n - 2)
    if max_outliers < 1:
        return outliers
    remaining = np.ones(n, dtype=bool)
    removed: list[int] = []
    n_found = 0
    for i in range(1, max_outliers + 1):
        left = values[remaining]
        sd = left.std(ddof=1)
        if sd <= 0:
            break
        deviation = np.abs(values - left.mean())
        deviation[~remaining] = -np.inf
        index = int(np.argmax(deviation))
        statistic = deviation[index] / sd
        p = 1 - alpha / (2 * (n - i + 1))
        t = student_t.ppf(p, n - i - 1)
        critical = (n - i) * t / np.sqrt((n - i - 1 + t**2) * (n - i + 1))
        removed.append(index)
        remaining[index] = False
        if statistic > critical:
            n_found = i
    outliers[removed[:n_found]] = True
    return outliers


def _segment_edges(start: int, stop: int, length: int) -> list[tuple[int, int]]:
    """Segments of ``length`` samples over ``[start, stop)``; a short last piece (< length/2) joins the previous one."""
    edges = [(a, min(a + length, stop)) for a in range(start, stop, length)]
    if len(edges) > 1 and edges[-1][1] - edges[-1][0] < length / 2:
        last = edges.pop()
        edges[-1] = (edges[-1][0], last[1])
    return [(a, b) for a, b in edges if b - a >= 2]


def _scores(data: np.ndarray, rows: np.ndarray, edges: list[tuple[int, int]], mode: str) -> np.ndarray:
    """Root-mean-square over channels of each segment's per-channel standard deviation (of the first difference for ``"diff"``)."""
    scores = np.empty(len(edges))
    per_block = max(1, BLOCK_BYTES // (8 * max(len(rows), 1) * max(b - a for a, b in edges)))
    for first in range(0, len(edges), per_block):
        group = edges[first : first + per_block]
        block = np.asarray(data[rows, group[0][0] : group[-1][1]], dtype=np.float64)  # (n_rows, span)
        offset = group[0][0]
        for k, (a, b) in enumerate(group):
            segment = block[:, a - offset : b - offset]
            if mode == "diff":
                segment = np.diff(segment, axis=1)
            scores[first + k] = np.sqrt(np.mean(segment.var(axis=1)))
        del block
    return scores


@dataclass
class BadSegments(RecordingStep):
    """Mark outlying segments as ``BAD_segment`` events, per sensor type (MEG-GPT recipe).

    For each type in ``types`` present in the recording, over its good channels, and for
    each mode in ``modes``:

    * ``"amplitude"``: a segment's score is the RMS over channels of their standard
      deviation within the segment;
    * ``"diff"``: the same on the first difference (catches steps and fast jumps that carry
      little power).

    Scores are tested with the two-sided generalized ESD test at ``significance`` (at most
    ``max_fraction`` of the segments), as osl-ephys does. Two-sided: a segment far *quieter*
    than the rest (a stretch of zeros, a saturated amplifier) is bad too. The marked
    segments of all types and modes are merged into contiguous spans and appended to
    ``state.events`` as ``description`` events with ``onset_s`` and ``duration_s``; the
    loader skips windows that overlap them. The signal is unchanged.

    Parameters
    ----------
    types : list of str
        Sensor types examined (absent ones are skipped; ``"eeg"`` and iEEG types work too).
    segment_samples : int
        Segment length in samples (MEG-GPT: 500 at 250 Hz, i.e. 2 s).
    modes : list of str
        ``"amplitude"`` and/or ``"diff"``.
    significance : float
        Significance level of the generalized ESD test.
    max_fraction : float
        Largest fraction of a type's segments the test may mark, per mode.
    min_segments : int
        Fewest segments for which the test runs.
    description : str
        Event description of the marked spans (should start with ``"BAD"``).
    """

    name: ClassVar[str] = "bad_segments"
    types: list[str] = field(default_factory=lambda: ["mag", "grad"])
    segment_samples: PositiveInt = 500
    modes: list[Literal["amplitude", "diff"]] = field(default_factory=lambda: ["amplitude", "diff"])
    significance: OpenUnitInterval = 0.1
    max_fraction: OpenUnitInterval = 0.1
    min_segments: PositiveInt = 10
    description: str = "BAD_segment"

    def __post_init__(self) -> None:
        validate_type("types", self.types, (list, tuple))
        for kind in self.types:
            check_option("types", kind, CHANNEL_TYPES)
        self.types = list(self.types)
        self.segment_samples = ensure_int("segment_samples", self.segment_samples)
        check_range("segment_samples", self.segment_samples, 4)
        validate_type("modes", self.modes, (list, tuple))
        if not self.modes:
            raise ValueError("Invalid value for the 'modes' parameter: give at least one of 'amplitude', 'diff'.")
        for mode in self.modes:
            check_option("modes", mode, _MODES)
        self.modes = list(self.modes)
        check_range("significance", self.significance, 0.0, 1.0, inclusive=False)
        check_range("max_fraction", self.max_fraction, 0.0, 1.0, inclusive=False)
        self.min_segments = ensure_int("min_segments", self.min_segments)
        check_range("min_segments", self.min_segments, 3)
        validate_type("description", self.description, str)

    def apply(self, state: SignalState) -> dict[str, Any]:
        edges = [e for start, stop in state.segments() for e in _segment_edges(start, stop, self.segment_samples)]
        effect: dict[str, Any] = {"n_segments": len(edges), "per_type": {}, "events": []}
        marked = np.zeros(len(edges), dtype=bool)
        for kind in self.types:
            rows = state.rows([kind], good_only=True)
            if not len(rows):
                continue
            info: dict[str, Any] = {"n_channels": int(len(rows))}
            effect["per_type"][kind] = info
            if len(edges) < self.min_segments:
                info["skipped"] = f"{len(edges)} segments, fewer than min_segments={self.min_segments}"
                continue
            max_outliers = int(np.ceil(self.max_fraction * len(edges)))
            for mode in self.modes:
                scores = _scores(state.data, rows, edges, mode)
                bad = generalized_esd(scores, self.significance, max_outliers)
                marked |= bad
                info[mode] = {"n_bad": int(bad.sum()), "median_score": float(np.median(scores))}

        spans: list[tuple[int, int]] = []
        for (a, b), bad in zip(edges, marked, strict=True):
            if not bad:
                continue
            if spans and spans[-1][1] == a:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        if spans:
            new = pd.DataFrame({
                "onset_s": [a / state.sfreq for a, _ in spans],
                "duration_s": [(b - a) / state.sfreq for a, b in spans],
                "description": np.array([self.description] * len(spans), dtype=object),
            })
            events = state.events
            if len(events):
                new = new.astype({c: events[c].dtype for c in new.columns if c in events.columns})
                combined = pd.concat([events, new], ignore_index=True)
                state.events = combined.sort_values("onset_s", kind="stable").reset_index(drop=True)
            else:
                state.events = new.reindex(columns=list(dict.fromkeys([*events.columns, *new.columns])))
        effect["events"] = [[round(a / state.sfreq, 6), round((b - a) / state.sfreq, 6)] for a, b in spans]
        effect["bad_seconds"] = float(sum(b - a for a, b in spans) / state.sfreq)
        effect["bad_fraction"] = float(sum(b - a for a, b in spans) / max(state.n_times, 1))
        return effect
