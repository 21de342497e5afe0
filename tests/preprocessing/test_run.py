"""preprocess(): whole folders into a store, skipping, sharding, workers, bad input, kills."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mne
import numpy as np
import pytest

from brainfm import open_store
from brainfm.errors import ConfigError
from brainfm.preprocessing.run import hash_files, parse_shard, preprocess
from brainfm.store.check import check_store


@pytest.fixture()
def small_folder(shared_data, tmp_path) -> Path:
    """Three EEGMMIDB runs, one truncated EDF, one text file posing as EDF, a README."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("S001R03.edf", "S001R04.edf", "S001R06.edf"):
        shutil.copy(shared_data / "eeg" / "eegmmidb" / name, folder / name)
    shutil.copy(shared_data / "corrupt" / "truncated_S001R05.edf", folder / "S001R05.edf")
    shutil.copy(shared_data / "corrupt" / "not_really.edf", folder / "S001R07.edf")
    (folder / "README.txt").write_text("notes")
    return folder


PATTERN = r"S(?P<subject>\d+)R(?P<run>\d+)"


def test_folder_with_bad_files_stores_the_rest(small_folder, tmp_path):
    summary = preprocess(small_folder, tmp_path / "s.zarr", pattern=PATTERN, dataset="mmi")
    assert summary.processed == ["mmi_sub-001_run-03", "mmi_sub-001_run-04", "mmi_sub-001_run-06"]
    assert summary.exit_status == 1
    failed = {Path(f["path"]).name: f["error"] for f in summary.failed}
    assert set(failed) == {"S001R05.edf", "S001R07.edf"}
    assert "truncated" in failed["S001R05.edf"] and "125" in failed["S001R05.edf"]
    assert "not a valid EDF" in failed["S001R07.edf"]
    assert summary.ignored == {".txt": 1}
    store = open_store(tmp_path / "s.zarr")
    assert list(store) == summary.processed
    assert {Path(f["path"]).name for f in store.failed} == {"S001R05.edf", "S001R07.edf"}
    rec = store["mmi_sub-001_run-04"]
    assert (rec.subject, rec.run, rec.sfreq) == ("001", "04", 256.0)
    assert rec.n_channels == 64 and rec.channels["pos_source"].eq("template").all()
    assert rec.events["description"].value_counts().to_dict() == {"T0": 15, "T1": 8, "T2": 7}
    assert rec.provenance["recipe"] == "default"
    assert [s["step"] for s in rec.provenance["steps"]][:3] == ["inspect", "resample", "notch"]
    assert check_store(store) == {}
    json_summary = summary.to_json()
    assert set(json_summary) >= {"store", "processed", "skipped", "failed"}
    assert set(json_summary["failed"][0]) == {"path", "error"}


def test_rerun_skips_unchanged_and_redoes_changed(small_folder, tmp_path):
    for name in ("S001R05.edf", "S001R07.edf"):
        (small_folder / name).unlink()
    store = tmp_path / "s.zarr"
    first = preprocess(small_folder, store, pattern=PATTERN)
    assert len(first.processed) == 3
    second = preprocess(small_folder, store, pattern=PATTERN)
    assert second.processed == [] and second.skipped == first.processed
    # touched but identical: re-hashed (stamps differ), still skipped
    os.utime(small_folder / "S001R03.edf", ns=(1_000_000_000, 1_000_000_000))
    assert preprocess(small_folder, store, pattern=PATTERN).skipped == first.processed
    stamps = open_store(store)["mixed_sub-001_run-03"].source["stamps"]
    assert stamps[0][2] == 1_000_000_000  # the new stamp was remembered
    # a changed source file is processed again
    data = bytearray((small_folder / "S001R06.edf").read_bytes())
    data[100_000:100_010] = bytes(255 - b for b in data[100_000:100_010])  # signal samples
    (small_folder / "S001R06.edf").write_bytes(bytes(data))
    third = preprocess(small_folder, store, pattern=PATTERN)
    assert [rid[-6:] for rid in third.processed] == ["run-06"]
    # a changed recipe processes everything again
    recipe = tmp_path / "r.yaml"
    recipe.write_text("extends: default\nname: other\nwrite: {compression: zstd, clevel: 3}\n")
    fourth = preprocess(small_folder, store, pattern=PATTERN, recipe=recipe)
    assert len(fourth.processed) == 3


