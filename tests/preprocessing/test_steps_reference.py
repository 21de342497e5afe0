"""Re-referencing: common average over good channels, bipolar pairs and the shaft Laplacian."""

from __future__ import annotations

import tracemalloc

import mne
import numpy as np
import pytest

from brainfm.data import empty_channel_table, empty_events
from brainfm.errors import ConfigError, DataQualityError
from brainfm.preprocessing.steps import SignalState, build_step
from brainfm.preprocessing.steps.reference import Reference


def _state(data, types, names=None, sfreq=200.0):
    names = names or [f"{t.upper()}{i}" for i, t in enumerate(types)]
    channels = empty_channel_table(names, list(types))
    return SignalState(data=np.asarray(data, dtype=np.float32), sfreq=sfreq, channels=channels, events=empty_events())


def _noise(n_channels, n_times=2000, scale=1e-5, seed=0):
    return np.random.default_rng(seed).standard_normal((n_channels, n_times)) * scale


def _shaft_state(names, n_times=500, seed=0):
    data = _noise(len(names), n_times, seed=seed)
    state = _state(data, ["seeg"] * len(names), names)
    state.channels[["x", "y", "z"]] = np.arange(3 * len(names), dtype=float).reshape(-1, 3) * 1e-3
    state.channels["pos_source"] = "measured"
    return state, state.data.copy()


@pytest.mark.parametrize("interleaved", [False, True])
def test_average_reference_zero_mean_over_good_and_bad_left_out(interleaved):
    types = ["eeg"] * 10 + ["mag"] * 3
    if interleaved:
        types = ["eeg", "mag"] * 3 + ["eeg"] * 7
    data = _noise(len(types)) + 3e-5  # a common DC offset
    state = _state(data, types)
    eeg = np.flatnonzero(np.array(types) == "eeg")
    bad = eeg[[1, 4]]
    state.data[bad] += 5e-3  # bad channels far off: they must not leak into the reference
    state.channels.loc[bad, ["status", "status_reason"]] = ["bad", "noisy"]
    original = state.data.copy()

    effect = Reference(eeg="average").apply(state)

    good = np.setdiff1d(eeg, bad)
    reference = original[good].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(state.data[good].mean(axis=0, dtype=np.float64), 0.0, atol=1e-11)
    np.testing.assert_allclose(state.data[bad], original[bad] - reference, rtol=1e-6, atol=1e-11)
    meg = np.flatnonzero(np.array(types) == "mag")
    assert np.array_equal(state.data[meg], original[meg]), "MEG is never re-referenced"
    assert effect["eeg"] == {"scheme": "average", "n_averaged": 8, "left_out_bad": list(state.channels["name"][bad])}
    assert state.data.dtype == np.float32


def test_average_per_type_and_absent_types_are_no_ops():
    types = ["eeg"] * 4 + ["ecog"] * 4
    state = _state(_noise(8) + 1e-4, types)
    original = state.data.copy()
    effect = Reference(eeg="average", ecog="average", seeg="bipolar").apply(state)
    for rows in (slice(0, 4), slice(4, 8)):
        np.testing.assert_allclose(state.data[rows].mean(axis=0), 0.0, atol=1e-11)
        np.testing.assert_allclose(state.data[rows], original[rows] - original[rows].mean(axis=0), atol=1e-11)
    assert set(effect) == {"eeg", "ecog"}  # no sEEG: bipolar is a no-op


def test_average_with_every_channel_bad_warns_and_keeps_data():
    state = _state(_noise(3), ["eeg"] * 3)
    state.channels["status"] = "bad"
    original = state.data.copy()
    effect = Reference().apply(state)
    assert effect["eeg"]["scheme"] == "none" and np.array_equal(state.data, original)
    assert any("every eeg channel is bad" in w for w in state.warnings)


