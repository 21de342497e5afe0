"""The brainfm command line: help, exit codes, JSON contracts, the demo."""

from __future__ import annotations

import json
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
    ],
)
def test_unusable_arguments_exit_2(args, message, tmp_path):
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.slow
def test_demo_runs_on_the_bundled_sample(tmp_path):
    result = _run("demo", "--out", str(tmp_path / "demo"), "-q")
    assert result.returncode == 0, result.stderr
    assert "2 stored" in result.stdout
    assert "eegmmidb_sub-001_run-03" in result.stdout and "eegmmidb_sub-001_run-04" in result.stdout
    assert "first batch signal (8, 64, 1024)" in result.stdout
