"""Node signals from a store: channels of one montage or iEEG regions, on a shared or concatenated timeline.

Nodes correspond across subjects by name: channel names (one montage; source parcels stored
as channels named by parcel work the same way) or region labels from the channel table's
``region`` column (iEEG: a region's signal is the mean of that subject's good contacts in it).
A node a subject lacks (absent or marked bad) is masked for that subject.

Time modes:

``shared``
    Every subject's signals are averaged over epochs ``[tmin, tmax]`` around the chosen events,
    so all subjects share one timeline (a stimulus protocol, event-locked averages).
``concatenated``
    For unaligned data (rest): each subject's recordings are joined in time and the subjects
    follow one another on one time axis; the subject mode has size 1 and the factorisation is a
    non-negative matrix factorisation of pair x (subject, time).
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from brainfm._logging import logger
from brainfm.data.channels import DATA_CHANNEL_TYPES, IEEG_TYPES
from brainfm.errors import ConfigError

__all__ = ["NodeSignals", "node_signals"]


@dataclass
class NodeSignals:
    """Node signals of every subject, ready for the affinity tensor.

    Attributes
    ----------
    signals : list of numpy.ndarray
        Per subject ``(N, T_w)`` float32; rows of masked nodes are NaN. In ``shared`` mode every
        ``T_w`` is the epoch length.
    node_mask : numpy.ndarray
        ``(W, N)`` bool, True where the subject has the node.
    node_names : list of str
        Channel names or region labels.
    positions : numpy.ndarray
        ``(N, 3)`` metres, mean over subjects where known, NaN otherwise.
    frame : str
        Coordinate frame of ``positions`` (from the channel table; empty when unknown or mixed).
    subjects : list of str
        Subject labels (or recording ids with ``subject_by="recording"``).
    recordings : list of list of str
        The recording ids behind each subject.
    sfreq : float
        Common sampling rate in Hz.
    time_mode : str
        ``"shared"`` or ``"concatenated"``.
    tmin : float
        Time of the first sample in seconds (``shared``: relative to the events; else 0).
    markers : list of tuple of (float, str)
        Events on the (shared or concatenated) time axis, in seconds, for figures.
    """

    signals: list[np.ndarray]
    node_mask: np.ndarray
    node_names: list[str]
    positions: np.ndarray
    frame: str
    subjects: list[str]
    recordings: list[list[str]]
    sfreq: float
    time_mode: str
    tmin: float = 0.0
    markers: list[tuple[float, str]] = field(default_factory=list)

    @property
    def segments(self) -> list[tuple[int, int]]:
        """``(start, stop)`` samples of each subject on the concatenated time axis."""
        edges = np.cumsum([0] + [s.shape[1] for s in self.signals])
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _resample(data: np.ndarray, sfreq: float, target: float | None) -> np.ndarray:
    if target is None or abs(sfreq - target) < 1e-9:
        return data
    from scipy.signal import resample_poly

    ratio = Fraction(target / sfreq).limit_denominator(1000)
    return resample_poly(data, ratio.numerator, ratio.denominator, axis=1).astype(np.float32)


def _recording_nodes(
    recording: Any, nodes: str, channel_types: Sequence[str]
) -> tuple[list[str], np.ndarray, list[list[int]], set[str]]:
    """Node names, node positions, the channel rows behind each node and their position frames."""
    table = recording.channels
    good = (table["status"] == "good") & table["type"].isin(list(channel_types))
    if nodes == "regions":
        good &= table["region"].astype(str).str.len() > 0
        names = sorted(set(table.loc[good, "region"]))
        rows = [np.flatnonzero((table["region"] == name) & good).tolist() for name in names]
    else:
        names = table.loc[good, "name"].tolist()
        rows = [[int(i)] for i in np.flatnonzero(good)]
    xyz = table[["x", "y", "z"]].to_numpy(np.float64)
    positions = np.array([np.nanmean(xyz[r], axis=0) if np.isfinite(xyz[r]).any() else np.full(3, np.nan)
                          for r in rows]).reshape(-1, 3)
    frames = {str(f) for f in table.loc[good, "frame"] if f}
    return names, positions, rows, frames


def _node_block(recording: Any, rows: list[list[int]], start: int | None = None, stop: int | None = None) -> np.ndarray:
    """(n_nodes, T) float32: each node the mean of its channel rows."""
    needed = sorted({i for r in rows for i in r})
    data = np.asarray(recording.signal[needed, start:stop], dtype=np.float32) if needed else np.zeros((0, 0), np.float32)
    where = {channel: k for k, channel in enumerate(needed)}
    return np.stack([data[[where[i] for i in r]].mean(axis=0) for r in rows]) if rows else data


def node_signals(
    store: Any,
    *,
    nodes: Literal["channels", "regions"] = "channels",
    channel_types: Sequence[str] | None = None,
    recordings: str | None = None,
    subject_by: Literal["subject", "recording"] = "subject",
    time_mode: Literal["shared", "concatenated"] = "concatenated",
    events: Sequence[str] | None = None,
    tmin: float = 0.0,
    tmax: float = 1.0,
    sfreq: float | None = None,
    max_seconds: float | None = None,
    standardize: bool = True,
) -> NodeSignals:
    """Gather node signals per subject from a store.

    Parameters
    ----------
    store : brainfm.store.Store
        An open store.
    nodes : str
        ``"channels"`` (one montage, matched by name) or ``"regions"`` (iEEG atlas regions from
        the channel table's ``region`` column, mean of each subject's contacts).
    channel_types : sequence of str | None
        Channel types that become nodes; default: the brain-signal types (iEEG types for
        ``regions``).
    recordings : str | None
        Glob on recording ids (``"eegmat_*"``); default: every recording.
    subject_by : str
        Group recordings into subjects by ``"subject"`` identity or treat each ``"recording"``
        as its own subject.
    time_mode : str
        ``"shared"`` (event-locked averages) or ``"concatenated"`` (see the module docstring).
    events : sequence of str | None
        ``shared`` mode: event descriptions (globs) to align to.
    tmin, tmax : float
        ``shared`` mode: epoch limits around each event, in seconds.
    sfreq : float | None
        Resample every recording to this rate (Hz); default: the recordings must share one.
    max_seconds : float | None
        ``concatenated`` mode: keep at most this many seconds per subject.
    standardize : bool
        z-score each node within each subject (so no node dominates by amplitude).

    Returns
    -------
    signals : NodeSignals
        Per-subject node signals, the node mask, names, positions and event markers.
    """
    if nodes not in ("channels", "regions"):
        raise ConfigError(f"nodes must be 'channels' or 'regions', got {nodes!r}.")
    if time_mode not in ("shared", "concatenated"):
        raise ConfigError(f"time_mode must be 'shared' or 'concatenated', got {time_mode!r}.")
    if channel_types is None:
        channel_types = IEEG_TYPES if nodes == "regions" else DATA_CHANNEL_TYPES
    ids = [rid for rid in store if recordings is None or fnmatch.fnmatch(rid, recordings)]
    if not ids:
        raise ConfigError(f"No recording of {store.path} matches {recordings!r}.")
    if time_mode == "shared" and not events:
        raise ConfigError("time_mode 'shared' needs the events to align to (e.g. events: ['T1', 'T2']).")
    rates = {rid: store[rid].sfreq for rid in ids}
    if sfreq is None and len(set(rates.values())) > 1:
        listing = ", ".join(f"{rid} ({rate:g} Hz)" for rid, rate in rates.items())
        raise ConfigError(f"The recordings have different sampling rates: {listing}. Set sfreq to resample them.")
    target = sfreq if sfreq is not None else next(iter(rates.values()))

    groups: dict[str, list[str]] = {}
    for rid in ids:
        key = rid if subject_by == "recording" else f"{store[rid].dataset}/{store[rid].subject or rid}"
        groups.setdefault(key, []).append(rid)

    per_recording = {rid: _recording_nodes(store[rid], nodes, channel_types) for rid in ids}
    without = [rid for rid, (names, *_) in per_recording.items() if not names]
    if without:
        what = "contacts with a region label (electrodes.tsv atlas labels)" if nodes == "regions" else \
            f"good channels of types {list(channel_types)}"
        raise ConfigError(f"No {what} in {', '.join(without)}; choose other recordings or node kind.")
    node_names: list[str] = []
    for names, *_ in per_recording.values():
        node_names.extend(n for n in names if n not in node_names)
    index = {name: i for i, name in enumerate(node_names)}
    n_nodes = len(node_names)

    positions = np.full((len(ids), n_nodes, 3), np.nan)
    for k, (names, pos, *_) in enumerate(per_recording.values()):
        positions[k, [index[n] for n in names]] = pos
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        node_positions = np.nanmean(positions, axis=0)  # NaN where no subject has a position
    frames = set().union(*(found[3] for found in per_recording.values()))  # of the node channels only
    frame = frames.pop() if len(frames) == 1 else ""

    signals, masks, markers, subjects, members = [], [], [], [], []
    offset_s = 0.0
    for key, rids in groups.items():
        present = np.ones(n_nodes, dtype=bool)
        for rid in rids:
            have = np.zeros(n_nodes, dtype=bool)
            have[[index[n] for n in per_recording[rid][0]]] = True
            present &= have
        if not present.any():
            logger.warning("Subject %s has no node in all of its recordings; left out.", key)
            continue
        blocks: list[np.ndarray] = []
        for rid in rids:
            recording = store[rid]
            names, _, rows, _ = per_recording[rid]
            keep = [j for j, n in enumerate(names) if present[index[n]]]
            order = [index[names[j]] for j in keep]
            if time_mode == "shared":
                table = recording.events
                hits = np.zeros(len(table), dtype=bool)
                for pattern in events or ():
                    hits |= np.array([fnmatch.fnmatch(str(d), pattern) for d in table["description"]], dtype=bool)
                n_epoch = round((tmax - tmin) * recording.sfreq) + 1
                for onset in table.loc[hits, "onset_s"]:
                    start = round((onset + tmin) * recording.sfreq)
                    if start < 0 or start + n_epoch > recording.n_times:
                        continue
                    epoch = np.full((n_nodes, n_epoch), np.nan, dtype=np.float32)
                    epoch[order] = _node_block(recording, [rows[j] for j in keep], start, start + n_epoch)
                    blocks.append(_resample(epoch, recording.sfreq, target))
            else:
                data = np.full((n_nodes, recording.n_times), np.nan, dtype=np.float32)
                data[order] = _node_block(recording, [rows[j] for j in keep])
                data = _resample(data, recording.sfreq, target)
                for onset, description in zip(recording.events["onset_s"], recording.events["description"], strict=True):
                    markers.append((offset_s + sum(b.shape[1] for b in blocks) / target + float(onset), str(description)))
                blocks.append(data)
        if not blocks:
            logger.warning("Subject %s has no complete epoch around %s; left out.", key, list(events or ()))
            continue
        if time_mode == "shared":
            signal = np.mean(np.stack(blocks), axis=0).astype(np.float32)  # (N, T) event-locked average
        else:
            signal = np.concatenate(blocks, axis=1)
            if max_seconds is not None:
                signal = signal[:, : int(round(max_seconds * target))]
            markers = [(t, d) for t, d in markers if t < offset_s + signal.shape[1] / target]
            markers.append((offset_s, f"start {key}"))
            offset_s += signal.shape[1] / target
        signal[~present] = np.nan
        if standardize:
            rows_present = signal[present]
            mean = rows_present.mean(axis=1, keepdims=True)
            std = rows_present.std(axis=1, keepdims=True)
            signal[present] = (rows_present - mean) / np.where(std > 0, std, 1)
        signals.append(signal)
        masks.append(present)
        subjects.append(key)
        members.append(rids)
    if not signals:
        raise ConfigError(f"No subject of {store.path} gave node signals (see the warnings above).")
    if time_mode == "shared":
        markers = [(0.0, "|".join(events or ()))]
    return NodeSignals(
        signals=signals, node_mask=np.stack(masks), node_names=node_names, positions=node_positions,
        frame=frame, subjects=subjects, recordings=members, sfreq=float(target), time_mode=time_mode,
        tmin=float(tmin) if time_mode == "shared" else 0.0, markers=sorted(markers),
    )