def test_bipolar_three_contact_shaft():
    state, original = _shaft_state(["A1", "A2", "A3"])
    eeg = _state(_noise(1, 500, seed=3), ["eeg"], ["Cz"])
    state.data = np.concatenate([eeg.data, state.data])
    state.channels = state.channels.iloc[[0, 0, 1, 2]].reset_index(drop=True)
    state.channels.loc[0, ["name", "orig_name", "type", "unit", "pos_source"]] = ["Cz", "Cz", "eeg", "V", "none"]
    state.channels.loc[0, ["x", "y", "z"]] = np.nan
    state.channels.loc[3, ["status", "status_reason"]] = ["bad", "flat"]  # A3
    dtypes = state.channels.dtypes.copy()

    effect = Reference(eeg="none", seeg="bipolar").apply(state)

    table = state.channels
    assert table["name"].tolist() == ["Cz", "A1-A2", "A2-A3"]
    assert state.data.shape == (3, 500)
    assert np.array_equal(state.data[0], eeg.data[0])
    np.testing.assert_allclose(state.data[1], original[0] - original[1], rtol=1e-6)
    np.testing.assert_allclose(state.data[2], original[1] - original[2], rtol=1e-6)
    positions = np.arange(9, dtype=float).reshape(3, 3) * 1e-3
    np.testing.assert_allclose(table.loc[1, ["x", "y", "z"]].to_numpy(dtype=float), positions[:2].mean(axis=0))
    np.testing.assert_allclose(table.loc[2, ["x", "y", "z"]].to_numpy(dtype=float), positions[1:].mean(axis=0))
    assert table["type"].tolist() == ["eeg", "seeg", "seeg"]
    assert table["status"].tolist() == ["good", "good", "bad"]
    assert table.loc[2, "status_reason"] == "bipolar: A3 bad (flat)"
    assert (table.dtypes == dtypes).all(), "column dtypes are kept"
    assert effect["seeg"]["pairs"] == ["A1-A2", "A2-A3"] and effect["seeg"]["dropped"] == []


def test_bipolar_pairs_only_adjacent_numbers_and_uses_group():
    state, original = _shaft_state(["LA1", "LA2", "LA4", "LA5", "X"])
    effect = Reference(seeg="bipolar").apply(state)
    assert state.channels["name"].tolist() == ["LA1-LA2", "LA4-LA5"]
    assert effect["seeg"]["dropped"] == ["X"]
    np.testing.assert_allclose(state.data[1], original[2] - original[3], rtol=1e-6)


@pytest.fixture
def five_contacts():
    return _shaft_state(["B1", "B2", "B3", "B4", "B5", "C1", "C2", "C3"])


def test_laplacian_inner_contacts_and_drop(five_contacts):
    state, x = five_contacts
    state.channels.loc[0, ["status", "status_reason"]] = ["bad", "noisy"]  # B1, a neighbour of B2
    effect = Reference(seeg="laplacian").apply(state)
    assert state.channels["name"].tolist() == ["B2", "B3", "B4", "C2"]
    expected = np.stack([x[i] - 0.5 * (x[i - 1] + x[i + 1]) for i in (1, 2, 3, 6)])
    np.testing.assert_allclose(state.data, expected, rtol=1e-5, atol=1e-12)
    assert effect["seeg"]["dropped"] == ["B1", "B5", "C1", "C3"]
    assert state.channels.loc[0, "status"] == "bad"
    assert state.channels.loc[0, "status_reason"] == "laplacian: neighbour B1 bad (noisy)"
    assert (state.channels["status"][1:] == "good").all()
    np.testing.assert_allclose(state.channels.loc[1, ["x", "y", "z"]].to_numpy(dtype=float), [6e-3, 7e-3, 8e-3])


