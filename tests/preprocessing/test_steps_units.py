"""Unit check: implausible amplitudes are reported with a likely cause, never rescaled."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from brainfm.data import empty_channel_table, empty_events
from brainfm.errors import ConfigError, DataQualityError
from brainfm.preprocessing.steps import SignalState, build_step
from brainfm.preprocessing.steps.units import UnitCheck, likely_cause


def _state(data, types, relpath="sub-01_eeg.edf"):
    channels = empty_channel_table([f"C{i}" for i in range(len(types))], list(types))
    return SignalState(data=np.asarray(data, dtype=np.float32), sfreq=250.0, channels=channels, events=empty_events(),
                       relpath=relpath)


def _noise(n_channels, scale, n_times=2000, seed=0):
    return np.random.default_rng(seed).standard_normal((n_channels, n_times)) * scale


@pytest.fixture(scope="module")
def ssvep(shared_data):
    path = sorted((shared_data / "eeg" / "ssvep-exo" / "subject01").glob("*_raw.fif"))[0]
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    raw.filter(0.1, None, verbose="error")
    return raw.get_data().astype(np.float32), raw.get_channel_types()


def test_ssvep_data_warn_and_stay_unscaled(ssvep):
    data, types = ssvep
    state = _state(data.copy(), types, relpath="subject01/record_raw.fif")
    effect = UnitCheck().apply(state)
    assert np.array_equal(state.data, data), "never rescaled"
    assert effect["implausible"] == ["eeg"] and 1e-3 < effect["eeg"]["median_std"] < 3e-2
    (warning,) = state.warnings
    assert "subject01/record_raw.fif: eeg amplitude" in warning
    assert "[2e-07, 0.0005] V" in warning
    assert "about 1e3 times too large: millivolt values labelled as volts" in warning
    assert warning.endswith("Stored unscaled.")

    with pytest.raises(DataQualityError, match=r"eeg amplitude .* 1e3 times too large.*on_implausible: warn"):
        UnitCheck(on_implausible="raise").apply(_state(data.copy(), types))
    state = _state(data.copy(), types)
    effect = UnitCheck(on_implausible="ignore").apply(state)
    assert state.warnings == [] and effect["eeg"]["plausible"] is False


def test_plausible_eeg_and_meg_pass_silently():
    data = np.concatenate([_noise(4, 2e-5), _noise(3, 3e-13), _noise(3, 4e-12)])
    state = _state(data, ["eeg"] * 4 + ["mag"] * 3 + ["grad"] * 3)
    effect = UnitCheck(on_implausible="raise").apply(state)
    assert effect["implausible"] == [] and state.warnings == []
    assert effect["mag"]["unit"] == "T" and effect["grad"]["range"] == [1e-14, 1e-9]
    assert effect["eeg"]["median_std"] == pytest.approx(2e-5, rel=0.1)


@pytest.mark.parametrize(
    ("types", "scale", "expected"),
    [
        (["eeg"], 2e1, "1e6 times too large: microvolt values labelled as volts?"),
        (["ecog"], 5e-11, "1e6 times too small"),
        (["mag"], 3e2, "1e15 times too large: femtotesla values labelled as tesla?"),
        (["grad"], 5e1, "1e13 times too large: fT/cm values labelled as T/m?"),
        (["seeg"], 3e-2, "1e3 times too large: millivolt values"),
    ],
)
def test_likely_causes(types, scale, expected):
    state = _state(_noise(4, scale), types * 4)
    UnitCheck().apply(state)
    assert len(state.warnings) == 1 and expected in state.warnings[0]


def test_bad_channels_do_not_count_and_flat_types_are_named():
    data = np.concatenate([_noise(3, 2e-5), _noise(5, 1.0)])
    state = _state(data, ["eeg"] * 8)
    state.channels.loc[3:, "status"] = "bad"
    assert UnitCheck(on_implausible="raise").apply(state)["eeg"]["n_channels"] == 3

    state = _state(np.zeros((3, 100)), ["eeg"] * 3)
    UnitCheck().apply(state)
    assert "every good channel is flat" in state.warnings[0]
    assert likely_cause(1e-3, 1e-5, "unknown").endswith("check the file's unit and calibration (gain)")


def test_ranges_override_absent_and_aux_types():
    state = _state(_noise(2, 1e-2), ["ecg", "ecg"])
    assert UnitCheck(on_implausible="raise").apply(state) == {"implausible": []}  # no range for ECG by default
    with pytest.raises(DataQualityError, match="ecg amplitude"):
        UnitCheck(on_implausible="raise", ranges={"ecg": [1e-6, 1e-3]}).apply(state)
    state = _state(_noise(2, 1e-3), ["eeg", "eeg"])
    assert UnitCheck(on_implausible="raise", ranges={"eeg": [1e-4, 1e-2]}).apply(state)["eeg"]["plausible"]


def test_recipe_parameters_and_validation():
    assert build_step("units", {"on_implausible": "warn"}).params() == {"on_implausible": "warn", "ranges": None}
    with pytest.raises(ConfigError, match="'on_implausible' parameter.*Did you mean 'raise'"):
        build_step("units", {"on_implausible": "rise"})
    with pytest.raises(ValueError, match="'ranges' parameter.*'eeg' needs \\[low, high\\]"):
        UnitCheck(ranges={"eeg": [1e-3, 1e-6]})
    with pytest.raises(ValueError, match="'ranges' parameter.*'eg'"):
        UnitCheck(ranges={"eg": [1e-6, 1e-3]})
