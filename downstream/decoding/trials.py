"""A decoding task's trials, read through brainfm's one data path (window index -> WindowDataset -> Batch).

:func:`load_trials` builds the window index of the task (event-locked or fixed windows,
labels from events or recordings, :mod:`brainfm.loading.windows`), reads every window once
as one :class:`~brainfm.loading.batch.Batch` and keeps, per trial, its label and the
identity of its recording (subject, session, run), which the protocols split on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from brainfm._logging import logger
from brainfm.downstream.decoding.task import DecodingTask
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.loading.dataset import WindowDataset
from brainfm.loading.labels import RecordingLabels
from brainfm.loading.windows import WindowIndex, build_window_index
from brainfm.store.reader import open_store

__all__ = ["Trials", "load_trials", "overlap_pruned"]


@dataclass
class Trials:
    """The labelled windows of a task.

    Attributes
    ----------
    batch : Batch
        Every trial, ``signal`` (n_trials, C, T), normalised as the task says.
    y : numpy.ndarray of int64, shape (n_trials,)
        Labels (positions in ``classes``).
    subject, session, run, recording : numpy.ndarray of str, shape (n_trials,)
        Subject key (``"<dataset>/<subject>"``), session key (subject + session), run key
        (subject + session + run, i.e. the recording) and recording id of each trial.
    classes : list of str
        Class names.
    sfreq : float
        Sampling rate in Hz.
    ch_names : list of str
        Channel names (shared by all recordings, in ``signal`` order).
    sources : dict of str to str
        Recording id -> SHA-256 of its source file (leakage checks).
    index : WindowIndex
        The window index behind ``batch``.
    """

    batch: Batch
    y: np.ndarray
    subject: np.ndarray
    session: np.ndarray
    run: np.ndarray
    recording: np.ndarray
    classes: list[str]
    sfreq: float
    ch_names: list[str]
    sources: dict[str, str]
    index: WindowIndex

    def __len__(self) -> int:
        return int(len(self.y))

    def __repr__(self) -> str:
        counts = np.bincount(self.y, minlength=len(self.classes))
        shown = ", ".join(f"{c}: {n}" for c, n in zip(self.classes, counts, strict=True))
        return (f"<Trials | {len(self)} trials ({shown}) of {len(self.ch_names)} channels x "
                f"{self.batch.signal.shape[-1]} samples, {len(np.unique(self.subject))} subjects>")

    @property
    def X(self) -> np.ndarray:  # noqa: N802 (scikit-learn's name for the data matrix)
        """Signals as a float64 array (n_trials, n_channels, n_times) for scikit-learn."""
        return self.batch.signal.numpy().astype(np.float64)

    def take(self, rows: np.ndarray) -> Batch:
        """The batch of some trials (rows of :attr:`y`)."""
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return Batch(**{name: (None if value is None else value[rows]) for name, value in vars(self.batch).items()})


def _selected_recordings(store_path: str, task: DecodingTask) -> list[str]:
    store = open_store(store_path)
    ids = []
    for rid in store:
        identity = store[rid].identity
        if all(str(identity.get(key)) in [str(v) for v in values] for key, values in task.select.items()):
            ids.append(rid)
    if not ids:
        raise ConfigError(
            f"Task {task.name!r}: no recording of {store_path} matches select={task.select}. "
            "Check the store (brainfm store info STORE) and the identity fields it was preprocessed with."
        )
    return ids


def overlap_pruned(index: WindowIndex, labels: list[int]) -> np.ndarray:
    """Which windows survive pruning of overlapping windows of some classes.

    Within each recording, in time order, a window whose label is in ``labels`` and that overlaps
    an earlier *kept* window whose label is in ``labels`` is dropped, so the kept windows of these
    classes are disjoint (BaRISTA's positive windows, spec §4.6). Windows of other classes are kept.

    Parameters
    ----------
    index : WindowIndex
        The labelled windows.
    labels : list of int
        The classes to make disjoint.

    Returns
    -------
    keep : numpy.ndarray of bool, shape (n_windows,)
        True for the windows kept.
    """
    keep = np.ones(len(index), dtype=bool)
    pruned = np.isin(index.label, labels)
    size = index.window_size_samples
    for recording in np.unique(index.recording[pruned]):
        rows = np.flatnonzero(pruned & (index.recording == recording))
        rows = rows[np.argsort(index.start[rows], kind="stable")]
        end = None  # end (exclusive) of the last kept window
        for row in rows:
            if end is not None and index.start[row] < end:
                keep[row] = False
            else:
                end = index.start[row] + size
    return keep


def load_trials(task: DecodingTask) -> Trials:
    """Read the trials of a task from its store.

    Parameters
    ----------
    task : DecodingTask
        The task (its ``store`` set).

    Returns
    -------
    trials : Trials
        Every labelled window, in recording then time order.
    """
    assert task.store is not None
    ids = _selected_recordings(task.store, task)
    label_of = task.label_of
    recording_labels = None
    if task.labels.recording is not None:
        cfg = task.labels.recording
        recording_labels = RecordingLabels(field=cfg.field, mapping=label_of, pattern=cfg.pattern,
                                           on_missing=cfg.on_missing)
    index = build_window_index(
        task.store,
        task.window.window_s,
        task.window.stride_s,
        tmin=task.window.tmin,
        tmax=task.window.tmax,
        label_map=label_of if task.labels.events is not None else None,
        recording_labels=recording_labels,
        channel_types=task.channel_types,
        recording_ids=ids,
    )
    index = index.subset(index.label >= 0)
    if not len(index):
        raise ConfigError(f"Task {task.name!r}: no labelled window in {task.store} (labels {task.labels}).")
    if task.window.prune_overlap:
        keep = overlap_pruned(index, [task.classes.index(name) for name in task.window.prune_overlap])
        logger.info("window.prune_overlap %s: %d of %d windows overlap an earlier kept one and are dropped",
                    task.window.prune_overlap, int((~keep).sum()), len(keep))
        index = index.subset(keep)
    present = np.unique(index.label)
    if len(present) < 2:
        raise ConfigError(
            f"Task {task.name!r}: the store holds windows of one class only ({task.classes[int(present[0])]}); "
            "a decoder needs at least two. Check labels and select."
        )
    used = np.unique(index.recording)
    names = [index.layouts[i].names for i in used]
    common = [n for n in names[0] if all(n in other for other in names[1:])]
    if not common:
        raise ConfigError(f"Task {task.name!r}: the recordings share no channel name; select recordings of one montage.")
    batch = WindowDataset(index, task.store, task.normalization, with_labels=True).__getitems__(np.arange(len(index)))
    if any(n != names[0] for n in names[1:]):
        # put every recording's channels in the common order (baselines need one montage)
        logger.info("recordings differ in channels; keeping the %d they share", len(common))
        signal = torch.zeros(len(index), len(common), batch.signal.shape[-1])
        gathered = {}
        for i in used.tolist():
            layout_names = index.layouts[i].names
            gathered[i] = torch.as_tensor([layout_names.index(n) for n in common])
        rows_of = index.recording
        for i, columns in gathered.items():
            rows = torch.as_tensor(np.flatnonzero(rows_of == i))
            signal[rows] = batch.signal[rows][:, columns]
        fields = {name: value for name, value in vars(batch).items()}
        for name in ("channel_mask", "sensor_pos", "sensor_type", "pos_mask", "frame_ids", "channel_ids", "region_ids"):
            value = fields[name]
            out = value.new_zeros((len(index), len(common), *value.shape[2:]))
            for i, columns in gathered.items():
                rows = torch.as_tensor(np.flatnonzero(rows_of == i))
                out[rows] = value[rows][:, columns]
            fields[name] = out
        fields["signal"] = signal
        batch = Batch(**fields)
    if not np.array_equal(batch.start.numpy(), index.start):  # the dataset keeps index order for sorted indices
        raise RuntimeError("internal: the batch order differs from the window index")
    store = open_store(task.store)
    layouts = index.layouts
    identity = {layout.index: store[layout.recording_id].identity for layout in layouts}
    def field_of(key: str) -> np.ndarray:
        values = [str(identity[layout.index].get(key) or "") for layout in layouts]
        return np.array(values, dtype=object)[index.recording]
    subject = index.recording_field("subject").astype(str)
    session = np.char.add(np.char.add(subject, "/ses-"), field_of("session").astype(str))
    recording = index.recording_field("recording_id").astype(str)
    trials = Trials(
        batch=batch,
        y=index.label.astype(np.int64),
        subject=subject,
        session=session,
        run=recording,
        recording=recording,
        classes=list(task.classes),
        sfreq=float(index.sfreq),
        ch_names=list(common),
        sources={layout.recording_id: str(store[layout.recording_id].source.get("sha256", "")) for layout in layouts},
        index=index,
    )
    logger.info("%r", trials)
    return trials
