"""git-annex/DataLad placeholders: a clone whose data were never fetched fails loudly, with the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from brainfm.errors import ContentNotFetchedError
from brainfm.preprocessing.discover import discover
from brainfm.preprocessing.placeholders import find_placeholders, placeholder_kind
from brainfm.preprocessing.run import preprocess

KEY = "SHA256E-s2000--0123456789abcdef.edf"


def _annex_link(path: Path, key: str, clone: Path) -> None:
    """A locked git-annex file: a relative link into .git/annex/objects whose object is absent."""
    target = clone / ".git" / "annex" / "objects" / "Xx" / "Yy" / key / key
    path.symlink_to(Path("../" * (len(path.relative_to(clone).parts) - 1)) / target.relative_to(clone))


@pytest.fixture()
def clone(shared_data, tmp_path) -> Path:
    """A fake fresh clone: BIDS data files and a plain BrainVision .eeg as annex links, an EDF and
    an EEGLAB .fdt as pointer files (unlocked), one fetched EDF, and a broken ordinary link."""
    clone = tmp_path / "ds"
    (clone / ".git" / "annex" / "objects").mkdir(parents=True)
    bids = clone / "bids"
    (bids / "sub-01" / "eeg").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    _annex_link(bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.edf", KEY, clone)
    (bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.json").write_text('{"SamplingFrequency": 160}')
    plain = clone / "plain"
    plain.mkdir()
    for name in ("bv_dig_test.vhdr", "bv_dig_test.vmrk"):
        shutil.copy(shared_data / "eeg" / "brainvision" / name, plain / name)
    _annex_link(plain / "bv_dig_test.eeg", "SHA256E-s9--1.eeg", clone)
    (plain / "S001R04.edf").write_text(f"/annex/objects/{KEY}\n")  # an unlocked pointer file
    shutil.copy(shared_data / "eeg" / "eeglab" / "test_raw_chanloc.set", plain / "chanloc.set")
    (plain / "chanloc.fdt").write_text("../.git/annex/objects/Aa/Bb/SHA256E-s7--2.fdt/SHA256E-s7--2.fdt")
    shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", plain / "S001R03.edf")  # fetched
    (plain / "notes.edf").symlink_to(tmp_path / "elsewhere" / "notes.edf")
    return clone


def test_placeholder_kinds(clone):
    plain = clone / "plain"
    assert placeholder_kind(plain / "bv_dig_test.eeg") == "annex"
    assert placeholder_kind(plain / "S001R04.edf") == "annex"
    assert placeholder_kind(plain / "chanloc.fdt") == "annex"
    assert placeholder_kind(plain / "notes.edf") == "broken_link"
    assert placeholder_kind(plain / "S001R03.edf") is None and placeholder_kind(plain / "bv_dig_test.vhdr") is None
    assert len(find_placeholders(clone)) == 5  # nothing under .git


def test_discovery_reports_every_recording_without_content(clone):
    discovery = discover(clone)
    assert [s.relpath for s in discovery.sources] == ["plain/S001R03.edf"]
    problems = {Path(path).relative_to(clone).as_posix(): error for path, error in discovery.problems}
    assert set(problems) == {
        "bids/sub-01/eeg/sub-01_task-rest_eeg.edf", "plain/bv_dig_test.vhdr", "plain/S001R04.edf",
        "plain/chanloc.set", "plain/notes.edf",
    }
    assert all(isinstance(e, ContentNotFetchedError) for e in problems.values())
    bv = str(problems["plain/bv_dig_test.vhdr"])
    assert "git-annex placeholders whose content was never fetched (plain/bv_dig_test.eeg)" in bv
    assert "`datalad get plain/bv_dig_test.eeg`" in bv and "`git annex get plain/bv_dig_test.eeg`" in bv
    assert "datalad get bids/sub-01/eeg/sub-01_task-rest_eeg.edf" in str(problems["bids/sub-01/eeg/sub-01_task-rest_eeg.edf"])
    assert "datalad get plain/chanloc.fdt" in str(problems["plain/chanloc.set"])
    assert "symbolic links to files that do not exist (plain/notes.edf -> " in str(problems["plain/notes.edf"])


def test_a_fresh_clone_fails_with_the_fetch_command(clone, tmp_path):
    (clone / "plain" / "S001R03.edf").unlink()  # nothing fetched at all
    summary = preprocess(clone, tmp_path / "s.zarr")
    assert summary.processed == [] and summary.exit_status == 1
    assert len(summary.failed) == 5 and all("not here" in f["error"] for f in summary.failed)
    bids_only = preprocess(clone / "bids", tmp_path / "s2.zarr")  # used to be "0 stored", exit 0
    assert bids_only.exit_status == 1 and "datalad get" in bids_only.failed[0]["error"]