def test_shards_are_disjoint_and_complete(small_folder, tmp_path):
    store = tmp_path / "s.zarr"
    parts = [preprocess(small_folder, store, pattern=PATTERN, shard=f"{i}/2") for i in range(2)]
    stored = [set(p.processed) for p in parts]
    assert not stored[0] & stored[1]
    assert len(stored[0] | stored[1]) == 3 == len(open_store(store))
    failures = [{f["path"] for f in p.failed} for p in parts]
    assert not failures[0] & failures[1] and len(failures[0] | failures[1]) == 2


@pytest.mark.slow
def test_two_jobs_give_the_same_store_as_one(small_folder, tmp_path):
    one = preprocess(small_folder, tmp_path / "one.zarr", pattern=PATTERN, jobs=1)
    two = preprocess(small_folder, tmp_path / "two.zarr", pattern=PATTERN, jobs=2)
    assert one.processed == two.processed and len(two.failed) == 2
    a, b = open_store(tmp_path / "one.zarr"), open_store(tmp_path / "two.zarr")
    for rid in a:
        np.testing.assert_array_equal(a[rid].signal[:], b[rid].signal[:])


def test_duplicate_ids_get_their_own_message(small_folder, tmp_path):
    summary = preprocess(small_folder, tmp_path / "s.zarr", pattern=r"S(?P<subject>\d+)")
    duplicates = [f for f in summary.failed if f["error_type"] == "DuplicateRecordingError"]
    assert len(duplicates) >= 2
    assert all("--pattern" in f["error"] for f in duplicates)
    assert len(summary.processed) == 1


def _fif(path: Path, data: np.ndarray, types: list[str], sfreq: float = 250.0) -> None:
    info = mne.create_info([f"C{i}" for i in range(len(types))], sfreq, types)
    mne.io.RawArray(data, info, verbose=False).save(path, verbose=False)


