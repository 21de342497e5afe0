"""EEG channel-name normalisation and name-based type inference."""

from __future__ import annotations

import warnings

import mne
import pytest

from brainfm.data.channel_names import (
    EEG_ALIASES,
    canonical_eeg_name,
    clean_channel_name,
    infer_type_from_name,
    normalise_eeg_names,
    outside_ten_five,
    ten_five_montage_name,
    ten_five_names,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Fc5.", "FC5"),  # PhysioNet pads names with dots
        ("C5..", "C5"),
        ("Fcz.", "FCz"),
        ("Iz..", "Iz"),
        ("EEG Fp1", "Fp1"),  # eegmat's type prefix
        ("EEG FP1-REF", "Fp1"),  # TUH-style prefix and reference suffix
        ("EEG-Fpz", "Fpz"),
        ("Fp1-LE", "Fp1"),
        ("F4-A1", "F4"),  # referenced to an ear
        ("CZ-A2", "Cz"),
        ("cz", "Cz"),
        ("AFZ", "AFz"),
        ("T3", "T3"),  # old names stay; EEG_ALIASES maps them
        ("PO10", "PO10"),
        ("FFC1h", "FFC1h"),
    ],
)
def test_canonical_eeg_name(name, expected):
    assert canonical_eeg_name(name) == expected


@pytest.mark.parametrize("name", ["EEG A2-A1", "A1-A2", "Status", "E12", "Ergo-Left", "ECG", "HEOG", "acc1", ""])
def test_canonical_eeg_name_unknown(name):
    assert canonical_eeg_name(name) is None


def test_clean_channel_name_keeps_unknown_names_readable():
    assert clean_channel_name("EEG A2-A1") == "A2-A1"
    assert clean_channel_name(" Status. ") == "Status"
    assert clean_channel_name("EEG Fp1") == "Fp1"
    assert clean_channel_name("EEG 001") == "EEG 001"  # Neuromag numbering keeps its prefix
    assert clean_channel_name("EEG001") == "EEG001"


def test_aliases_point_to_ten_five_names_at_the_same_site():
    assert EEG_ALIASES == {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
    names = set(ten_five_names())
    assert set(EEG_ALIASES) <= names and set(EEG_ALIASES.values()) <= names
    positions = mne.channels.make_standard_montage(ten_five_montage_name()).get_positions()["ch_pos"]
    for old, new in EEG_ALIASES.items():
        assert positions[old] == pytest.approx(positions[new])


def test_ten_five_montage_is_not_deprecated():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning for 'standard_1005' would fail here
        names = ten_five_names.__wrapped__()
        mne.channels.make_standard_montage(ten_five_montage_name())
    assert ten_five_montage_name() in mne.channels.get_builtin_montages()
    assert len(names) == 343 and "Fp1" in names and "M1" in names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("HEOG", "eog"), ("VEOG", "eog"), ("EOG", "eog"), ("EOG-L", "eog"),
        ("ECG", "ecg"), ("ECG ECG", "ecg"), ("EKG", "ecg"), ("POL EKG2", "ecg"), ("EKGL", "ecg"),
        ("EMG", "emg"), ("Chin EMG", "emg"),
        ("Fp1", None), ("EEG Fp1", None), ("A2-A1", None), ("acc1", None), ("Status", None),
        ("Legs", None),  # "eg" inside a word is not EEG/ECG/EMG
        # Sleep-EDF and other polysomnography montages (issue 6, item 10)
        ("EOG horizontal", "eog"), ("LOC", "eog"), ("ROC-A1", "eog"), ("EMG submental", "emg"), ("Chin1", "emg"),
        ("Resp oro-nasal", "resp"), ("Thor", "resp"), ("Abdomen", "resp"), ("Airflow", "resp"),
        ("Temp rectal", "temperature"), ("SpO2", "bio"), ("SaO2", "bio"), ("Pleth", "bio"), ("HR", "bio"),
        ("Pulse", "bio"), ("GSR", "gsr"), ("Photic", "stim"), ("Event marker", "stim"), ("Snore", "misc"),
        ("EEG Fpz-Cz", None), ("C3-A2", None), ("T3", None),
        # iEEG contacts and other names that only look like these words
        ("LOC1", None), ("HR2", None), ("THOR3", None), ("Temporal1", None), ("PHR", None), ("Eventual", None),
    ],
)
def test_infer_type_from_name(name, expected):
    assert infer_type_from_name(name) == expected


def test_outside_ten_five():
    assert outside_ten_five(["Fp1", "EEG Fpz-Cz", "FC5.", "E12", "EEG A2-A1", "C3-A2"]) == ["EEG Fpz-Cz", "E12", "EEG A2-A1"]


def test_normalise_eeg_names_stays_unique():
    out = normalise_eeg_names(["Fp1", "FP1-REF", "EEG FP1", "Fc5.", "Cz"], taken=["Cz"])
    assert out == ["Fp1", "FP1-REF", "EEG FP1", "FC5", "Cz-2"]
    assert len(set(out)) == len(out)
