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
    """Write recordings into a fresh store with small chunks (``chunk_mib`` 0.004: 256 samples for 4 channels).

    ``compression`` is the signal codec (``"lz4"``, the writer's default, ``"zstd"`` or ``"none"``).
    """
    counter = iter(range(1000))

    def make(recordings: Sequence[Recording], chunk_mib: float = 0.004, compression: str = "lz4") -> Path:
        path = tmp_path / f"store{next(counter)}"
        writer = StoreWriter(path)
        for recording in recordings:
            writer.write(recording, chunk_mib=chunk_mib, compression=compression)
        return path

    return make


#: Ingest recipe of the real-data store: every modality at one sampling rate, so that the
#: loader can batch EEG, MEG and iEEG together (written with the default codec, lz4).
REAL_RECIPE = """\
name: loading-tests
description: EEG, MEG and iEEG channels resampled to 160 Hz.
pick:
  types: [eeg, mag, grad, seeg, ecog]
steps:
  - resample: {sfreq: 160, method: polyphase}
  - units: {on_implausible: warn}
"""
#: The same for the 125-s EEG file, keeping its first minute (crop needs a tmax inside the file).
REAL_RECIPE_EEG = """\
extends: loading-tests.yaml
name: loading-tests-eeg
crop: {tmin_s: 0.0, tmax_s: 60.0}
"""


@pytest.fixture(scope="session")
def real_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of real EEG (eegmmidb), MEG (Elekta FIF) and iEEG (ECoG/sEEG FIF) at 160 Hz,
    made by the ingest pipeline (:func:`brainfm.preprocessing.run.preprocess`)."""
    import shutil

    from brainfm.preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("real")
    (root / "loading-tests.yaml").write_text(REAL_RECIPE)
    (root / "loading-tests-eeg.yaml").write_text(REAL_RECIPE_EEG)
    store = root / "store"
    inputs = {
        "eegmmidb": (shared_data / "eeg" / "eegmmidb" / "S001R03.edf", "loading-tests-eeg.yaml",
                     r"S(?P<subject>\d+)R(?P<run>\d+)"),
        "erm": (shared_data / "meg" / "fif" / "test_move_anon_erm_raw.fif", "loading-tests.yaml", None),
        "ecog": (shared_data / "ieeg" / "fif" / "sample_ecog_ieeg.fif", "loading-tests.yaml", None),
    }
    for dataset, (file, recipe, pattern) in inputs.items():
        folder = root / dataset
        folder.mkdir()
        shutil.copy(file, folder / file.name)
        summary = preprocess(folder, store, recipe=root / recipe, dataset=dataset, pattern=pattern)
        assert summary.failed == [] and len(summary.processed) == 1, summary.failed
    return store


@pytest.fixture
def make_recording() -> Callable[..., Recording]:
    """:func:`synthetic_recording` as a fixture (test modules cannot import conftest)."""
    return synthetic_recording
