"""Per-dataset statistics of a store: recordings, subjects, hours, channels, rates, windows.

``brainfm store stats STORE --window-s 2`` prints :func:`format_stats_table` of
:func:`dataset_stats`. Window counts use the same arithmetic as the training window index
(:mod:`brainfm.data.windows`): fixed windows, the last partial window dropped, windows that
overlap a ``BAD`` span skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brainfm._check import check_range
from brainfm.data.windows import bad_spans, fixed_window_starts, overlaps_spans, seconds_to_samples
from brainfm.store.reader import Store, StoredRecording

__all__ = ["dataset_stats", "format_stats_table"]


def _bad_spans(recording: StoredRecording) -> np.ndarray:
    """The recording's ``BAD`` spans in samples (events are read only when it has any)."""
    if not recording.attrs.get("event_descriptions"):
        return np.zeros((0, 2), dtype=np.int64)
    events = recording.events
    return bad_spans(events["onset_s"], events["duration_s"], events["description"], recording.sfreq)


def _window_count(recording: StoredRecording, spans: np.ndarray, window_s: float, stride_s: float | None) -> int:
    """Fixed windows of the recording (last partial window dropped) that overlap none of ``spans``."""
    sfreq = recording.sfreq
    size = seconds_to_samples("window_s", window_s, sfreq)
    stride = seconds_to_samples("stride_s", window_s if stride_s is None else stride_s, sfreq)
    starts = fixed_window_starts(recording.n_times, size, stride, "drop")
    return int(np.count_nonzero(~overlaps_spans(starts, size, spans)))


def dataset_stats(store: Store, window_s: float, stride_s: float | None = None) -> list[dict[str, Any]]:
    """Summarise each dataset of a store.

    Parameters
    ----------
    store : Store
        An open store (:func:`brainfm.open_store`).
    window_s : float
        Window length in seconds for the window count.
    stride_s : float | None
        Seconds between window starts; None means ``window_s`` (no overlap).

    Returns
    -------
    rows : list of dict
        One dict per dataset, sorted by name, with ``dataset``, ``n_recordings``,
        ``n_subjects`` (a recording without a subject counts as one), ``subject_sources``
        (recordings by how their subject was derived: ``bids``, ``filename``, ``pattern``,
        ``given``, ``recording`` = none, ``unknown`` = not recorded), ``hours``, ``bad_hours`` (recording time inside ``BAD`` spans),
        ``n_channels_min``, ``n_channels_max``, ``channels_by_type`` (type -> [min, max]
        channels per recording), ``sfreqs`` (sorted distinct rates in Hz), ``window_s``,
        ``stride_s`` and ``n_windows``. JSON-ready.
    """
    check_range("window_s", window_s, 0, None, inclusive=False)
    if stride_s is not None:
        check_range("stride_s", stride_s, 0, None, inclusive=False)
    per_dataset: dict[str, dict[str, Any]] = {}
    for recording_id in store:
        recording = store[recording_id]
        entry = per_dataset.setdefault(
            recording.dataset,
            {"subjects": set(), "seconds": 0.0, "bad_seconds": 0.0, "n_channels": [], "type_counts": [],
             "sfreqs": set(), "n_windows": 0, "n_recordings": 0, "subject_sources": {}},
        )
        sources = entry["subject_sources"]
        sources[recording.subject_source] = sources.get(recording.subject_source, 0) + 1
        entry["n_recordings"] += 1
        entry["subjects"].add(recording.subject if recording.subject is not None else f"<{recording_id}>")
        entry["seconds"] += recording.duration_s
        entry["n_channels"].append(recording.n_channels)
        entry["sfreqs"].add(recording.sfreq)
        types, counts = np.unique(np.asarray(recording.attrs["channels"]["type"], dtype=str), return_counts=True)
        entry["type_counts"].append(dict(zip(types.tolist(), counts.tolist(), strict=True)))
        spans = _bad_spans(recording)  # read once, for the window count and the bad time
        entry["n_windows"] += _window_count(recording, spans, window_s, stride_s)
        inside = np.clip(spans, 0, recording.n_times)  # spans may start before the first sample or end after the last
        entry["bad_seconds"] += float((inside[:, 1] - inside[:, 0]).sum()) / recording.sfreq
    rows = []
    for dataset in sorted(per_dataset):
        entry = per_dataset[dataset]
        n = entry["n_recordings"]
        types = sorted({t for counts in entry["type_counts"] for t in counts})
        by_type = {t: [int(c.get(t, 0)) for c in entry["type_counts"]] for t in types}
        rows.append(
            {
                "dataset": dataset,
                "n_recordings": n,
                "n_subjects": len(entry["subjects"]),
                "subject_sources": dict(sorted(entry["subject_sources"].items())),
                "hours": entry["seconds"] / 3600.0,
                "bad_hours": entry["bad_seconds"] / 3600.0,
                "n_channels_min": int(min(entry["n_channels"])),
                "n_channels_max": int(max(entry["n_channels"])),
                "channels_by_type": {t: [min(c), max(c)] for t, c in by_type.items()},
                "sfreqs": sorted(float(s) for s in entry["sfreqs"]),
                "window_s": float(window_s),
                "stride_s": float(window_s if stride_s is None else stride_s),
                "n_windows": int(entry["n_windows"]),
            }
        )
    return rows


def _range(low: int, high: int) -> str:
    return f"{low}" if low == high else f"{low}-{high}"


def format_stats_table(rows: list[dict[str, Any]]) -> str:
    """Render :func:`dataset_stats` rows as an aligned text table (with a total line).

    Parameters
    ----------
    rows : list of dict
        As returned by :func:`dataset_stats`.

    Returns
    -------
    table : str
        Lines without a trailing newline.
    """
    header = ["dataset", "recordings", "subjects", "hours", "channels", "by type", "sfreq (Hz)", "windows"]
    lines = [header]
    for row in rows:
        by_type = " ".join(f"{t}:{_range(*c)}" for t, c in row["channels_by_type"].items())
        lines.append(
            [
                row["dataset"],
                str(row["n_recordings"]),
                str(row["n_subjects"]),
                f"{row['hours']:.2f}",
                _range(row["n_channels_min"], row["n_channels_max"]),
                by_type,
                ",".join(f"{s:g}" for s in row["sfreqs"]),
                str(row["n_windows"]),
            ]
        )
    if len(rows) > 1:
        lines.append(
            [
                "total",
                str(sum(r["n_recordings"] for r in rows)),
                str(sum(r["n_subjects"] for r in rows)),
                f"{sum(r['hours'] for r in rows):.2f}",
                _range(min(r["n_channels_min"] for r in rows), max(r["n_channels_max"] for r in rows)),
                "",
                ",".join(f"{s:g}" for s in sorted({s for r in rows for s in r["sfreqs"]})),
                str(sum(r["n_windows"] for r in rows)),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {1, 2, 3, 7}
    text = []
    for line in lines:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))]
        text.append("  ".join(cells).rstrip())
    if rows:
        text.append(f"windows: {rows[0]['window_s']:g} s, stride {rows[0]['stride_s']:g} s, "
                    "last partial window dropped, BAD spans skipped")
    for row in rows:
        unknown = sum(n for source, n in row.get("subject_sources", {}).items() if source in ("recording", "unknown"))
        if unknown:
            text.append(f"subjects of {row['dataset']}: {unknown} recordings without a known subject count as one "
                        "subject each (give --pattern or BIDS names; the loader will not split them by subject)")
    return "\n".join(text)
