"""How each recording's subject was derived is recorded at ingest and shown by `store info`."""

from __future__ import annotations

import shutil

import pytest

from brainfm.errors import ConfigError
from brainfm.preprocessing.discover import discover


def test_discovery_says_where_each_subject_comes_from(shared_data, tmp_path):
    sources = {s.path.relative_to(shared_data).as_posix(): s for s in discover(shared_data).sources}
    assert sources["bids/tiny-eeg/sub-01/ses-eeg/eeg/sub-01_ses-eeg_task-rest_eeg.vhdr"].subject_source == "bids"
    persyst = sources["ieeg/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay"]
    assert (persyst.identity.subject, persyst.subject_source) == ("pt1", "filename")
    plain = sources["eeg/eegmmidb/S001R03.edf"]
    assert (plain.identity.subject, plain.subject_source) == (None, "recording")
    eegmmidb = discover(shared_data / "eeg" / "eegmmidb", pattern=r"S(?P<subject>\d+)R(?P<run>\d+)").sources
    assert {(s.identity.subject, s.subject_source) for s in eegmmidb} == {("001", "pattern")}
    # a pattern without a subject group leaves the subject unknown
    runs_only = discover(shared_data / "eeg" / "eegmmidb", pattern=r"R(?P<run>\d+)").sources
    assert {s.subject_source for s in runs_only} == {"recording"}


@pytest.mark.slow
def test_store_info_shows_subject_sources_and_the_split_refuses_unknown_ones(tmp_path):
    from importlib.resources import files

    from brainfm.cli.store_cmd import _info_table
    from brainfm.loading import WindowDataModule
    from brainfm.preprocessing.run import preprocess
    from brainfm.store import open_store
    from brainfm.store.summary import store_info

    folder = tmp_path / "eegmmidb"
    folder.mkdir()
    for name in ("S001R03.edf", "S001R04.edf"):
        shutil.copy(files("brainfm") / "sample_data" / "eegmmidb" / name, folder / name)
    plain = tmp_path / "plain.zarr"
    assert preprocess(folder, plain).exit_status == 0
    info = store_info(open_store(plain))
    assert [row["subject_source"] for row in info["recordings"]] == ["recording", "recording"]
    assert info["subject_sources"] == {"recording": 2}
    table = _info_table(info)
    assert "- (recording)" in table and "subjects of 2 recordings: recording, no subject" in table
    # both runs are one person: a subject split must not put one in training and one in validation
    with pytest.raises(ConfigError, match="eegmmidb_S001R03, eegmmidb_S001R04.*--pattern"):
        WindowDataModule(plain, window_s=2.0, val_fraction=0.5).setup("fit")

    named = tmp_path / "named.zarr"
    assert preprocess(folder, named, pattern=r"S(?P<subject>\d+)R(?P<run>\d+)").exit_status == 0
    info = store_info(open_store(named))
    assert info["subject_sources"] == {"pattern": 2}
    assert "001 (pattern)" in _info_table(info)
    data = WindowDataModule(named, window_s=2.0, val_fraction=0.5)
    data.setup("fit")  # one known subject: all of it on one side
    assert data.n_subjects == 1 and len(data.split("train")) + len(data.split("val")) == len(data.index)
