"""Fixtures of the loading tests: small synthetic stores, and a real EEG + MEG + iEEG store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.store import StoreWriter


def synthetic_recording(
    dataset: str = "syn",
    subject: str = "01",
    run: str | None = None,
    *,
    n_channels: int = 4,
    n_times: int = 1000,
    sfreq: float = 100.0,
    types: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    bad: Sequence[int] = (),
    events: list[tuple[float, float, str]] | None = None,
    path: str | None = None,
) -> Recording:
    """A recording whose sample (c, t) is ``c * 10000 + t``, so every window can be checked exactly."""
    types = list(types) if types is not None else ["eeg"] * n_channels
    names = list(names) if names is not None else [f"X{c}" for c in range(n_channels)]
    signal = (np.arange(n_channels)[:, None] * 10000 + np.arange(n_times)[None, :]).astype(np.float32)
    channels = empty_channel_table(names, types)
    for c in bad:
        channels.loc[c, "status"] = "bad"
        channels.loc[c, "status_reason"] = "noisy"
    table = pd.DataFrame(events or [], columns=["onset_s", "duration_s", "description"])
    if table.empty:
        table = pd.DataFrame({"onset_s": np.zeros(0), "duration_s": np.zeros(0), "description": np.array([], dtype=object)})
    source = {"path": path or f"/data/{dataset}/{subject}_{run or 1}.edf", "relpath": "", "size": 0, "sha256": ""}
    return Recording(signal, sfreq, Identity(dataset, subject=subject, run=run), channels, table, source=source)


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """Write recordings into a fresh store with small chunks (``chunk_mib`` 0.004: 256 samples for 4 channels)."""
    counter = iter(range(1000))

    def make(recordings: Sequence[Recording], chunk_mib: float = 0.004) -> Path:
        path = tmp_path / f"store{next(counter)}"
        writer = StoreWriter(path)
        for recording in recordings:
            writer.write(recording, chunk_mib=chunk_mib)
        return path

    return make


def _mne_to_recording(raw, dataset: str, subject: str, path: Path) -> Recording:
    """Test helper (not the ingest pipeline): an MNE Raw -> Recording, geometry from ``loc``."""
    from brainfm.data.channel_names import canonical_eeg_name

    types = raw.get_channel_types()
    keep = [i for i, t in enumerate(types) if t in ("eeg", "mag", "grad", "seeg", "ecog")]
    raw = raw.copy().pick(keep)
    types = raw.get_channel_types()
    names = [canonical_eeg_name(n) or n if t == "eeg" else n for n, t in zip(raw.ch_names, types, strict=True)]
    if len(set(names)) != len(names):
        names = raw.ch_names
    channels = empty_channel_table(names, types)
    channels["orig_name"] = raw.ch_names
    locs = np.array([ch["loc"] for ch in raw.info["chs"]])
    channels[["x", "y", "z"]] = np.where(np.isfinite(locs[:, :3]), locs[:, :3], np.nan)
    for i, ch in enumerate(raw.info["chs"]):
        if types[i] in ("mag", "grad"):
            text = str(ch["coil_type"])  # e.g. "3012 (FIFFV_COIL_VV_PLANAR_T1)"
            coil = text[text.find("(") + 1 : text.rfind(")")] if "(" in text else text
            planar = "PLANAR" in coil.upper()
            channels.loc[i, "coil_type"] = coil
            channels.loc[i, ["ox", "oy", "oz"]] = locs[i, 9:12]
            if planar:
                channels.loc[i, ["gx", "gy", "gz"]] = locs[i, 3:6]
        if raw.ch_names[i] in raw.info["bads"]:
            channels.loc[i, "status"] = "bad"
    signal = raw.get_data().astype(np.float32)
    return Recording(signal, raw.info["sfreq"], Identity(dataset, subject=subject), channels,
                     source={"path": str(path), "relpath": path.name, "size": 0, "sha256": ""})


@pytest.fixture(scope="session")
def real_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of real EEG (eegmmidb), MEG (Elekta FIF) and iEEG (ECoG/sEEG FIF), all at 160 Hz."""
    import mne

    path = tmp_path_factory.mktemp("real") / "store"
    writer = StoreWriter(path)
    eeg_file = shared_data / "eeg" / "eegmmidb" / "S001R03.edf"
    raw = mne.io.read_raw_edf(eeg_file, preload=True, verbose="error")
    raw.crop(0, 60)
    writer.write(_mne_to_recording(raw, "eegmmidb", "001", eeg_file))
    meg_file = shared_data / "meg" / "fif" / "test_move_anon_erm_raw.fif"
    raw = mne.io.read_raw_fif(meg_file, allow_maxshield=True, preload=True, verbose="error")
    raw.pick(["meg"]).resample(160.0, verbose="error")
    writer.write(_mne_to_recording(raw, "erm", "meg01", meg_file))
    ieeg_file = shared_data / "ieeg" / "fif" / "sample_ecog_ieeg.fif"
    raw = mne.io.read_raw_fif(ieeg_file, preload=True, verbose="error")
    writer.write(_mne_to_recording(raw, "ecog", "ieeg01", ieeg_file))
    return path


@pytest.fixture
def make_recording() -> Callable[..., Recording]:
    """:func:`synthetic_recording` as a fixture (test modules cannot import conftest)."""
    return synthetic_recording
