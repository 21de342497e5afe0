"""Damaged samples and headers found by the fuzz module: each is refused with a reason that
names the file, instead of an internal error, a hang or a store that fails its check."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest

from brainfm import open_store
from brainfm.preprocessing.run import preprocess
from brainfm.store.check import check_store


def _fif(path: Path, data: np.ndarray, sfreq: float = 250.0, fmt: str = "single") -> Path:
    info = mne.create_info([f"C{i}" for i in range(len(data))], sfreq, "eeg")
    mne.io.RawArray(data, info, verbose=False).save(path, fmt=fmt, verbose=False)
    return path


def _failed(summary) -> dict[str, str]:
    return {Path(f["path"]).name: f["error"] for f in summary.failed}


@pytest.mark.parametrize(("sfreq", "shown"), [(0.5, "0.5 Hz"), (2e6, "2e+06 Hz")])
def test_absurd_sampling_rate_is_refused_when_the_file_opens(tmp_path, sfreq, shown):
    # 0.5 Hz: resampling to 256 Hz ran for minutes (1.6e-6 Hz asked for 119 GiB); 2 MHz left
    # a handful of samples after resampling
    folder = tmp_path / "in"
    folder.mkdir()
    _fif(folder / "rate_raw.fif", np.random.default_rng(0).standard_normal((3, 400)) * 1e-5, sfreq=sfreq)
    summary = preprocess(folder, tmp_path / "s.zarr")
    error = _failed(summary)["rate_raw.fif"]
    assert f"declares a sampling rate of {shown}, outside the 1 Hz to 1e+06 Hz" in error
    assert "rate_raw.fif" in error and summary.processed == []
    assert check_store(open_store(tmp_path / "s.zarr")) == {}


def test_truncated_fif_samples_are_a_read_error(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    path = _fif(folder / "cut_raw.fif", np.random.default_rng(1).standard_normal((4, 5000)) * 1e-5)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    error = _failed(preprocess(folder, tmp_path / "s.zarr"))["cut_raw.fif"]
    # before: "cut_raw.fif: ValueError: buffer size must be a multiple of element size"
    assert error.startswith("cut_raw.fif: reading its samples from ")
    assert "truncated or damaged" in error and "ValueError" in error


def test_values_beyond_float32_are_non_finite_samples(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = np.random.default_rng(2).standard_normal((4, 2500)) * 1e-5
    data[1, 10:20] = 1e39  # finite in the float64 file, infinite once stored as float32
    _fif(folder / "huge_raw.fif", data, fmt="double")
    summary = preprocess(folder, tmp_path / "s.zarr")
    error = _failed(summary)["huge_raw.fif"]
    assert "10 non-finite samples (NaN or inf, or beyond the float32 range) in 1 channel(s) ['C1']" in error
    assert check_store(open_store(tmp_path / "s.zarr")) == {}


def test_steps_that_overflow_float32_are_refused_before_writing(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = np.random.default_rng(3).standard_normal((4, 2500)) * 1e-5
    data[2] = np.where(np.arange(2500) % 500 < 250, 3.3e38, -3.3e38)  # float32 holds it, filters overshoot
    _fif(folder / "edge_raw.fif", data)
    summary = preprocess(folder, tmp_path / "s.zarr")
    error = _failed(summary)["edge_raw.fif"]
    assert "produced non-finite values in 1 channel(s) ['C2']" in error and "edge_raw.fif" in error
    assert summary.processed == [] and check_store(open_store(tmp_path / "s.zarr")) == {}


def test_eeglab_fdt_shorter_than_the_set_declares(tmp_path, shared_data):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("test_raw_chanloc.set", "test_raw_chanloc.fdt"):
        shutil.copyfile(shared_data / "eeg" / "eeglab" / name, folder / name)
    fdt = folder / "test_raw_chanloc.fdt"
    fdt.write_bytes(fdt.read_bytes()[:50_000])
    error = _failed(preprocess(folder, tmp_path / "s.zarr"))["test_raw_chanloc.set"]
    # before: "RuntimeError: Incorrect number of samples (...), please report this error to MNE"
    assert "declares 61 channels x 385 points" in error and "test_raw_chanloc.fdt holds 50000 bytes (53%)" in error


def test_a_bare_assertion_in_a_reader_names_the_failed_check(tmp_path, shared_data):
    folder = tmp_path / "in"
    folder.mkdir()
    data = bytearray((shared_data / "meg" / "kit" / "test.sqd").read_bytes())
    data[:512] = bytes(512)  # the KIT directory, zeroed
    (folder / "test.sqd").write_bytes(bytes(data))
    error = _failed(preprocess(folder, tmp_path / "s.zarr"))["test.sqd"]
    # before: "... with mne.io.read_raw_kit: AssertionError. The file may be damaged ..."
    assert re.search(r"read_raw_kit: AssertionError in mne/io/kit/kit\.py line \d+: assert \S", error), error
