"""Bad-segment detection marks outlying segments as BAD_segment events and leaves data alone."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from brainfm.data import empty_channel_table, empty_events
from brainfm.errors import ConfigError
from brainfm.preprocessing.steps import SignalState, build_step
from brainfm.preprocessing.steps.bad_segments import BadSegments, _segment_edges, generalized_esd

# Rosner (1983) / NIST Engineering Statistics Handbook 1.3.5.17.3: 3 outliers at alpha 0.05
ROSNER = np.array([
    -0.25, 0.68, 0.94, 1.15, 1.20, 1.26, 1.26, 1.34, 1.38, 1.43, 1.49, 1.49, 1.55, 1.56, 1.58, 1.65, 1.69, 1.70,
    1.76, 1.77, 1.81, 1.91, 1.94, 1.96, 1.99, 2.06, 2.09, 2.10, 2.14, 2.15, 2.23, 2.24, 2.26, 2.35, 2.37, 2.40,
    2.47, 2.54, 2.62, 2.64, 2.90, 2.92, 2.92, 2.93, 3.21, 3.26, 3.30, 3.59, 3.68, 4.30, 4.64, 5.34, 5.42, 6.01,
])


def _meg_state(seconds=80, sfreq=250.0, seed=0):
    rng = np.random.default_rng(seed)
    n_times = int(seconds * sfreq)
    mag = rng.standard_normal((6, n_times)) * 2e-13
    grad = rng.standard_normal((6, n_times)) * 5e-12
    names = [f"MEG{i:04d}" for i in range(12)]
    channels = empty_channel_table(names, ["mag"] * 6 + ["grad"] * 6)
    data = np.concatenate([mag, grad]).astype(np.float32)
    return SignalState(data=data, sfreq=sfreq, channels=channels, events=empty_events())


def test_generalized_esd_matches_the_published_example():
    outliers = generalized_esd(ROSNER, alpha=0.05, max_outliers=10)
    assert sorted(ROSNER[outliers]) == [5.34, 5.42, 6.01]
    assert not generalized_esd(ROSNER[:-5], alpha=0.05, max_outliers=10).any()
    assert not generalized_esd(np.ones(20), alpha=0.05, max_outliers=5).any()


def test_segment_edges_short_tail_joins_the_last_segment():
    assert _segment_edges(0, 1100, 500) == [(0, 500), (500, 1100)]
    assert _segment_edges(0, 1300, 500) == [(0, 500), (500, 1000), (1000, 1300)]
    assert _segment_edges(100, 300, 500) == [(100, 300)]


def test_burst_on_magnetometers_becomes_one_bad_event():
    state = _meg_state()
    state.data[:6, 10_000:10_400] *= 10  # 1.6 s burst inside segment 20 (samples 10000-10500)
    original = state.data.copy()
    effect = BadSegments().apply(state)
    assert np.array_equal(state.data, original), "data unchanged"
    bad = state.events[state.events["description"] == "BAD_segment"]
    assert bad[["onset_s", "duration_s"]].values.tolist() == [[40.0, 2.0]]
    assert effect["per_type"]["mag"]["amplitude"]["n_bad"] == 1
    assert effect["per_type"]["grad"]["amplitude"]["n_bad"] == 0
    assert effect["n_segments"] == 40 and effect["bad_seconds"] == 2.0


def test_first_difference_mode_catches_fast_jumps():
    state = _meg_state()
    t = np.arange(500)
    state.data[6:, 5_000:5_500] = (np.where(t % 2, 1, -1) * 1.2e-11).astype(np.float32)  # Nyquist buzz on grads
    effect = BadSegments(modes=["diff"], types=["grad"]).apply(state)
    assert state.events[["onset_s", "duration_s"]].values.tolist() == [[20.0, 2.0]]
    assert list(effect["per_type"]) == ["grad"]


def test_segments_respect_acquisition_boundaries_and_merge_neighbours():
    state = _meg_state()
    state.boundaries_s = [30.1]  # sample 7525: segments restart there
    state.data[:6, 7_025:8_025] *= 12  # the two segments on either side of the boundary
    BadSegments(types=["mag"]).apply(state)
    assert state.events[["onset_s", "duration_s"]].values.tolist() == [[28.0, 4.1]]  # (7000, 7525) + (7525, 8025): the short tail joined its segment


def test_events_are_appended_sorted_and_bad_channels_left_out():
    state = _meg_state()
    state.events = pd.DataFrame({"onset_s": [5.0, 70.0], "duration_s": [0.0, 0.0], "description": ["stim", "stim"]})
    state.data[:6, 10_000:10_400] *= 10
    state.data[0, :] *= 1000  # a bad channel: it must not drive the scores
    state.channels.loc[0, "status"] = "bad"
    BadSegments(modes=["amplitude"]).apply(state)
    assert state.events["description"].tolist() == ["stim", "BAD_segment", "stim"]
    assert state.events["onset_s"].dtype == np.float64 and state.events["onset_s"].is_monotonic_increasing


def test_real_eeg_burst_with_eeg_type(shared_data):
    raw = mne.io.read_raw_edf(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", preload=True, verbose="error")
    raw.filter(1.0, 40.0, verbose="error")
    data = raw.get_data().astype(np.float32)
    sfreq = raw.info["sfreq"]
    data[:, 16_000:16_400] *= 8  # samples 16000-16400 lie in segment 32 (16000-16500)
    channels = empty_channel_table([n.strip(".") for n in raw.ch_names], ["eeg"] * len(raw.ch_names))
    state = SignalState(data=data, sfreq=sfreq, channels=channels, events=empty_events())
    effect = BadSegments(types=["eeg", "mag"]).apply(state)
    onsets = (state.events["onset_s"] * sfreq).round().astype(int).tolist()
    ends = ((state.events["onset_s"] + state.events["duration_s"]) * sfreq).round().astype(int).tolist()
    assert any(a <= 16_000 and b >= 16_400 for a, b in zip(onsets, ends, strict=True)), "the burst is marked"
    assert effect["bad_fraction"] <= 0.2 and list(effect["per_type"]) == ["eeg"]


def test_absent_types_and_short_recordings_are_no_ops():
    state = _meg_state(seconds=10)
    effect = BadSegments().apply(state)  # 5 segments: too few to test
    assert effect["per_type"]["mag"]["skipped"].startswith("5 segments")
    assert len(state.events) == 0
    effect = BadSegments(types=["eeg"]).apply(_meg_state())
    assert effect["per_type"] == {} and effect["events"] == []


def test_recipe_parameters_and_validation():
    step = build_step("bad_segments", {"types": ["mag", "grad"], "segment_samples": 500})
    assert step.params()["significance"] == 0.1 and step.params()["modes"] == ["amplitude", "diff"]
    with pytest.raises(ConfigError, match="'modes' parameter.*Did you mean 'diff'"):
        build_step("bad_segments", {"modes": ["dif"]})
    with pytest.raises(ValueError, match="'significance' parameter"):
        BadSegments(significance=1.5)
    with pytest.raises(TypeError, match="segment_samples must be an int"):
        BadSegments(segment_samples=500.5)
