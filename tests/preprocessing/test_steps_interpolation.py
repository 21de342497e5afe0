"""EEG interpolation: close to the truth on smooth fields, equal to MNE's, in float32 blocks."""

from __future__ import annotations

import tracemalloc
import warnings

import mne
import numpy as np
import pytest

from brainfm.data import empty_channel_table, empty_events
from brainfm.errors import ConfigError
from brainfm.preprocessing.steps import SignalState, build_step
from brainfm.preprocessing.steps.interpolation import Interpolate

ORIGIN = np.array([0.0, 0.0, 0.04])
NAMES = [
    "Fp1", "Fpz", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
    "T8", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "P7", "P5", "P3", "P1", "Pz", "P2", "P4",
    "P6", "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz", "O2",
]


def _montage_positions(names):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # older MNE names it standard_1005
        name = "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
        positions = mne.channels.make_standard_montage(name).get_positions()["ch_pos"]
    lookup = {key.upper(): value for key, value in positions.items()}
    return np.array([lookup[n.upper()] for n in names])


def _state(data, names, positions):
    channels = empty_channel_table(list(names), ["eeg"] * len(names))
    channels[["x", "y", "z"]] = positions
    channels["frame"] = "head"
    channels["pos_source"] = "template"
    return SignalState(data=np.asarray(data, dtype=np.float32), sfreq=200.0, channels=channels, events=empty_events())


def _smooth_field(positions, n_times=400, seed=0):
    """Low-order polynomials of the direction from the sphere origin, each with its own time course."""
    u = positions - ORIGIN
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x, y, z = u.T
    maps = np.stack([x, y, z, x * y, y * z, 3 * z**2 - 1, x**2 - y**2])  # (7, n_channels)
    courses = np.random.default_rng(seed).standard_normal((7, n_times))
    return (maps.T @ courses) * 1e-5  # (n_channels, n_times)


def _raw(data, names, positions, bads):
    info = mne.create_info(list(names), 200.0, "eeg")
    info.set_montage(mne.channels.make_dig_montage(ch_pos=dict(zip(names, positions, strict=True)), coord_frame="head"))
    raw = mne.io.RawArray(np.asarray(data, dtype=np.float32).astype(np.float64), info, verbose="error")
    raw.info["bads"] = list(bads)
    return raw


def test_interpolated_channel_is_close_to_the_truth_and_equals_mne():
    positions = _montage_positions(NAMES)
    truth = _smooth_field(positions)
    data = truth.copy()
    bads = [NAMES.index("C3"), NAMES.index("Pz"), NAMES.index("AF8")]
    data[bads] = np.random.default_rng(5).standard_normal((3, truth.shape[1])) * 1e-3  # garbage
    state = _state(data, NAMES, positions)
    state.channels.loc[bads, ["status", "status_reason"]] = ["bad", "noisy: robust_z=9.0"]
    expected = _raw(data, NAMES, positions, [NAMES[i] for i in bads])
    expected.interpolate_bads(reset_bads=False, mode="accurate", origin=(0.0, 0.0, 0.04), verbose="error")

    effect = Interpolate().apply(state)

    for row in bads:
        error = np.linalg.norm(state.data[row] - truth[row]) / np.linalg.norm(truth[row])
        assert error < 0.05, f"{NAMES[row]}: relative error {error:.3f}"
        reference = expected.get_data()[row]
        assert np.linalg.norm(state.data[row] - reference) / np.linalg.norm(reference) < 1e-6
    good = np.setdiff1d(np.arange(len(NAMES)), bads)
    assert np.array_equal(state.data[good], np.asarray(data, dtype=np.float32)[good]), "good channels untouched"
    assert (state.channels["status"] == "good").all()
    assert state.channels.loc[bads[0], "status_reason"] == "interpolated: noisy: robust_z=9.0"
    assert effect["interpolated"] == {NAMES[i]: "noisy: robust_z=9.0" for i in bads}
    assert effect["n_sources"] == len(NAMES) - 3 and effect["origin"] == [0.0, 0.0, 0.04]


