"""Window index: counts and boundaries, last partial window, bad spans, labels."""

from __future__ import annotations

import numpy as np
import pytest

from brainfm.data.windows import bad_spans, fixed_window_starts, overlaps_spans
from brainfm.errors import ConfigError
from brainfm.loading import RecordingLabels, build_window_index


def test_fixed_window_starts_and_last_window():
    assert fixed_window_starts(1000, 200, 200).tolist() == [0, 200, 400, 600, 800]
    assert fixed_window_starts(1050, 200, 200, "drop").tolist() == [0, 200, 400, 600, 800]
    assert fixed_window_starts(1050, 200, 200, "shift").tolist() == [0, 200, 400, 600, 800, 850]
    assert fixed_window_starts(1000, 200, 200, "shift").tolist() == [0, 200, 400, 600, 800]
    assert fixed_window_starts(1000, 200, 150).tolist() == [0, 150, 300, 450, 600, 750]
    assert fixed_window_starts(150, 200, 200, "shift").tolist() == []
    with pytest.raises(ValueError, match="last_window"):
        fixed_window_starts(1000, 200, 200, "pad")  # type: ignore[arg-type]


def test_bad_spans_merge_and_overlap():
    spans = bad_spans([1.0, 1.5, 5.0, 7.0], [1.0, 1.0, 0.0, 1.0], ["BAD_a", "bad_b", "BAD_x", "T0"], 100.0)
    assert spans.tolist() == [[100, 250], [500, 501]]
    starts = np.array([0, 60, 250, 400, 460, 501])  # windows of 50 samples
    assert overlaps_spans(starts, 50, spans).tolist() == [False, True, False, False, True, False]


def test_index_counts_boundaries_and_bad_spans(make_recording, make_store):
    recordings = [
        make_recording(subject="01", n_times=1050, events=[(2.1, 0.5, "BAD_muscle"), (6.0, 0.1, "T1")]),
        make_recording(subject="02", n_times=420),
    ]
    store = make_store(recordings)
    index = build_window_index(store, window_s=2.0)
    assert index.window_size_samples == 200 and index.sfreq == 100.0
    first = index.start[index.recording == 0].tolist()
    # BAD 2.1-2.6 s = samples [210, 260): the window at 200 is skipped; 1000-1050 is partial: dropped
    assert index.layouts[0].bad_spans.tolist() == [[210, 260]]
    expected = [s for s in fixed_window_starts(1050, 200, 200) if not (s < 260 and s + 200 > 210)]
    assert first == expected == [0, 400, 600, 800]
    assert index.start[index.recording == 1].tolist() == [0, 200]
    shifted = build_window_index(store, window_s=2.0, last_window="shift")
    assert shifted.start[shifted.recording == 0].tolist() == [0, 400, 600, 800, 850]
    assert shifted.start[shifted.recording == 1].tolist() == [0, 200, 220]
    overlapping = build_window_index(store, window_s=2.0, stride_s=1.0)
    assert overlapping.start[overlapping.recording == 1].tolist() == [0, 100, 200]
    assert (index.label == -1).all() and index.label_map == {}


def test_event_locked_windows_and_label_map(make_recording, make_store):
    events = [(1.0, 0.0, "T0"), (3.0, 0.0, "T1"), (5.0, 0.0, "T2"), (5.2, 0.5, "BAD_x"), (9.9, 0.0, "T1"),
              (0.1, 0.0, "T2")]
    store = make_store([make_recording(n_times=1000, events=events)])
    index = build_window_index(store, tmin=-0.2, tmax=0.8, label_map={"T1": 1, "T2": 2})
    # T2 at 5.0 overlaps BAD 5.2-5.7; T1 at 9.9 and T2 at 0.1 reach outside; T0 not in the map
    assert index.start.tolist() == [280]
    assert index.label.tolist() == [1]
    assert index.window_size_samples == 100
    auto = build_window_index(store, tmin=0.0, tmax=0.5)
    assert auto.label_map == {"T0": 0, "T1": 1, "T2": 2}
    assert auto.start.tolist() == [10, 100, 300] and auto.label.tolist() == [2, 0, 1]
    with pytest.raises(ConfigError, match="not both"):
        build_window_index(store, window_s=1.0, tmin=0.0, tmax=1.0)
    with pytest.raises(ConfigError, match="tmin and tmax"):
        build_window_index(store, tmin=0.0)


def test_recording_labels_from_path_pattern(make_recording, make_store):
    recordings = [
        make_recording("eegmat", "00", "1", path="/d/eegmat/Subject00_1.edf"),
        make_recording("eegmat", "00", "2", path="/d/eegmat/Subject00_2.edf"),
        make_recording("eegmat", "01", "1", path="/d/eegmat/Subject01_1.edf"),
        make_recording("eegmat", "01", "3", path="/d/eegmat/Subject01_3.edf"),
    ]
    store = make_store(recordings)
    labels = RecordingLabels(field="path", pattern=r"_(\d)\.edf$", mapping={"1": 0, "2": 1}, on_missing="ignore")
    index = build_window_index(store, window_s=2.0, recording_labels=labels)
    by_recording = {index.layouts[r].recording_id: int(index.label[index.recording == r][0]) for r in np.unique(index.recording)}
    assert by_recording == {"eegmat_sub-00_run-1": 0, "eegmat_sub-00_run-2": 1, "eegmat_sub-01_run-1": 0}
    strict = RecordingLabels(field="path", pattern=r"_(\d)\.edf$", mapping={"1": 0, "2": 1})
    with pytest.raises(ValueError, match="Subject01_3.edf|has no label"):
        build_window_index(store, window_s=2.0, recording_labels=strict)
    by_run = RecordingLabels(field="run", mapping={"1": 0, "2": 1, "3": 1})
    index = build_window_index(store, window_s=2.0, recording_labels=by_run)
    assert sorted(set(index.label.tolist())) == [0, 1]
    with pytest.raises(ValueError, match="'field' parameter"):
        RecordingLabels(field="colour", mapping={"a": 0})


def test_mixed_sampling_rates_are_refused(make_recording, make_store):
    store = make_store([make_recording(subject="01"), make_recording(subject="02", sfreq=200.0, n_times=2000)])
    with pytest.raises(ConfigError, match=r"several sampling rates \(100 Hz: syn_sub-01; 200 Hz: syn_sub-02\)"):
        build_window_index(store, window_s=1.0)
    assert len(build_window_index(store, window_s=1.0, recording_ids=["syn_sub-01"])) == 10


def test_event_locked_windows_of_less_than_one_sample_are_refused(make_recording, make_store):
    store = make_store([make_recording(n_times=1000, events=[(1.0, 0.0, "T0")])])  # 100 Hz
    for tmin, tmax in ((0.0, 0.004), (0.006, 0.009)):  # 0.4 and 0.3 samples: both round to an empty window
        with pytest.raises(ConfigError, match=rf"tmin={tmin} s and tmax={tmax} s hold 0 samples at 100 Hz"):
            build_window_index(store, tmin=tmin, tmax=tmax)
    assert build_window_index(store, tmin=0.0, tmax=0.006).window_size_samples == 1
