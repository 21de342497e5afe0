"""The brainfm command line: help, exit codes, JSON contracts, the demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from brainfm.cli.main import COMMANDS, main


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # Never from the repository root: there "python -m" would import the checkout's brainfm/
    # folder, which lacks the mapped stages, instead of the installed package.
    return subprocess.run(
        [sys.executable, "-m", "brainfm.cli.main", *args], capture_output=True, text=True,
        cwd=cwd or tempfile.gettempdir(), timeout=600,
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage: brainfm" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.fixture()
def folder(shared_data, tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", folder)
    shutil.copy(shared_data / "corrupt" / "not_really.edf", folder)
    return folder


def test_preprocess_json_contract_and_exit_status(folder, tmp_path):
    store = tmp_path / "s.zarr"
    result = _run("preprocess", str(folder), str(store), "--json", "-q")
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["store"] == str(store)
    assert payload["processed"] == ["in_S001R03"] and payload["skipped"] == []
    assert payload["failed"][0]["path"].endswith("not_really.edf")
    assert "not a valid EDF" in payload["failed"][0]["error"]
    (folder / "not_really.edf").unlink()
    again = _run("preprocess", str(folder), str(store), "--json", "-q")
    assert again.returncode == 0
    assert json.loads(again.stdout)["skipped"] == ["in_S001R03"]
    # the same folder under another dataset name: the file is stored already, so it is skipped and named
    duplicate = _run("preprocess", str(folder), str(store), "--dataset", "other", "--json")
    assert duplicate.returncode == 0, duplicate.stderr
    assert json.loads(duplicate.stdout)["duplicate_sources"] == [{
        "path": str(folder / "S001R03.edf"), "recording_id": "other_S001R03", "duplicate_of": ["in_S001R03"],
        "action": "skipped"}]
    assert "'other_S001R03'" in duplicate.stderr and "1 duplicate sources skipped" in duplicate.stderr
    kept = _run("preprocess", str(folder), str(store), "--dataset", "other", "--on-duplicate", "keep", "--json", "-q")
    assert json.loads(kept.stdout)["processed"] == ["other_S001R03"]

    info = _run("store", "info", str(store), "--json")
    assert info.returncode == 0
    recording = json.loads(info.stdout)["recordings"][0]
    assert recording["n_channels"] == 64 and recording["channel_types"] == {"eeg": 64}
    assert recording["n_positions"] == 64 and recording["pos_sources"] == {"template": 64}
    assert recording["event_counts"] == {"T0": 15, "T1": 8, "T2": 7}
    assert json.loads(info.stdout)["failed"][0]["path"].endswith("not_really.edf")

    check = _run("store", "check", str(store))
    assert check.returncode == 0 and "all sound" in check.stdout
    bad_window = _run("store", "stats", str(store), "--window-s", "0")
    assert bad_window.returncode == 2 and "window_s" in bad_window.stderr
    stats = _run("store", "stats", str(store), "--window-s", "2", "--json")
    assert stats.returncode == 0, stats.stderr
    rows = json.loads(stats.stdout)
    assert rows[0]["n_windows"] == 62  # 125 s in 2-s windows


@pytest.mark.parametrize(
    "args,message",
    [
        (["preprocess", "MISSING", "S.zarr"], "does not exist"),
        (["preprocess", ".", "S.zarr", "--shard", "5/2"], "--shard"),
        (["preprocess", ".", "S.zarr", "--recipe", "brainomnii"], "Did you mean 'brainomni'"),
        (["store", "info", "MISSING.zarr"], "not a brainfm store"),
        (["preprocess", ".", "S.zarr", "--shard", "0/2", "--report"], "run 'brainfm report STORE' once"),
    ],
)
def test_unusable_arguments_exit_2(args, message, tmp_path):
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


# --- issue 6: stdout holds one JSON document; exit statuses --------------------------------------

def _printing_reader(real):
    """An EDF reader that talks on stdout, as mffpy does, at open time and while reading data:
    Python prints, and a write to file descriptor 1 as compiled code does."""
    def read_raw_edf(*args, **kwargs):
        print("categories.xml not found or of wrong type.")
        os.write(1, b"a C library talks on fd 1\n")
        return real(*args, **kwargs)

    return read_raw_edf


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.skipif(
    sys.platform != "linux" or sys.version_info >= (3, 12), reason="the patch reaches workers by fork"))])
def test_preprocess_json_stdout_is_one_document_when_readers_print(shared_data, tmp_path, monkeypatch, capfd, jobs):
    import mne
    from mne.io.edf.edf import RawEDF

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("S001R03.edf", "S001R04.edf"):
        shutil.copy(shared_data / "eeg" / "eegmmidb" / name, folder)
    monkeypatch.setattr(mne.io, "read_raw_edf", _printing_reader(mne.io.read_raw_edf))
    read_segment = RawEDF._read_segment_file

    def talkative_read_segment(self, *args, **kwargs):
        print("reading a segment")
        return read_segment(self, *args, **kwargs)

    monkeypatch.setattr(RawEDF, "_read_segment_file", talkative_read_segment)
    status = main(["preprocess", str(folder), str(tmp_path / "s.zarr"), "--json", "-q", "--jobs", str(jobs)])
    out, err = capfd.readouterr()
    assert status == 0, err
    payload = json.loads(out)  # exactly one JSON document, nothing else
    assert payload["processed"] == ["in_S001R03", "in_S001R04"]
    assert "a C library talks on fd 1" in err  # went to stderr, not lost
    assert "reading a segment" not in out and "categories.xml" not in out
    print("after the command, stdout works again")
    assert capfd.readouterr().out == "after the command, stdout works again\n"


def test_preprocess_exit_status_when_nothing_can_be_read(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "README.md").write_text("a dataset whose data were never fetched")
    result = _run("preprocess", str(tmp_path / "in"), str(tmp_path / "s.zarr"), "--json", "-q")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"].startswith(f"No recording found in {tmp_path / 'in'}")


def _broken_run_steps(state, steps):
    raise AttributeError("'NoneType' object has no attribute 'sfreq'")


def test_preprocess_internal_error_has_its_own_exit_status(shared_data, tmp_path, monkeypatch, capsys, caplog):
    import brainfm.preprocessing.pipeline as pipeline

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", folder)
    monkeypatch.setattr(pipeline, "run_steps", _broken_run_steps)
    with caplog.at_level("ERROR", logger="brainfm"):
        status = main(["preprocess", str(folder), str(tmp_path / "s.zarr"), "--json", "-q"])
    out, err = capsys.readouterr()
    assert status == 3
    payload = json.loads(out)
    assert payload["failed"] == [] and payload["internal_errors"][0]["path"].endswith("S001R03.edf")
    assert "internal error AttributeError" in payload["internal_errors"][0]["error"]
    assert "Traceback" in caplog.text and "_broken_run_steps" in caplog.text  # the log (stderr)
