"""Shared fixtures: the real recordings in ../shared/data, synthetic MNE data, logging hygiene."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import brainfm._logging  # noqa: F401 - configure the brainfm logger once, before any test

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("BRAINFM_TEST_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real test recordings; tests using it skip when it is absent."""
    path = _shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"real test recordings not found at {path} (set BRAINFM_TEST_DATA to their folder)")
    return path


@pytest.fixture(scope="session")
def eegmat_run2_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four eegmat subjects (00-03, run 2, ~60 s, 20 EEG channels) preprocessed with the ``brainomni``
    recipe (256 Hz); read-only for the tests that share it."""
    import shutil

    from brainfm.preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("eegmat_run2")
    folder = root / "eegmat"
    folder.mkdir()
    subjects = ("00", "01", "02", "03")
    for subject in subjects:
        source = shared_data / "eeg" / "eegmat" / f"Subject{subject}_2.edf"
        if not source.is_file():
            pytest.skip(f"{source} not found")
        shutil.copy(source, folder)
    summary = preprocess(folder, root / "eeg.zarr", recipe="brainomni", dataset="eegmat",
                         pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)", progress=False)
    assert summary.failed == [] and len(summary.processed) == len(subjects), summary.failed
    return root / "eeg.zarr"


@pytest.fixture(autouse=True)
def _check_log_level():
    """Fail a test that leaves the brainfm logger at another level than it found."""
    logger = logging.getLogger("brainfm")
    level = logger.level
    yield
    assert logger.level == level, f"test changed the brainfm log level from {level} to {logger.level}"