def test_non_finite_and_no_data_channels(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 2500)) * 1e-5
    data[2, 100:110] = np.nan
    _fif(folder / "nan_raw.fif", data, ["eeg"] * 4)
    _fif(folder / "stim_raw.fif", np.zeros((2, 2500)), ["stim", "misc"])
    _fif(folder / "good_raw.fif", rng.standard_normal((4, 2500)) * 1e-5, ["eeg"] * 4)
    summary = preprocess(folder, tmp_path / "s.zarr")
    errors = {Path(f["path"]).name: f["error"] for f in summary.failed}
    assert "10 non-finite samples" in errors["nan_raw.fif"] and "C2" in errors["nan_raw.fif"]
    assert "on_nonfinite: bad_channel" in errors["nan_raw.fif"]
    assert "no EEG, MEG or iEEG channel" in errors["stim_raw.fif"] and "override" in errors["stim_raw.fif"]
    assert summary.processed == ["in_good_raw"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("extends: default\non_nonfinite: bad_channel\n")
    again = preprocess(folder, tmp_path / "s2.zarr", recipe=recipe)
    assert "in_nan_raw" in again.processed
    channels = open_store(tmp_path / "s2.zarr")["in_nan_raw"].channels
    assert channels.loc[2, "status"] == "bad" and channels.loc[2, "status_reason"] == "non-finite samples"


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        preprocess(tmp_path / "missing", tmp_path / "s.zarr")
    with pytest.raises(ConfigError, match="Unknown recipe 'defualt'.*Did you mean 'default'"):
        preprocess(tmp_path, tmp_path / "s.zarr", recipe="defualt")
    with pytest.raises(ConfigError, match="I/N"):
        parse_shard("3")
    with pytest.raises(ConfigError, match=r"\[0, N-1\]"):
        parse_shard("2/2")
    assert parse_shard("1/4") == (1, 4)


def test_hash_covers_every_file_of_a_recording(tmp_path):
    (tmp_path / "a.vhdr").write_text("h")
    (tmp_path / "a.eeg").write_bytes(b"1234")
    before = hash_files([tmp_path / "a.vhdr", tmp_path / "a.eeg"])
    (tmp_path / "a.eeg").write_bytes(b"1235")
    assert hash_files([tmp_path / "a.vhdr", tmp_path / "a.eeg"]) != before
    folder = tmp_path / "x.ds"
    folder.mkdir()
    (folder / "x.meg4").write_bytes(b"a")
    first = hash_files([folder])
    (folder / "x.meg4").write_bytes(b"b")
    assert hash_files([folder]) != first


@pytest.mark.slow
def test_killed_run_leaves_nothing_visible_and_next_run_completes(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    # big enough that writing takes a noticeable time
    data = rng.standard_normal((64, 600 * 500)).astype(np.float32) * 1e-5
    _fif(folder / "big_raw.fif", data, ["eeg"] * 64, sfreq=500.0)
    store = tmp_path / "s.zarr"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: plain\nsteps: []\n")  # no resampling: the write is the long part
    process = subprocess.Popen(
        [sys.executable, "-m", "brainfm.cli.main", "preprocess", str(folder), str(store), "--config", str(recipe), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,  # not the checkout (see test_cli)
    )
    group = store / "recordings" / "in_big_raw" / "zarr.json"
    deadline = time.time() + 120
    while not group.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed = open_store(store)
    assert list(killed) == [] and killed.incomplete == ["in_big_raw"]
    summary = preprocess(folder, store, recipe=recipe)
    assert summary.processed == ["in_big_raw"]
    stored = open_store(store)
    assert list(stored) == ["in_big_raw"] and stored.incomplete == []
    np.testing.assert_array_equal(stored["in_big_raw"].signal[:, :1000], data[:, :1000])


def test_recordings_of_types_the_recipe_drops_are_excluded_not_failed(shared_data, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(shared_data / "ieeg" / "fif" / "sample_ecog_ieeg.fif", folder)
    shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", folder)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe="brainomni")
    assert summary.exit_status == 0 and summary.failed == []
    assert summary.processed == ["mixed_S001R03"]
    assert [Path(e["path"]).name for e in summary.excluded] == ["sample_ecog_ieeg.fif"]
    assert "ecog" in summary.excluded[0]["reason"] and "brainomni" in summary.excluded[0]["reason"]
    assert summary.to_json()["excluded"][0]["path"].endswith("sample_ecog_ieeg.fif")
    assert "1 excluded by the recipe" in summary.table()


def test_crop_window_is_clipped_to_the_recording(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = np.random.default_rng(0).standard_normal((4, 2500)) * 1e-5
    _fif(folder / "ten_raw.fif", data, ["eeg"] * 4)  # 10 s at 250 Hz
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: crop\ncrop: {tmin_s: 2.0, tmax_s: 60.0}\nsteps: []\n")
    summary = preprocess(folder, tmp_path / "s.zarr", recipe=recipe)
    assert summary.failed == []
    stored = open_store(tmp_path / "s.zarr")["in_ten_raw"]
    assert stored.n_times == 2000
    np.testing.assert_allclose(stored.signal[:], data[:, 500:].astype(np.float32))
    recipe.write_text("name: crop\ncrop: {tmin_s: 2.0, tmax_s: 6.0}\nsteps: []\n")
    preprocess(folder, tmp_path / "s2.zarr", recipe=recipe)
    assert open_store(tmp_path / "s2.zarr")["in_ten_raw"].n_times == 1000


def _dies_on_run_04(source, recipe, store, config_hash, *rest):
    """Stands in for the worker body: the process dies (as if killed) on one recording."""
    if source.relpath.endswith("S001R04.edf"):
        os._exit(9)
    return _original_process_one(source, recipe, store, config_hash, *rest)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or sys.version_info >= (3, 12), reason="the patch reaches workers by fork")
def test_a_dying_worker_fails_only_its_recording(small_folder, tmp_path, monkeypatch):
    import brainfm.preprocessing.run as run_module

    global _original_process_one
    _original_process_one = run_module._process_one
    _dies_on_run_04.__module__, _dies_on_run_04.__qualname__ = run_module.__name__, "_process_one"
    monkeypatch.setattr(run_module, "_process_one", _dies_on_run_04)
    for name in ("S001R05.edf", "S001R07.edf"):
        (small_folder / name).unlink()
    summary = preprocess(small_folder, tmp_path / "s.zarr", pattern=PATTERN, jobs=2, dataset="mmi")
    assert summary.processed == ["mmi_sub-001_run-03", "mmi_sub-001_run-06"]
    assert [f["recording_id"] for f in summary.failed] == ["mmi_sub-001_run-04"]
    assert "died" in summary.failed[0]["error"] and "--jobs 1" in summary.failed[0]["error"]
    assert [Path(f["path"]).name for f in open_store(tmp_path / "s.zarr").failed] == ["S001R04.edf"]


# --- silent acceptance that must be an error (issue 6, items 1, 2, 5) ---------------------------

def test_zero_byte_data_file_and_empty_edf_fail_and_store_nothing(shared_data, tmp_path):
    """A BrainVision .eeg of 0 bytes, and an EDF whose header declares no data, used to be stored
    as 0.0-second recordings with every channel bad."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("bv_dig_test.vhdr", "bv_dig_test.vmrk"):
        shutil.copy(shared_data / "eeg" / "brainvision" / name, folder / name)
    (folder / "bv_dig_test.eeg").write_bytes(b"")
    header = (shared_data / "eeg" / "eegmmidb" / "S001R03.edf").read_bytes()
    n_header = int(header[184:192])
    empty_edf = bytearray(header[:n_header])
    empty_edf[236:244] = b"0       "  # no data record, as the header says
    (folder / "S001R04.edf").write_bytes(bytes(empty_edf))
    summary = preprocess(folder, tmp_path / "s.zarr")
    assert summary.processed == [] and summary.exit_status == 1
    errors = {Path(f["path"]).name: f["error"] for f in summary.failed}
    assert "its file bv_dig_test.eeg is empty (0 bytes)" in errors["bv_dig_test.vhdr"]
    assert "S001R04.edf holds no data: its header declares 0 data records (0 s)" in errors["S001R04.edf"]
    store = open_store(tmp_path / "s.zarr")
    assert list(store) == [] and {Path(f["path"]).name for f in store.failed} == set(errors)


def test_too_short_recordings_fail_with_their_length_and_the_reason(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    _fif(folder / "one_raw.fif", rng.standard_normal((4, 1)) * 1e-5, ["eeg"] * 4, sfreq=160.0)
    _fif(folder / "short_raw.fif", rng.standard_normal((4, 20)) * 1e-5, ["eeg"] * 4, sfreq=160.0)
    _fif(folder / "ok_raw.fif", rng.standard_normal((4, 480)) * 1e-5, ["eeg"] * 4, sfreq=160.0)
    summary = preprocess(folder, tmp_path / "s.zarr")  # default: resample 160 -> 256 Hz first
    assert summary.processed == ["in_ok_raw"] and summary.exit_status == 1
    errors = {Path(f["path"]).name: f["error"] for f in summary.failed}
    assert "lasts 0.00625 s (1 samples at 160 Hz), too few samples" in errors["one_raw.fif"]
    assert ("lasts 0.125 s (20 samples at 160 Hz), shorter than the 21 samples at 160 Hz (0.131 s) that "
            "resampling from 160 to 256 Hz") in errors["short_raw.fif"]
    assert all("Invalid cutoff" not in e for e in errors.values())
    assert list(open_store(tmp_path / "s.zarr")) == ["in_ok_raw"]
    # the minimum is configurable upwards
    recipe = tmp_path / "r.yaml"
    recipe.write_text("extends: default\nmin_duration_s: 5\n")
    again = preprocess(folder, tmp_path / "s2.zarr", recipe=recipe)
    assert again.processed == []
    assert "lasts 3 s (480 samples at 160 Hz), shorter than the recipe's min_duration_s of 5 s" in {
        Path(f["path"]).name: f["error"] for f in again.failed}["ok_raw.fif"]
    with pytest.raises(ConfigError, match="min_duration_s must be a number >= 0"):
        recipe.write_text("extends: default\nmin_duration_s: -1\n")
        preprocess(folder, tmp_path / "s3.zarr", recipe=recipe)


def test_what_is_left_after_the_crop_is_checked_before_the_filters(tmp_path):
    """meg_gpt drops 30 s: a file of 30 s + 1 sample used to fail inside SciPy ("Invalid cutoff frequency")."""
    folder = tmp_path / "in"
    folder.mkdir()
    _fif(folder / "meg_raw.fif", np.random.default_rng(0).standard_normal((4, 30_001)) * 1e-12, ["mag"] * 4, sfreq=1000.0)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe="meg_gpt")
    (failure,) = summary.failed
    assert "lasts 0.001 s (1 samples at 1000 Hz)" in failure["error"] and "Invalid cutoff" not in failure["error"]


def test_a_folder_with_nothing_to_read_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "README.txt").write_text("notes")
    summary = preprocess(tmp_path / "in", tmp_path / "s.zarr")
    assert summary.exit_status == 1
    assert summary.error.startswith(f"No recording found in {tmp_path / 'in'}; its 1 files are not recordings")
    assert summary.to_json()["error"] == summary.error and "ERROR No recording found" in summary.table()


def _bug_in_a_step(state, steps):
    raise KeyError("a key the code forgot")


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.skipif(
    sys.platform != "linux" or sys.version_info >= (3, 12), reason="the patch reaches workers by fork"))])
def test_programming_errors_are_internal_errors_not_bad_data(tmp_path, monkeypatch, caplog, jobs):
    import brainfm.preprocessing.pipeline as pipeline

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a_raw.fif", "b_raw.fif"):
        _fif(folder / name, rng.standard_normal((4, 2500)) * 1e-5, ["eeg"] * 4)
    _fif(folder / "nan_raw.fif", np.full((4, 2500), np.nan), ["eeg"] * 4)  # a data problem
    monkeypatch.setattr(pipeline, "run_steps", _bug_in_a_step)
    with caplog.at_level("ERROR", logger="brainfm"):
        summary = preprocess(folder, tmp_path / "s.zarr", jobs=jobs)
    assert summary.exit_status == 3 and summary.processed == []
    assert [Path(f["path"]).name for f in summary.failed] == ["nan_raw.fif"]
    internal = {Path(f["path"]).name: f for f in summary.internal_errors}
    assert set(internal) == {"a_raw.fif", "b_raw.fif"}
    assert "internal error KeyError: 'a key the code forgot'" in internal["a_raw.fif"]["error"]
    assert "bug in brainfm" in internal["a_raw.fif"]["error"]
    assert "Traceback" in caplog.text and "_bug_in_a_step" in caplog.text
    assert summary.to_json()["internal_errors"][0]["path"].endswith("a_raw.fif")
    # not filed as bad data in the store
    assert [Path(f["path"]).name for f in open_store(tmp_path / "s.zarr").failed] == ["nan_raw.fif"]


# --- the same source stored under two recording ids (issue 6 area) ---------------------------------

def _three_runs(shared_data: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("S001R03.edf", "S001R04.edf", "S001R06.edf"):
        shutil.copy(shared_data / "eeg" / "eegmmidb" / name, folder / name)
    return folder


def test_a_folder_run_again_with_another_pattern_is_skipped_as_duplicate_sources(shared_data, tmp_path, caplog):
    folder = _three_runs(shared_data, tmp_path / "mmi")
    store = tmp_path / "s.zarr"
    first = preprocess(folder, store, pattern=PATTERN)
    assert first.processed == ["mmi_sub-001_run-03", "mmi_sub-001_run-04", "mmi_sub-001_run-06"]
    assert first.duplicate_sources == []
    other = r"S0*(?P<subject>\d+)R0*(?P<run>\d+)"  # ids 'mmi_sub-1_run-3' ...: the same files under new ids
    with caplog.at_level("WARNING", logger="brainfm"):
        second = preprocess(folder, store, pattern=other)
    assert second.processed == [] and second.failed == [] and second.exit_status == 0
    assert [(d["recording_id"], d["duplicate_of"], d["action"]) for d in second.duplicate_sources] == [
        ("mmi_sub-1_run-3", ["mmi_sub-001_run-03"], "skipped"),
        ("mmi_sub-1_run-4", ["mmi_sub-001_run-04"], "skipped"),
        ("mmi_sub-1_run-6", ["mmi_sub-001_run-06"], "skipped"),
    ]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("S001R04.edf" in m and "'mmi_sub-1_run-4'" in m and "mmi_sub-001_run-04" in m for m in warned), warned
    assert list(open_store(store)) == first.processed  # nothing stored twice
    assert "3 duplicate sources skipped" in second.table() and "DUPLICATE SOURCE" in second.table()
    assert second.to_json()["duplicate_sources"][0] == {
        "path": str(folder / "S001R03.edf"), "recording_id": "mmi_sub-1_run-3",
        "duplicate_of": ["mmi_sub-001_run-03"], "action": "skipped"}
    # --on-duplicate keep: stored under both ids, still named
    kept = preprocess(folder, store, pattern=other, on_duplicate="keep")
    assert kept.processed == ["mmi_sub-1_run-3", "mmi_sub-1_run-4", "mmi_sub-1_run-6"]
    assert [d["action"] for d in kept.duplicate_sources] == ["kept"] * 3
    assert len(open_store(store)) == 6
    with pytest.raises(ConfigError, match="on_duplicate must be one of skip, keep"):
        preprocess(folder, store, on_duplicate="drop")


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_the_same_file_in_two_folders_of_one_run_is_stored_once(shared_data, tmp_path, jobs):
    """One run finds a copy among the recordings it stores itself; with several jobs, copies written at
    the same time can only be found after the fact, and are then reported as kept."""
    root = tmp_path / "study"
    for site in ("site_a", "site_b"):
        (root / site).mkdir(parents=True)
        shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", root / site / "S001R03.edf")
    shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R04.edf", root / "site_b" / "S001R04.edf")
    pattern = r"(?P<acquisition>site_\w)/S(?P<subject>\d+)R(?P<run>\d+)"
    summary = preprocess(root, tmp_path / "s.zarr", pattern=pattern, jobs=jobs)
    ids = ("study_sub-001_acq-site-a_run-03", "study_sub-001_acq-site-b_run-03")
    if jobs == 1:
        assert summary.processed == [ids[0], "study_sub-001_acq-site-b_run-04"]
        assert [(d["recording_id"], d["duplicate_of"], d["action"]) for d in summary.duplicate_sources] == [
            (ids[1], [ids[0]], "skipped")]
    else:
        assert len(summary.processed) == 3
        assert [(d["recording_id"], d["duplicate_of"], d["action"]) for d in summary.duplicate_sources] == [
            (ids[1], [ids[0]], "kept")]