def test_laplacian_one_sided_edges(five_contacts):
    state, x = five_contacts
    Reference(seeg="laplacian", laplacian_edges="one_sided").apply(state)
    assert state.channels["name"].tolist() == ["B1", "B2", "B3", "B4", "B5", "C1", "C2", "C3"]
    np.testing.assert_allclose(state.data[0], x[0] - x[1], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(state.data[4], x[4] - x[3], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(state.data[2], x[2] - 0.5 * (x[1] + x[3]), rtol=1e-5, atol=1e-12)


def test_laplacian_raise_drops_ends_and_rejects_gaps(five_contacts):
    state, _ = five_contacts
    Reference(seeg="laplacian", laplacian_edges="raise").apply(state)
    assert state.channels["name"].tolist() == ["B2", "B3", "B4", "C2"]

    state, _ = _shaft_state(["D1", "D2", "D3", "D5", "D6"])
    state.relpath = "sub-01/ieeg.vhdr"
    with pytest.raises(DataQualityError, match=r"sub-01/ieeg.vhdr.*\['D3', 'D5'\] lack one"):
        Reference(seeg="laplacian", laplacian_edges="raise").apply(state)


def test_exclude_regions_after_laplacian_uses_excluded_neighbours(five_contacts):
    state, x = five_contacts
    state.channels["region"] = ["ctx_lh_G_temp_sup", "Left-Lateral-Ventricle", "ctx_lh_G_temp_sup", "GRID", "", "", "", ""]
    effect = Reference(seeg="laplacian", exclude_regions=["GRID", "VENT"]).apply(state)
    assert state.channels["name"].tolist() == ["B3", "C2"]
    assert effect["excluded_by_region"] == ["B2", "B4"]
    # B3's Laplacian still used B2 and B4, which were dropped afterwards
    np.testing.assert_allclose(state.data[0], x[2] - 0.5 * (x[1] + x[3]), rtol=1e-5, atol=1e-12)
    assert state.data.shape == (2, x.shape[1])


@pytest.fixture(scope="module")
def ieeg_sample(shared_data):
    raw = mne.io.read_raw_fif(shared_data / "ieeg" / "fif" / "sample_ecog_ieeg.fif", verbose="error")
    types = raw.get_channel_types()
    channels = empty_channel_table(raw.ch_names, types)
    channels[["x", "y", "z"]] = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    return raw.get_data().astype(np.float32), channels, raw.info["sfreq"]


def test_real_seeg_laplacian_and_bipolar(ieeg_sample):
    data, channels, sfreq = ieeg_sample
    seeg = np.flatnonzero(channels["type"] == "seeg")
    shafts = {}
    for row in seeg:
        name = channels.loc[row, "name"]
        stem = name.rstrip("0123456789")
        shafts.setdefault(stem, {})[int(name[len(stem):])] = row

    state = SignalState(data=data.copy(), sfreq=sfreq, channels=channels.copy(), events=empty_events())
    effect = Reference(ecog="average", seeg="laplacian").apply(state)
    n_inner = sum(len(c) - 2 for c in shafts.values())
    assert effect["seeg"]["n_channels"] == n_inner
    assert (state.channels["type"] == "ecog").sum() == 320
    # a contact in the middle of the 20-contact DC shaft
    out = state.channels.index[state.channels["name"] == "DC10"][0]
    dc = shafts["DC"]
    np.testing.assert_allclose(state.data[out], data[dc[10]] - 0.5 * (data[dc[9]] + data[dc[11]]), rtol=1e-5, atol=1e-10)
    ecog = state.data[(state.channels["type"] == "ecog").to_numpy()]
    np.testing.assert_allclose(ecog.mean(axis=0), 0.0, atol=1e-10)

    state = SignalState(data=data.copy(), sfreq=sfreq, channels=channels.copy(), events=empty_events())
    Reference(eeg="none", seeg="bipolar").apply(state)
    assert (state.channels["type"] == "seeg").sum() == sum(len(c) - 1 for c in shafts.values())
    out = state.channels.index[state.channels["name"] == "AD3-AD4"][0]
    np.testing.assert_allclose(state.data[out], data[shafts["AD"][3]] - data[shafts["AD"][4]], rtol=1e-5, atol=1e-10)
    midpoint = channels.loc[[shafts["AD"][3], shafts["AD"][4]], ["x", "y", "z"]].to_numpy().mean(axis=0)
    np.testing.assert_allclose(state.channels.loc[out, ["x", "y", "z"]].to_numpy(dtype=float), midpoint)


def test_average_reference_allocates_no_float64_copy():
    n_channels, n_times = 64, 400_000  # 102 MB float32; a float64 copy would be 205 MB
    data = np.random.default_rng(0).standard_normal((n_channels, n_times), dtype=np.float32)
    state = _state(data, ["eeg"] * n_channels)
    state.channels.loc[[3, 40], "status"] = "bad"
    del data
    tracemalloc.start()
    try:
        Reference(eeg="average").apply(state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.35 * state.data.nbytes, f"peak {peak / 2**20:.0f} MiB for a {state.data.nbytes / 2**20:.0f} MiB signal"


def test_recipe_parameters_and_validation():
    step = build_step("reference", {"seeg": "laplacian", "dbs": "laplacian", "ecog": "none", "laplacian_edges": "drop",
                                    "exclude_regions": ["GRID", "VENT"]})
    assert step.params()["exclude_regions"] == ["GRID", "VENT"]
    with pytest.raises(ConfigError, match="'mag' parameter.*'none'"):
        build_step("reference", {"mag": "average"})
    with pytest.raises(ConfigError, match="'eeg' parameter.*'bipolar'"):
        build_step("reference", {"eeg": "bipolar"})
    with pytest.raises(ConfigError, match="'laplacian_edges' parameter.*Did you mean 'one_sided'"):
        build_step("reference", {"laplacian_edges": "one-sided"})
    with pytest.raises(ValueError, match="'exclude_regions' parameter"):
        Reference(exclude_regions=[""])
