"""Bad-channel detection finds flat and noisy channels per sensor type, and nothing else."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from brainfm.data import empty_channel_table, empty_events
from brainfm.errors import ConfigError
from brainfm.preprocessing.steps import SignalState, build_step
from brainfm.preprocessing.steps.bad_channels import BadChannels, robust_z


def _state(data, types, sfreq=250.0, names=None):
    names = names or [f"{t.upper()}{i:03d}" for i, t in enumerate(types)]
    channels = empty_channel_table(names, list(types))
    return SignalState(data=np.asarray(data, dtype=np.float32), sfreq=sfreq, channels=channels, events=empty_events())


def _noise(n_channels, n_times=5000, scale=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.8, 1.25, size=(n_channels, 1))
    return rng.standard_normal((n_channels, n_times)) * gains * scale


@pytest.fixture(scope="module")
def eegmmidb(shared_data):
    raw = mne.io.read_raw_edf(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", preload=True, verbose="error")
    raw.filter(0.1, None, verbose="error")  # the default recipe's high-pass
    names = [name.strip(".").upper() for name in raw.ch_names]
    return raw.get_data().astype(np.float32), raw.info["sfreq"], names


@pytest.mark.parametrize("noisy", ["robust_z", "psd_distance"])
def test_real_eeg_finds_injected_flat_and_noisy_only(eegmmidb, noisy):
    data, sfreq, names = eegmmidb
    state = _state(data.copy(), ["eeg"] * len(names), sfreq, names)
    clean = BadChannels(noisy=noisy).apply(state)
    assert clean["marked_bad"] == {}, "clean real EEG must keep every channel"

    data = data.copy()
    rng = np.random.default_rng(1)
    data[5] = 3e-5  # a constant (disconnected) channel with a DC offset
    data[20] += (20 * data[20].std() * rng.standard_normal(data.shape[1])).astype(np.float32)
    state = _state(data, ["eeg"] * len(names), sfreq, names)
    effect = BadChannels(noisy=noisy).apply(state)

    assert set(effect["marked_bad"]) == {names[5], names[20]}
    assert len(state.channels) == len(names), "rows are never dropped"
    reasons = dict(zip(state.channels["name"], state.channels["status_reason"], strict=True))
    assert reasons[names[5]] == "flat"
    assert reasons[names[20]].startswith(f"noisy: {noisy}")
    assert (state.channels["status"] == "bad").sum() == 2
    assert effect["per_type"]["eeg"]["n_channels"] == 64


def test_constant_and_near_flat_channels_are_flat():
    data = _noise(10)
    data[2] = 1.5e-4  # constant
    data[7] *= 1e-3  # a thousand times below the others
    state = _state(data, ["eeg"] * 10)
    effect = BadChannels(noisy="none").apply(state)
    assert effect["marked_bad"] == {"EEG002": "flat", "EEG007": "flat"}
    assert effect["per_type"]["eeg"]["flat_limit"] == pytest.approx(0.01 * effect["per_type"]["eeg"]["median_std"])


def test_absolute_floor_catches_a_type_that_is_mostly_flat():
    data = np.zeros((4, 1000))
    data[3] = _noise(1, 1000)[0]
    state = _state(data, ["eeg"] * 4)
    effect = BadChannels().apply(state)
    assert effect["marked_bad"] == {"EEG000": "flat", "EEG001": "flat", "EEG002": "flat"}


def test_types_are_judged_separately_and_can_be_restricted():
    eeg = _noise(8, scale=2e-5)
    mag = _noise(8, scale=2e-13, seed=1)
    mag[4] *= 30  # a noisy magnetometer
    eeg[1] = 0.0
    state = _state(np.concatenate([eeg, mag]), ["eeg"] * 8 + ["mag"] * 8)
    effect = BadChannels().apply(state)
    # pooled together every magnetometer would look flat next to the EEG
    assert effect["marked_bad"] == {"EEG001": "flat", "MAG012": effect["marked_bad"]["MAG012"]}
    assert effect["marked_bad"]["MAG012"].startswith("noisy: robust_z=")

    state = _state(np.concatenate([eeg, mag]), ["eeg"] * 8 + ["mag"] * 8)
    effect = BadChannels(types=["eeg"], noisy="psd_distance").apply(state)
    assert set(effect["marked_bad"]) == {"EEG001"}
    assert list(effect["per_type"]) == ["eeg"]


def test_absent_type_is_a_no_op():
    state = _state(_noise(6), ["eeg"] * 6)
    before = state.channels.copy()
    effect = BadChannels(types=["seeg", "grad"]).apply(state)
    assert effect["marked_bad"] == {} and effect["per_type"] == {}
    assert state.channels.equals(before)


def test_metadata_bads_are_kept_unless_told_otherwise():
    state = _state(_noise(8), ["eeg"] * 8)
    state.channels.loc[3, ["status", "status_reason"]] = ["bad", "metadata"]
    effect = BadChannels().apply(state)
    assert effect["metadata_bad"] == ["EEG003"] and effect["marked_bad"] == {}
    assert state.channels.loc[3, "status"] == "bad"

    state = _state(_noise(8), ["eeg"] * 8)
    state.channels.loc[3, ["status", "status_reason"]] = ["bad", "metadata"]
    effect = BadChannels(keep_metadata=False).apply(state)
    assert effect["metadata_reset"] == ["EEG003"]
    assert state.channels.loc[3, "status"] == "good" and state.channels.loc[3, "status_reason"] == ""


def test_robust_z_handles_zero_spread():
    assert np.array_equal(robust_z(np.ones(5)), np.zeros(5))
    z = robust_z(np.array([1.0, 1.0, 1.0, 1.0, 3.0]))
    assert z[-1] > 0 and np.all(z[:-1] == 0)


def test_recipe_parameters_and_validation():
    step = build_step("bad_channels", {"types": ["eeg"], "noisy": "psd_distance", "psd_iqr_factor": 10.0})
    assert isinstance(step, BadChannels) and step.params()["psd_iqr_factor"] == 10.0
    with pytest.raises(ConfigError, match="'noisy' parameter.*'robust_z'"):
        build_step("bad_channels", {"noisy": "robust"})
    with pytest.raises(ConfigError, match="'types' parameter.*'eeeg'"):
        build_step("bad_channels", {"types": ["eeeg"]})
    with pytest.raises(ValueError, match="'flat_ratio' parameter"):
        BadChannels(flat_ratio=2.0)
    with pytest.raises(ValueError, match="'psd_fmax' parameter"):
        BadChannels(psd_fmin=10.0, psd_fmax=5.0)
    with pytest.raises(TypeError, match="min_channels must be an int"):
        BadChannels(min_channels=True)


def test_keep_metadata_false_also_resets_bids_reasons():
    from brainfm.data import empty_channel_table, empty_events
    from brainfm.preprocessing.steps import SignalState, build_step

    rng = np.random.default_rng(0)
    channels = empty_channel_table([f"E{i}" for i in range(6)], ["eeg"] * 6)
    channels.loc[2, ["status", "status_reason"]] = ["bad", "metadata: continuously flat"]
    channels.loc[3, ["status", "status_reason"]] = ["bad", "metadata"]
    state = SignalState(
        data=(rng.standard_normal((6, 5000)) * 1e-5).astype(np.float32), sfreq=250.0,
        channels=channels, events=empty_events(),
    )
    effect = build_step("bad_channels", {"keep_metadata": False}).apply(state)
    assert (state.channels["status"] == "good").all()
    assert sorted(effect["metadata_reset"]) == ["E2", "E3"]
