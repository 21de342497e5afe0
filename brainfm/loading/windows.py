"""The window index: every window a store yields, as flat numpy arrays.

Two kinds of windows:

- **fixed**: ``window_s`` long, every ``stride_s`` from the first sample of each recording;
  the samples after the last full window are dropped, or covered by one last window shifted
  back to end at the last sample (``last_window="shift"``);
- **event-locked**: ``[onset + tmin, onset + tmax)`` around every event whose description is
  in the label map (``tmax`` excluded, so ``tmin=0, tmax=2`` is as long as a 2-s fixed
  window); windows reaching outside the recording are dropped.

Windows that overlap a ``BAD`` span are skipped in both. Bad channels are not removed: the
batch masks them (``channel_mask``). Labels come from the event (event-locked windows) or
from the recording (:class:`~brainfm.loading.labels.RecordingLabels`); otherwise they are -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from brainfm._check import check_option, check_range
from brainfm._logging import logger
from brainfm.data.channels import CHANNEL_TYPES, DATA_CHANNEL_TYPES
from brainfm.data.windows import fixed_window_starts, overlaps_spans, seconds_to_samples
from brainfm.errors import ConfigError
from brainfm.loading.labels import NO_LABEL, RecordingLabels, event_label_map
from brainfm.loading.layout import RecordingLayout, read_layout
from brainfm.loading.vocabulary import Vocabulary, channel_key, region_key
from brainfm.store.reader import Store, StoredRecording, open_store

__all__ = ["WindowIndex", "build_window_index"]


@dataclass
class WindowIndex:
    """All windows of a set of recordings.

    Attributes
    ----------
    layouts : list of RecordingLayout
        The recordings, indexed by ``recording``.
    recording : numpy.ndarray of int64, shape (n_windows,)
        Layout index of each window.
    start : numpy.ndarray of int64, shape (n_windows,)
        First sample of each window.
    label : numpy.ndarray of int64, shape (n_windows,)
        Label of each window (-1 when none).
    window_size_samples : int
        Samples per window (all recordings share one sampling rate).
    sfreq : float
        The sampling rate in Hz.
    channel_vocabulary, region_vocabulary : Vocabulary
        Vocabularies behind ``channel_ids`` and ``region_ids``.
    subjects : list of str
        Subject keys (``"<dataset>/<subject>"``) in ``subject_ids`` order.
    label_map : dict of str to int
        Event description or recording value -> label; empty without labels.
    """

    layouts: list[RecordingLayout]
    recording: np.ndarray
    start: np.ndarray
    label: np.ndarray
    window_size_samples: int
    sfreq: float
    channel_vocabulary: Vocabulary
    region_vocabulary: Vocabulary
    subjects: list[str]
    label_map: dict[str, int]

    def __len__(self) -> int:
        return int(len(self.start))

    def __repr__(self) -> str:
        return (
            f"<WindowIndex | {len(self)} windows of {self.window_size_samples} samples at {self.sfreq:g} Hz "
            f"from {len(self.layouts)} recordings>"
        )

    def subset(self, windows: np.ndarray) -> WindowIndex:
        """Keep some windows (a boolean mask or indices); layouts and vocabularies are shared.

        Parameters
        ----------
        windows : numpy.ndarray of bool or int
            The windows to keep.

        Returns
        -------
        index : WindowIndex
            A new index over the same recordings.
        """
        return WindowIndex(
            layouts=self.layouts,
            recording=self.recording[windows],
            start=self.start[windows],
            label=self.label[windows],
            window_size_samples=self.window_size_samples,
            sfreq=self.sfreq,
            channel_vocabulary=self.channel_vocabulary,
            region_vocabulary=self.region_vocabulary,
            subjects=self.subjects,
            label_map=self.label_map,
        )

    @property
    def n_channels(self) -> np.ndarray:
        """Selected channels of each window's recording, shape (n_windows,)."""
        per_recording = np.array([layout.n_channels for layout in self.layouts], dtype=np.int64)
        return per_recording[self.recording] if len(self.layouts) else np.zeros(0, dtype=np.int64)

    @property
    def max_channels(self) -> int:
        """The largest channel count of any recording with windows (0 when empty)."""
        used = np.unique(self.recording)
        return int(max((self.layouts[i].n_channels for i in used), default=0))

    def chunk(self) -> np.ndarray:
        """Global chunk key of each window's first sample, shape (n_windows,).

        Returns
        -------
        chunk : numpy.ndarray of int64
            Equal values mean "same recording, same stored chunk".
        """
        chunk_times = np.array([layout.chunk_times for layout in self.layouts], dtype=np.int64)
        n_chunks = np.array([-(-layout.n_times // layout.chunk_times) for layout in self.layouts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(n_chunks)[:-1]]) if len(self.layouts) else np.zeros(0, np.int64)
        return offsets[self.recording] + self.start // chunk_times[self.recording]

    def recording_field(self, name: Literal["dataset", "subject", "recording_id"]) -> np.ndarray:
        """A recording attribute for each window, shape (n_windows,), dtype object."""
        values = np.array([getattr(layout, name) for layout in self.layouts], dtype=object)
        return values[self.recording] if len(self.layouts) else np.zeros(0, dtype=object)


def _select_recordings(store: Store, datasets: Sequence[str] | None, recording_ids: Sequence[str] | None) -> list[str]:
    ids = list(store)
    if recording_ids is not None:
        missing = sorted(set(recording_ids) - set(ids))
        if missing:
            raise ConfigError(f"recording_ids names recordings that are not in {store.path}: {missing[:10]}.")
        wanted = set(recording_ids)
        ids = [i for i in ids if i in wanted]
    if datasets is not None:
        wanted = set(datasets)
        ids = [i for i in ids if store[i].dataset in wanted]
    return ids


def build_window_index(
    store: Store | str | Path,
    window_s: float | None = None,
    stride_s: float | None = None,
    *,
    last_window: Literal["drop", "shift"] = "drop",
    tmin: float | None = None,
    tmax: float | None = None,
    label_map: dict[str, int] | list[str] | None = None,
    recording_labels: RecordingLabels | None = None,
    channel_types: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    recording_ids: Sequence[str] | None = None,
    channel_vocabulary: Vocabulary | None = None,
    region_vocabulary: Vocabulary | None = None,
) -> WindowIndex:
    """Index the windows of a store.

    Parameters
    ----------
    store : Store | str | pathlib.Path
        The store, or its folder.
    window_s : float | None
        Fixed window length in seconds. Leave None for event-locked windows.
    stride_s : float | None
        Seconds between fixed window starts; None means ``window_s``.
    last_window : "drop" | "shift"
        Policy for the samples after the last full fixed window.
    tmin, tmax : float | None
        Event-locked windows ``[onset + tmin, onset + tmax)`` in seconds.
    label_map : dict of str to int | list of str | None
        Event description -> label for event-locked windows (a list numbers its entries);
        None labels every distinct non-``BAD`` description in sorted order.
    recording_labels : RecordingLabels | None
        One label per recording (fixed windows only).
    channel_types : sequence of str | None
        Channel types to load; None keeps the brain channels (EEG, MEG, iEEG).
    datasets : sequence of str | None
        Keep only these datasets.
    recording_ids : sequence of str | None
        Keep only these recordings.
    channel_vocabulary, region_vocabulary : Vocabulary | None
        Vocabularies to use, extended in place with the names they lack, unless frozen
        (:meth:`~brainfm.loading.vocabulary.Vocabulary.freeze`): then those names get
        ``<unk>`` (1) and a warning lists them. None builds them from the store (see
        :mod:`brainfm.loading.vocabulary`).

    Returns
    -------
    index : WindowIndex
        The windows, in recording then time order.
    """
    store = open_store(store) if not isinstance(store, Store) else store
    check_option("last_window", last_window, ("drop", "shift"))
    event_locked = tmin is not None or tmax is not None
    if event_locked:
        if tmin is None or tmax is None:
            raise ConfigError(f"Event-locked windows need both tmin and tmax, got tmin={tmin!r}, tmax={tmax!r}.")
        if window_s is not None:
            raise ConfigError("Give either window_s (fixed windows) or tmin/tmax (event-locked windows), not both.")
        if recording_labels is not None:
            raise ConfigError("Event-locked windows take their labels from events; drop recording_labels.")
        check_range("tmax - tmin", tmax - tmin, 0, None, inclusive=False)
    else:
        if window_s is None:
            raise ConfigError("Give window_s for fixed windows, or tmin and tmax for event-locked windows.")
        check_range("window_s", window_s, 0, None, inclusive=False)
        if stride_s is not None:
            check_range("stride_s", stride_s, 0, None, inclusive=False)
        if label_map is not None:
            raise ConfigError("label_map applies to event-locked windows (tmin/tmax); use recording_labels for fixed windows.")
    types = tuple(DATA_CHANNEL_TYPES if channel_types is None else channel_types)
    for channel_type in types:
        check_option("channel_types", channel_type, CHANNEL_TYPES)

    recordings: list[StoredRecording] = []
    labels: list[int | None] = []
    for rid in _select_recordings(store, datasets, recording_ids):
        recording = store[rid]
        label = None
        if recording_labels is not None:
            label = recording_labels.label(rid, recording.identity, recording.source)
            if label is None:
                continue
        if not set(recording.channels["type"]) & set(types):
            logger.info("%s has no channel of the types %s; left out", rid, list(types))
            continue
        recordings.append(recording)
        labels.append(label)
    if not recordings:
        raise ConfigError(f"No recording of {store.path} is left to window (datasets={datasets}, types={list(types)}).")
    rates = sorted({r.sfreq for r in recordings})
    if len(rates) > 1:
        by_rate = {rate: sorted(r.id for r in recordings if r.sfreq == rate) for rate in rates}
        listed = "; ".join(f"{rate:g} Hz: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
                           for rate, ids in by_rate.items())
        raise ConfigError(
            f"The selected recordings have several sampling rates ({listed}); one loader (and every channel "
            "bucket of it) needs one rate. Resample in preprocessing, or select datasets of one rate (datasets=...)."
        )
    sfreq = rates[0]

    channel_vocabulary = Vocabulary.base_channels() if channel_vocabulary is None else channel_vocabulary
    region_vocabulary = Vocabulary.base_regions() if region_vocabulary is None else region_vocabulary
    tables = [r.channels for r in recordings]
    channel_keys = {
        channel_key(n, t) for table in tables for n, t in zip(table["name"], table["type"], strict=True) if t in types
    }
    region_keys = {
        key for table in tables for r, t in zip(table["region"], table["type"], strict=True) if t in types
        for key in [region_key(r)] if key is not None
    }
    for vocabulary, keys in ((channel_vocabulary, channel_keys), (region_vocabulary, region_keys)):
        if not vocabulary.frozen:
            vocabulary.extend(keys)
            continue
        unknown = sorted(k for k in keys if k not in vocabulary)
        if unknown:
            logger.warning(
                "%d %s names are not in the frozen %s vocabulary and map to <unk> (id 1): %s%s",
                len(unknown), vocabulary.kind, vocabulary.kind, unknown[:10], " ..." if len(unknown) > 10 else "",
            )
    layouts = [
        read_layout(r, i, types, channel_vocabulary, region_vocabulary) for i, r in enumerate(recordings)
    ]
    subjects = sorted({layout.subject for layout in layouts})
    subject_index = {s: i for i, s in enumerate(subjects)}
    for layout, label in zip(layouts, labels, strict=True):
        layout.subject_index = subject_index[layout.subject]
        layout.label = label

    if event_locked:
        assert tmin is not None and tmax is not None
        offset = int(round(tmin * sfreq))
        size = int(round(tmax * sfreq)) - offset
        if size < 1:
            raise ConfigError(
                f"Event-locked windows [onset + tmin, onset + tmax) with tmin={tmin!r} s and tmax={tmax!r} s hold "
                f"{size} samples at {sfreq:g} Hz; they must hold at least one sample: widen tmax - tmin to at "
                f"least {1 / sfreq:g} s."
            )
        descriptions = [
            d for layout in layouts for d in layout.events.get("description", []) if not d.upper().startswith("BAD")
        ]
        resolved = event_label_map(descriptions, label_map)
    else:
        assert window_s is not None
        size = seconds_to_samples("window_s", window_s, sfreq)
        stride = seconds_to_samples("stride_s", window_s if stride_s is None else stride_s, sfreq)
        resolved = dict(recording_labels.mapping) if recording_labels is not None else {}

    parts_rec, parts_start, parts_label = [], [], []
    n_bad = n_outside = 0
    for layout in layouts:
        if event_locked:
            events = layout.events
            if not events:
                continue
            keep = np.array([d in resolved for d in events["description"]], dtype=bool)
            onsets = np.round(events["onset_s"][keep] * sfreq).astype(np.int64)
            starts = onsets + offset
            window_labels = np.array([resolved[d] for d in events["description"][keep]], dtype=np.int64)
            inside = (starts >= 0) & (starts + size <= layout.n_times)
            n_outside += int(np.count_nonzero(~inside))
            starts, window_labels = starts[inside], window_labels[inside]
        else:
            starts = fixed_window_starts(layout.n_times, size, stride, last_window)
            window_labels = np.full(len(starts), NO_LABEL if layout.label is None else layout.label, dtype=np.int64)
        bad = overlaps_spans(starts, size, layout.bad_spans)
        n_bad += int(np.count_nonzero(bad))
        parts_rec.append(np.full(np.count_nonzero(~bad), layout.index, dtype=np.int64))
        parts_start.append(starts[~bad])
        parts_label.append(window_labels[~bad])
    empty = np.zeros(0, dtype=np.int64)
    index = WindowIndex(
        layouts=layouts,
        recording=np.concatenate(parts_rec) if parts_rec else empty,
        start=np.concatenate(parts_start) if parts_start else empty,
        label=np.concatenate(parts_label) if parts_label else empty,
        window_size_samples=size,
        sfreq=sfreq,
        channel_vocabulary=channel_vocabulary,
        region_vocabulary=region_vocabulary,
        subjects=subjects,
        label_map=resolved,
    )
    logger.info(
        "%d windows of %d samples from %d recordings (%d skipped for BAD spans, %d reaching outside)",
        len(index), size, len(layouts), n_bad, n_outside,
    )
    return index
