"""Fixtures of the engine tests: a tiny real EEG store (three eegmat subjects, 20 s at 256 Hz)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_RECIPE = """\
name: engine-tests
description: eegmat EEG, the first 20 s at 256 Hz.
pick:
  types: [eeg]
crop: {tmin_s: 0.0, tmax_s: 20.0}
steps:
  - resample: {sfreq: 256, method: polyphase}
  - units: {on_implausible: warn}
"""


@pytest.fixture(scope="session")
def tiny_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three subjects of eegmat (20 EEG channels), 20 s each at 256 Hz, made by ``preprocess``."""
    from brainfm.preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("engine")
    folder = root / "eegmat"
    folder.mkdir()
    for subject in ("00", "01", "02"):
        shutil.copy(shared_data / "eeg" / "eegmat" / f"Subject{subject}_2.edf", folder)
    (root / "engine-tests.yaml").write_text(TINY_RECIPE)
    store = root / "store"
    summary = preprocess(folder, store, recipe=root / "engine-tests.yaml", dataset="eegmat",
                         pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)")
    assert summary.failed == [] and len(summary.processed) == 3, summary.failed
    return store


@pytest.fixture(scope="session")
def tiny_ieeg_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BIDS ECoG recording (78 contacts, 21.7 s) through the ``barista`` recipe: 2048 Hz, regions."""
    from brainfm.preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("ieeg")
    shutil.copytree(shared_data / "bids" / "ieeg-ecog", root / "ieeg-ecog")
    summary = preprocess(root / "ieeg-ecog", root / "store", recipe="barista")
    assert summary.failed == [] and len(summary.processed) == 1, summary.failed
    return root / "store"