def test_real_eeg_matches_mne(shared_data):
    raw = mne.io.read_raw_edf(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", preload=True, verbose="error")
    raw.crop(0, 20)
    names = [name.strip(".").upper() for name in raw.ch_names]
    positions = _montage_positions(names)
    names = [n.upper() for n in names]
    data = raw.get_data().astype(np.float32)
    bads = ["C3", "FP1", "O2"]
    rows = [names.index(b) for b in bads]
    state = _state(data, names, positions)
    state.channels.loc[rows, ["status", "status_reason"]] = ["bad", "flat"]
    expected = _raw(data, names, positions, bads)
    expected.interpolate_bads(reset_bads=False, mode="accurate", origin=(0.0, 0.0, 0.04), verbose="error")
    Interpolate().apply(state)
    for row in rows:
        reference = expected.get_data()[row]
        assert np.linalg.norm(state.data[row] - reference) / np.linalg.norm(reference) < 1e-6
        assert np.corrcoef(state.data[row], data[row])[0, 1] > 0.5  # plausibly the same scalp site


def test_channel_without_position_stays_bad_and_other_types_are_ignored():
    positions = _montage_positions(NAMES[:20])
    data = _smooth_field(positions)
    state = _state(data, NAMES[:20], positions)
    state.channels.loc[[2, 7], ["status", "status_reason"]] = ["bad", "metadata"]
    state.channels.loc[7, ["x", "y", "z"]] = np.nan
    state.channels.loc[19, ["type", "unit"]] = ["mag", "T"]  # bad MEG: not interpolated here
    state.channels.loc[19, ["status", "status_reason"]] = ["bad", "flat"]
    before = state.data.copy()
    effect = Interpolate().apply(state)
    assert effect["interpolated"] == {NAMES[2]: "metadata"}
    assert effect["not_interpolated"] == {NAMES[7]: "no position"}
    assert state.channels["status"].tolist().count("bad") == 2
    assert np.array_equal(state.data[[7, 19]], before[[7, 19]])


def test_no_bad_or_no_eeg_is_a_no_op_and_too_few_sources_warn():
    positions = _montage_positions(NAMES[:6])
    state = _state(_smooth_field(positions), NAMES[:6], positions)
    assert Interpolate().apply(state) == {"interpolated": {}, "not_interpolated": {}}

    state.channels["type"] = "seeg"
    state.channels.loc[0, "status"] = "bad"
    assert Interpolate().apply(state) == {"interpolated": {}, "not_interpolated": {}}

    state = _state(_smooth_field(positions), NAMES[:6], positions)
    state.channels.loc[[0, 1, 2], "status"] = "bad"
    effect = Interpolate().apply(state)
    assert set(effect["not_interpolated"]) == set(NAMES[:3]) and not effect["interpolated"]
    assert any("only 3 good EEG channels" in w for w in state.warnings)


def test_interpolation_allocates_no_float64_copy():
    positions = _montage_positions(NAMES)
    n_times = 400_000  # 61 channels: 98 MB in float32, a float64 copy would be 195 MB
    data = np.random.default_rng(0).standard_normal((len(NAMES), n_times), dtype=np.float32)
    state = _state(data, NAMES, positions)
    del data
    state.channels.loc[[10, 30], "status"] = "bad"
    small = _state(state.data[:, :100].copy(), NAMES, positions)
    small.channels.loc[10, "status"] = "bad"
    Interpolate(origin="auto").apply(small)  # import MNE's modules before measuring
    tracemalloc.start()
    try:
        Interpolate(origin="auto").apply(state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a float64 copy would be 2x the signal, a float32 copy 1x; blocks are 16 MiB of float64
    assert peak < 0.35 * state.data.nbytes, f"peak {peak / 2**20:.0f} MiB for a {state.data.nbytes / 2**20:.0f} MiB signal"


def test_recipe_parameters_and_validation():
    step = build_step("interpolate", {"mode": "accurate", "origin": [0.0, 0.0, 0.04]})
    assert step.params() == {"mode": "accurate", "origin": [0.0, 0.0, 0.04]}
    with pytest.raises(ConfigError, match="'mode' parameter.*'accurate'"):
        build_step("interpolate", {"mode": "accurat"})
    with pytest.raises(ValueError, match="'origin' parameter.*three numbers"):
        Interpolate(origin=[0.0, 0.04])
    with pytest.raises(ValueError, match="'origin' parameter.*'auto'"):
        Interpolate(origin="center")
