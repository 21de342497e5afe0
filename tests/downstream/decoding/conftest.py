"""Fixtures of the decoding tests: small real stores of the three shipped tasks' datasets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

RECIPE = """\
name: decoding-tests
description: EEG only, cropped, at 128 Hz (small and fast).
pick:
  types: [eeg]
{crop}steps:
  - resample: {{sfreq: 128, method: polyphase}}
  - units: {{on_implausible: warn}}
"""


def _store(root: Path, files: list[Path], pattern: str, dataset: str, tmax: float | None, layout: str = "flat") -> Path:
    from brainfm.preprocessing.run import preprocess

    folder = root / dataset
    for file in files:
        target = folder / (file.parent.name if layout == "nested" else "") / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(file, target)
        events = file.with_name(file.name.replace("_raw.fif", "-eve.fif"))
        if events.is_file() and events != file:
            shutil.copy(events, target.with_name(events.name))
    crop = f"crop: {{tmin_s: 0.0, tmax_s: {tmax}}}\n" if tmax is not None else ""
    (root / "recipe.yaml").write_text(RECIPE.format(crop=crop))
    store = root / f"{dataset}_store"
    summary = preprocess(folder, store, recipe=root / "recipe.yaml", dataset=dataset, pattern=pattern)
    assert summary.failed == [], summary.failed
    return store


@pytest.fixture(scope="session")
def eegmat_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """eegmat subjects 00-02, rest and arithmetic, the first 24 s of each at 128 Hz."""
    files = [shared_data / "eeg" / "eegmat" / f"Subject{s}_{k}.edf" for s in ("00", "01", "02") for k in (1, 2)]
    return _store(tmp_path_factory.mktemp("eegmat"), files, r"Subject(?P<subject>\d+)_(?P<task>\d)", "eegmat", 24.0)


@pytest.fixture(scope="session")
def ssvep_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SSVEP subjects 01 and 02, both runs (32 trials each), at 128 Hz."""
    files = sorted((shared_data / "eeg" / "ssvep-exo").glob("subject0[12]/*_raw.fif"))
    return _store(tmp_path_factory.mktemp("ssvep"), files,
                  r"subject(?P<subject>\d+)/record-\[(?P<session>[0-9.]+)-(?P<run>[0-9.]+)\]", "ssvep", None,
                  layout="nested")


@pytest.fixture(scope="session")
def eegmmidb_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EEGMMIDB subject 1, imagery run 4 (left/right fist) and executed run 3, whole, at 128 Hz."""
    files = [shared_data / "eeg" / "eegmmidb" / f"S001R0{r}.edf" for r in (3, 4)]
    return _store(tmp_path_factory.mktemp("mmi"), files, r"S(?P<subject>\d+)R(?P<run>\d+)", "eegmmidb", 130.0)
