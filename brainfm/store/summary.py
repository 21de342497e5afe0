"""Summaries of a store: ``brainfm store info`` (one row per recording) as plain data."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from brainfm.store.reader import Store

__all__ = ["recording_summary", "store_info"]


def recording_summary(store: Store, recording_id: str) -> dict[str, Any]:
    """One recording's row of ``brainfm store info --json``.

    Parameters
    ----------
    store : Store
        An open store.
    recording_id : str
        The recording.

    Returns
    -------
    row : dict
        ``id, dataset, subject, subject_source, session, task, run, sfreq, n_channels, n_times,
        channel_types, n_positions, pos_sources, n_bad_channels, n_events, event_counts,
        source {path, sha256}``.
    """
    recording = store[recording_id]
    attrs = recording.attrs
    table = attrs["channels"]
    xyz = np.array([table["x"], table["y"], table["z"]], dtype=float).T
    descriptions = recording.events["description"]
    identity = attrs["identity"]
    return {
        "id": recording_id,
        "dataset": identity.get("dataset"),
        "subject": identity.get("subject"),
        "subject_source": recording.subject_source,
        "session": identity.get("session"),
        "task": identity.get("task"),
        "run": identity.get("run"),
        "sfreq": attrs["sfreq"],
        "n_channels": attrs["n_channels"],
        "n_times": attrs["n_times"],
        "channel_types": dict(Counter(table["type"])),
        "n_positions": int(np.isfinite(xyz).all(axis=1).sum()) if len(xyz) else 0,
        "pos_sources": dict(Counter(table["pos_source"])),
        "n_bad_channels": int(sum(status == "bad" for status in table["status"])),
        "n_events": int(len(descriptions)),
        "event_counts": dict(Counter(descriptions)),
        "source": {"path": attrs["source"].get("path"), "sha256": attrs["source"].get("sha256")},
    }


def store_info(store: Store) -> dict[str, Any]:
    """The whole ``brainfm store info --json`` object.

    Parameters
    ----------
    store : Store
        An open store.

    Returns
    -------
    info : dict
        ``{"format_version", "recordings": [...], "subject_sources": {...}, "failed": [...],
        "incomplete": [...]}``; ``subject_sources`` counts the recordings by how their
        subject was derived (:data:`~brainfm.data.recording.SUBJECT_SOURCES`).
    """
    recordings = [recording_summary(store, rid) for rid in store]
    return {
        "format_version": store.format_version,
        "recordings": recordings,
        "subject_sources": dict(sorted(Counter(row["subject_source"] for row in recordings).items())),
        "failed": [{"path": f.get("path"), "error": f.get("error")} for f in store.failed],
        "incomplete": store.incomplete,
    }
