"""Channel-wise steps give the same result as MNE's Raw methods, in blocks of any size."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from brainfm.data import empty_channel_table, empty_events
from brainfm.preprocessing import pipeline
from brainfm.preprocessing.steps import SignalState, build_step
from brainfm.preprocessing.steps.filters import detect_line_freq


def _signal(n_channels=6, sfreq=500.0, seconds=20.0, line=None, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sfreq * seconds)) / sfreq
    data = rng.standard_normal((n_channels, t.size)).cumsum(axis=1) * 1e-7
    data += np.sin(2 * np.pi * 10 * t) * 5e-6
    if line:
        data += np.sin(2 * np.pi * line * t) * 2e-5 + np.sin(2 * np.pi * 2 * line * t) * 1e-5
    return data, sfreq


def _state(data, sfreq, line_freq=None):
    channels = empty_channel_table([f"E{i}" for i in range(len(data))], ["eeg"] * len(data))
    return SignalState(data=data.astype(np.float32), sfreq=sfreq, channels=channels, events=empty_events(), line_freq=line_freq)


def _raw(data, sfreq):
    info = mne.create_info([f"E{i}" for i in range(len(data))], sfreq, "eeg")
    return mne.io.RawArray(data.astype(np.float32).astype(np.float64), info, verbose=False)


@pytest.mark.parametrize("block_bytes", [64 * 2**20, 1])
def test_resample_and_bandpass_match_mne(block_bytes, monkeypatch):
    monkeypatch.setattr(pipeline, "_BLOCK_BYTES", block_bytes)  # 1 byte: one channel per block
    data, sfreq = _signal()
    state = _state(data, sfreq)
    steps = [build_step("resample", {"sfreq": 250}), build_step("bandpass", {"l_freq": 1.0, "h_freq": 40.0})]
    pipeline.run_steps(state, steps)
    expected = _raw(data, sfreq).resample(250, method="polyphase", verbose=False).filter(1.0, 40.0, verbose=False)
    assert state.sfreq == 250.0
    assert state.data.dtype == np.float32 and state.data.shape == expected.get_data().shape
    np.testing.assert_allclose(state.data, expected.get_data(), atol=1e-12, rtol=1e-5)
    assert [entry["step"] for entry in state.log] == ["resample", "bandpass"]
    assert state.log[0]["effect"] == {"from_sfreq": 500.0, "to_sfreq": 250.0, "method": "polyphase"}


def test_resample_non_integer_rate():
    data, _ = _signal(n_channels=2, sfreq=999.4121105232217, seconds=5)
    state = _state(data, 999.4121105232217)
    pipeline.run_steps(state, [build_step("resample", {"sfreq": 256})])
    assert state.sfreq == 256.0
    assert abs(state.n_times - round(data.shape[1] * 256 / 999.4121105232217)) <= 1


def test_resample_per_modality_and_only_down():
    data, sfreq = _signal(n_channels=2, sfreq=200.0, seconds=4)
    state = _state(data, sfreq)
    pipeline.run_steps(state, [build_step("resample", {"sfreq": {"eeg": 256, "meg": 300}, "only_down": True})])
    assert state.sfreq == 200.0 and state.log[0]["effect"]["skip"]
    state.channels["type"] = "seeg"
    pipeline.run_steps(state, [build_step("resample", {"sfreq": {"eeg": 256}})])
    assert "no target rate" in state.log[-1]["effect"]["reason"]


def test_notch_line_detected_and_removed_with_harmonics():
    data, sfreq = _signal(line=60.0)
    assert detect_line_freq(data, sfreq) == 60.0
    assert detect_line_freq(_signal(line=50.0)[0], sfreq) == 50.0
    assert detect_line_freq(_signal()[0], sfreq) is None
    state = _state(data, sfreq)
    pipeline.run_steps(state, [build_step("notch", {"freqs": "line"})])
    assert state.line_freq == 60.0
    effect = state.log[-1]["effect"]
    assert effect["freqs"] == [60.0, 120.0, 180.0, 240.0]
    spectrum = np.abs(np.fft.rfft(state.data[0]))
    freqs = np.fft.rfftfreq(state.n_times, 1 / sfreq)
    before = np.abs(np.fft.rfft(data[0]))
    for f in (60.0, 120.0):
        k = np.argmin(np.abs(freqs - f))
        assert spectrum[k] < before[k] / 20
    k10 = np.argmin(np.abs(freqs - 10))
    assert spectrum[k10] == pytest.approx(before[k10], rel=0.02)


def test_notch_unknown_line_is_skipped_with_warning():
    data, sfreq = _signal()
    state = _state(data, sfreq)
    pipeline.run_steps(state, [build_step("notch", {"freqs": "line"})])
    assert state.log[-1]["effect"]["skip"]
    assert any("notch skipped" in w for w in state.warnings)
    np.testing.assert_array_equal(state.data, data.astype(np.float32))


def test_causal_iir_notch_is_one_forward_pass():
    from scipy.signal import iirnotch, lfilter

    data, sfreq = _signal(n_channels=2, line=60.0, sfreq=2048.0, seconds=3)
    state = _state(data, sfreq, line_freq=60.0)
    pipeline.run_steps(state, [build_step("notch", {"freqs": [60.0], "method": "iir", "phase": "causal", "quality": 30.0})])
    b, a = iirnotch(60.0, 30.0, fs=sfreq)
    expected = lfilter(b, a, data.astype(np.float32).astype(np.float64), axis=-1)
    np.testing.assert_allclose(state.data, expected, rtol=1e-4, atol=1e-10)


def test_filters_do_not_cross_acquisition_boundaries():
    data, sfreq = _signal(n_channels=1, seconds=20)
    data[:, data.shape[1] // 2 :] += 1e-3  # a step at a recording boundary
    state = _state(data, sfreq)
    state.boundaries_s = [10.0]
    pipeline.run_steps(state, [build_step("bandpass", {"l_freq": 1.0, "h_freq": None})])
    first_half = _state(data[:, : data.shape[1] // 2], sfreq)
    pipeline.run_steps(first_half, [build_step("bandpass", {"l_freq": 1.0, "h_freq": None})])
    np.testing.assert_allclose(state.data[:, : data.shape[1] // 2], first_half.data, rtol=1e-5, atol=1e-12)


def test_bandpass_edge_above_nyquist_is_dropped():
    data, sfreq = _signal(n_channels=1, sfreq=160.0)
    state = _state(data, sfreq)
    pipeline.run_steps(state, [build_step("bandpass", {"l_freq": 0.5, "h_freq": 100.0})])
    assert state.log[-1]["effect"] == {"l_freq": 0.5, "h_freq": None}
    assert any("Nyquist" in w for w in state.warnings)


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("bandpass", {"l_freq": 40, "h_freq": 1}, "must be below"),
        ("bandpass", {"method": "fir", "phase": "forward"}, "needs method='iir'"),
        ("notch", {"method": "fir", "phase": "causal"}, "needs method='iir'"),
        ("resample", {"method": "linear"}, "Allowed values"),
        ("resample", {"sfrq": 3}, "has no parameter.*Did you mean .sfreq."),
        ("bandpas", {}, "Unknown preprocessing step.*Did you mean 'bandpass'"),
    ],
)
def test_invalid_step_parameters_name_the_problem(name, params, match):
    from brainfm.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match=match):
        build_step(name, params)


def test_events_survive_resampling():
    data, sfreq = _signal(n_channels=1)
    state = _state(data, sfreq)
    state.events = pd.DataFrame({"onset_s": [1.5], "duration_s": [0.0], "description": ["x"]})
    pipeline.run_steps(state, [build_step("resample", {"sfreq": 100})])
    assert state.events["onset_s"].tolist() == [1.5]



@pytest.mark.parametrize(
    "name,params",
    [("bandpass", {"l_freq": 0.5, "h_freq": None}), ("notch", {"freqs": [50.0]})],
)
def test_mne_filter_warnings_are_recorded_not_swallowed(name, params):
    data, sfreq = _signal(n_channels=3, seconds=0.6)  # 300 samples: shorter than either FIR filter
    state = _state(data, sfreq)
    pipeline.run_steps(state, [build_step(name, params)])
    expected = f"{name}: filter_length ("
    notes = [w for w in state.warnings if w.startswith(expected)]
    assert len(notes) == 1, state.warnings  # once, though every block of channels warned
    assert "is longer than the signal (300)" in notes[0]
    assert state.log[-1]["effect"]["warnings"] == notes


def test_filter_warnings_of_a_short_segment_reach_the_provenance(tmp_path):
    from brainfm import open_store
    from brainfm.preprocessing.run import preprocess

    data, sfreq = _signal(n_channels=4, sfreq=250.0, seconds=40.0)
    raw = _raw(data, sfreq)
    raw.set_annotations(mne.Annotations([1.0], [0.0], ["boundary"]))  # EEGLAB-style: a 1-s first segment
    folder = tmp_path / "in"
    folder.mkdir()
    raw.save(folder / "a_raw.fif", verbose=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\npick: {types: [eeg]}\nsteps:\n  - bandpass: {l_freq: 1.0, h_freq: 40.0}\n")
    summary = preprocess(folder, tmp_path / "s.zarr", recipe=str(recipe))
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    notes = [w for w in rec.provenance["warnings"] if w.startswith("bandpass: filter_length")]
    assert len(notes) == 1 and "longer than the signal (250)" in notes[0], rec.provenance["warnings"]
    bandpass = next(entry for entry in rec.provenance["steps"] if entry["step"] == "bandpass")
    assert bandpass["effect"]["warnings"] == notes
