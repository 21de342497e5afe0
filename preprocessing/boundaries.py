"""Acquisition boundaries: where a recording is discontinuous, and how that is stored.

A recording can join stretches of data that were not acquired back to back: MNE writes
``BAD boundary`` and ``EDGE boundary`` annotations where ``mne.concatenate_raws`` joined two
raws and ``BAD_ACQ_SKIP`` spans where the acquisition skipped; EEGLAB stores ``boundary``
events where data were removed or files joined; BrainVision writes a ``New Segment`` marker
(read by MNE as ``New Segment/``) where a recording was paused and resumed. Filters,
resampling and bad-segment scoring must treat each stretch on its own, as MNE's
``skip_by_annotation`` does for ``Raw.filter``.

Kinds recognised (case-insensitive), following MNE's prefix rule for the first two:

* descriptions starting with ``edge`` or ``bad_acq_skip``: a cut at the onset and, for a span
  with a duration, another at its end (the span itself is then a stretch of its own);
* ``bad boundary`` and ``boundary``: a cut at the onset (an EEGLAB boundary's duration is the
  length of data removed *before* it, not a span of the signal);
* descriptions starting with ``new segment``: a cut at the onset (MNE already drops the
  marker at the first sample).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["BOUNDARY_EVENT", "boundary_cuts", "boundary_log", "mark_boundaries"]

#: Description of the zero-duration event stored at every cut (MNE's spelling), so that
#: loaders, which skip windows touching ``BAD`` events, never cut a window across a cut.
BOUNDARY_EVENT = "BAD boundary"

_SPAN_PREFIXES = ("edge", "bad_acq_skip")
_POINT_NAMES = ("bad boundary", "boundary")
_POINT_PREFIXES = ("new segment",)


def _kind(description: str) -> str | None:
    text = description.strip().lower()
    if text.startswith(_SPAN_PREFIXES):
        return "span"
    if text in _POINT_NAMES or text.startswith(_POINT_PREFIXES):
        return "point"
    return None


def boundary_cuts(events: pd.DataFrame, duration_s: float) -> tuple[list[float], dict[str, int]]:
    """Times at which the acquisition is discontinuous.

    Parameters
    ----------
    events : pandas.DataFrame
        ``onset_s``, ``duration_s``, ``description`` (seconds from the first sample).
    duration_s : float
        Length of the recording in seconds; cuts at or outside its ends are left out.

    Returns
    -------
    cuts_s : list of float
        Sorted, distinct cut times strictly inside the recording.
    found : dict of str to int
        How many events of each description gave the cuts (for the provenance).
    """
    cuts: set[float] = set()
    found: Counter[str] = Counter()
    for onset, duration, description in zip(
        events["onset_s"].to_numpy(dtype=float), events["duration_s"].to_numpy(dtype=float),
        events["description"].astype(str), strict=True,
    ):
        kind = _kind(description)
        if kind is None:
            continue
        times = [onset]
        if kind == "span" and np.isfinite(duration) and duration > 0:
            times.append(onset + duration)
        inside = [t for t in times if 0 < t < duration_s]
        if inside:
            found[description] += 1
            cuts.update(inside)
    return sorted(cuts), dict(found)


def mark_boundaries(events: pd.DataFrame, cuts_s: list[float], sfreq: float) -> tuple[pd.DataFrame, int]:
    """Add a zero-duration :data:`BOUNDARY_EVENT` at each cut not already marked ``BAD`` there.

    Parameters
    ----------
    events : pandas.DataFrame
        The event table.
    cuts_s : list of float
        Cut times in seconds (:func:`boundary_cuts`).
    sfreq : float
        Sampling rate; an existing ``BAD`` event within half a sample of a cut marks it.

    Returns
    -------
    events : pandas.DataFrame
        The table with the added events, sorted by onset.
    n_added : int
        Events added.
    """
    if not cuts_s:
        return events, 0
    descriptions = events["description"].astype(str).str.upper()
    bad_onsets = events.loc[descriptions.str.startswith("BAD"), "onset_s"].to_numpy(dtype=float)
    bad_ends = bad_onsets + events.loc[descriptions.str.startswith("BAD"), "duration_s"].to_numpy(dtype=float)
    tolerance = 0.5 / sfreq
    missing = [
        t for t in cuts_s
        if not np.any((np.abs(bad_onsets - t) <= tolerance) | (np.abs(bad_ends - t) <= tolerance))
    ]
    if not missing:
        return events, 0
    added = pd.DataFrame({
        "onset_s": np.asarray(missing, dtype=float),
        "duration_s": np.zeros(len(missing)),
        "description": np.array([BOUNDARY_EVENT] * len(missing), dtype=object),
    })
    if len(events):
        added = added.astype({c: events[c].dtype for c in added.columns if c in events.columns})
        combined = pd.concat([events, added], ignore_index=True)
    else:
        combined = added.reindex(columns=list(dict.fromkeys([*events.columns, *added.columns])))
    return combined.sort_values("onset_s", kind="stable").reset_index(drop=True), len(missing)


def boundary_log(cuts_s: list[float], found: dict[str, int], n_added: int, segments: list[tuple[int, int]], sfreq: float) -> dict[str, Any]:
    """The provenance entry that says where the signal was cut and why.

    Parameters
    ----------
    cuts_s : list of float
        Cut times in seconds.
    found : dict of str to int
        Event descriptions that gave the cuts, with counts.
    n_added : int
        :data:`BOUNDARY_EVENT` events added to the event table.
    segments : list of (int, int)
        The stretches ``[start, stop)`` in samples at ``sfreq``.
    sfreq : float
        Sampling rate of ``segments``.

    Returns
    -------
    entry : dict
        ``{"step": "boundaries", "params": {...}, "effect": {...}}``.
    """
    return {
        "step": "boundaries",
        "params": {"kinds": [*_SPAN_PREFIXES, *_POINT_NAMES, *_POINT_PREFIXES]},
        "effect": {
            "cuts_s": [round(t, 6) for t in cuts_s],
            "from_events": found,
            "events_added": n_added,
            "segments_s": [[round(a / sfreq, 6), round(b / sfreq, 6)] for a, b in segments],
            "note": "filters, resampling and bad-segment scoring run on each segment separately",
        },
    }
