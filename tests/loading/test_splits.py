"""Splits that would hand validation data training has seen: subjects that are not known (each
recording counted as its own subject) and overlapping windows split one by one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr

from brainfm.errors import ConfigError
from brainfm.loading import WindowDataModule, build_window_index, split_index

FRACTIONS = {"train": 0.5, "val": 0.5}


def test_splitting_recordings_without_subjects_by_subject_refuses(make_recording, make_store):
    # a plain folder without sub- names or --pattern: no subject, so each recording is its own
    store = make_store([make_recording(subject=None, run=str(r)) for r in range(1, 5)])
    index = build_window_index(store, window_s=1.0)
    assert {layout.subject_source for layout in index.layouts} == {"recording"}
    with pytest.raises(ConfigError, match=r"4 of the 4 recordings have no known subject.*syn_run-1, syn_run-2.*"
                                          r"subject leakage.*--pattern.*on_unknown_subject='warn'"):
        split_index(index, FRACTIONS, unit="subject")
    data = WindowDataModule(store, window_s=1.0)  # the default split is by subject
    with pytest.raises(ConfigError, match="no known subject"):
        data.setup("fit")
    with pytest.warns(UserWarning, match="subject leakage"):  # accepted on purpose: a warning still says it
        parts = split_index(index, FRACTIONS, unit="subject", on_unknown_subject="warn")
    assert len(parts["train"]) and len(parts["val"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_index(index, FRACTIONS, unit="subject", on_unknown_subject="ignore")
        split_index(index, FRACTIONS, unit="recording")  # by recording: what was asked for
        split_index(index, {"train": 1.0, "val": 0.0}, unit="subject")  # nothing held out: nothing leaks
    with pytest.raises(ValueError, match="'on_unknown_subject' parameter"):
        split_index(index, FRACTIONS, on_unknown_subject="accept")  # type: ignore[arg-type]


def test_known_subjects_split_whole_and_old_stores_count_as_unknown(make_recording, make_store):
    recordings = [make_recording(subject=f"{s:02d}", run=str(r)) for s in range(4) for r in (1, 2)]
    store = make_store(recordings)
    index = build_window_index(store, window_s=1.0)
    assert {layout.subject_source for layout in index.layouts} == {"given"}
    parts = split_index(index, FRACTIONS, unit="subject")
    train, val = (set(parts[p].recording_field("subject").tolist()) for p in ("train", "val"))
    assert train and val and not train & val
    # a store written before brainfm recorded subject_source: its subjects are not vouched for
    group = zarr.open_group(str(store / "recordings" / index.layouts[0].recording_id), mode="a")
    attrs = dict(group.attrs)
    del attrs["subject_source"]
    group.attrs.clear()
    group.update_attributes(attrs)
    old = build_window_index(store, window_s=1.0)
    assert old.layouts[0].subject_source == "unknown"
    with pytest.raises(ConfigError, match=r"1 of the 8 recordings have no known subject \(stores written before"):
        split_index(old, FRACTIONS, unit="subject")


def test_window_split_with_overlapping_windows_warns(make_recording, make_store):
    store = make_store([make_recording(n_times=3000)])
    overlapping = build_window_index(store, window_s=1.0, stride_s=0.5)
    with pytest.warns(UserWarning, match=r"overlapping windows: \d+ pairs of neighbouring windows in different "
                                         r"parts \(train/val\) share samples"):
        split_index(overlapping, FRACTIONS, unit="window")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_index(build_window_index(store, window_s=1.0), FRACTIONS, unit="window")  # stride = window
        split_index(overlapping, {"train": 1.0, "val": 0.0}, unit="window")  # nothing held out
        split_index(overlapping, FRACTIONS, unit="recording")
    # event-locked windows closer together than their length overlap too
    events = [(t, 0.0, "T1") for t in np.arange(1.0, 25.0, 0.3)]
    store = make_store([make_recording(n_times=3000, events=events)])
    locked = build_window_index(store, tmin=0.0, tmax=1.0)
    with pytest.warns(UserWarning, match="share samples"):
        split_index(locked, FRACTIONS, unit="window")
