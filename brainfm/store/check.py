"""``brainfm store check``: verify every recording against the format."""

from __future__ import annotations

from typing import Any

import numpy as np

from brainfm.data.channels import ADDED_COLUMNS, CHANNEL_COLUMNS, CHANNEL_TYPES
from brainfm.store.format import (
    EVENT_FIELDS,
    REQUIRED_RECORDING_ATTRS,
    STAT_NAMES,
)
from brainfm.store.reader import Store

__all__ = ["check_recording", "check_store"]


def _member(group: Any, name: str) -> Any:
    """The array ``name`` of ``group``, or None when absent (one metadata read, not two)."""
    try:
        return group[name]
    except KeyError:
        return None


def check_recording(group: Any, *, read_values: bool = True) -> list[str]:
    """Problems of one recording group (empty when it is sound).

    Parameters
    ----------
    group : zarr.Group
        The recording group.
    read_values : bool
        Also read the whole signal to check that every value is finite.

    Returns
    -------
    problems : list of str
        Human-readable problems.
    """
    attrs = dict(group.attrs)
    problems: list[str] = []
    if not attrs.get("complete"):
        return ["incomplete: its write did not finish (interrupted run); run preprocess again to complete it"]
    missing = [k for k in REQUIRED_RECORDING_ATTRS if k not in attrs]
    if missing:
        return [f"missing attributes {missing}"]
    n_channels, n_times = attrs["n_channels"], attrs["n_times"]
    if not (isinstance(attrs["sfreq"], (int, float)) and attrs["sfreq"] > 0):
        problems.append(f"sfreq must be a positive number, got {attrs['sfreq']!r}")
    for key in ("dataset",):
        if not attrs["identity"].get(key):
            problems.append(f"identity lacks {key!r}")
    for key in ("path", "sha256"):
        if not attrs["source"].get(key):
            problems.append(f"source lacks {key!r}")
    signal = _member(group, "signal")
    if signal is None:
        return [*problems, "no signal array"]
    if tuple(signal.shape) != (n_channels, n_times):
        problems.append(f"signal shape {tuple(signal.shape)} != attributes (n_channels, n_times) = {(n_channels, n_times)}")
    if str(signal.dtype) != "float32":
        problems.append(f"signal dtype is {signal.dtype}, expected float32")
    if list(signal.metadata.dimension_names or []) != ["channel", "time"]:
        problems.append(f"signal dimension_names are {signal.metadata.dimension_names}, expected ['channel', 'time']")
    table = attrs["channels"]
    for column in CHANNEL_COLUMNS:
        if column not in table:
            if column in ADDED_COLUMNS:
                continue  # written before the column existed: readers fill its default
            problems.append(f"channel table lacks column {column!r}")
        elif len(table[column]) != n_channels:
            problems.append(f"channel column {column!r} has {len(table[column])} entries for {n_channels} channels")
    unknown = sorted(set(table.get("type", [])) - set(CHANNEL_TYPES))
    if unknown:
        problems.append(f"unknown channel types {unknown}")
    stats = _member(group, "channel_stats")
    if stats is None or tuple(stats.shape) != (n_channels, len(STAT_NAMES)):
        problems.append("channel_stats missing or of the wrong shape")
    events = _member(group, "events")
    if events is None or events.ndim != 2 or events.shape[1] != len(EVENT_FIELDS):
        problems.append(f"events array missing or not of shape (n_events, {len(EVENT_FIELDS)})")
    elif events.shape[0]:
        codes = events[:, 2]
        if codes.min() < 0 or codes.max() >= len(attrs["event_descriptions"]) or not np.all(codes == np.round(codes)):
            problems.append("event codes outside the event_descriptions list")
    if read_values and not problems:
        step = max(1, int(signal.chunks[1]) * 8)
        for start in range(0, n_times, step):
            block = signal[:, start : start + step]
            if not np.isfinite(block).all():
                problems.append(
                    f"non-finite values in the signal from sample {start} (stored samples are always finite: "
                    f"a chunk file is missing or damaged); delete the recording's group and run preprocess again"
                )
                break
    return problems


def check_store(store: Store, *, read_values: bool = True) -> dict[str, list[str]]:
    """Check every recording of a store, complete or not.

    Parameters
    ----------
    store : Store
        An open store.
    read_values : bool
        Read every signal to check that all values are finite.

    Returns
    -------
    problems : dict of str to list of str
        Recording id -> problems, for recordings with problems only.
    """
    found = {}
    # the groups the store opened: their metadata is not read again
    for key, group in sorted({**store._groups, **store._incomplete}.items()):
        problems = check_recording(group, read_values=read_values)
        if problems:
            found[key] = problems
    return found
