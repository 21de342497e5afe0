"""brainfm store stats: per-dataset hours, channels, rates and window counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.store import StoreWriter, open_store
from brainfm.store.stats import dataset_stats, format_stats_table


def _recording(dataset: str, subject: str, n_times: int, sfreq: float, types: list[str], events=None) -> Recording:
    channels = empty_channel_table([f"C{i}" for i in range(len(types))], types)
    table = pd.DataFrame(events or [(0.0, 0.0, "start")], columns=["onset_s", "duration_s", "description"])
    signal = np.zeros((len(types), n_times), dtype=np.float32)
    return Recording(signal, sfreq, Identity(dataset, subject=subject), channels, table)


def test_dataset_stats_and_table(tmp_path):
    writer = StoreWriter(tmp_path / "store")
    writer.write(_recording("a", "01", 1050, 100.0, ["eeg"] * 3, events=[(2.1, 0.5, "BAD_x")]))
    writer.write(_recording("a", "02", 420, 100.0, ["eeg"] * 3 + ["eog"]))
    writer.write(_recording("b", "01", 3600, 200.0, ["mag", "grad", "grad"]))
    rows = dataset_stats(open_store(tmp_path / "store"), window_s=2.0)
    a, b = rows
    assert a["dataset"] == "a" and a["n_recordings"] == 2 and a["n_subjects"] == 2
    assert a["subject_sources"] == {"given": 2}
    assert a["hours"] == pytest.approx((10.5 + 4.2) / 3600)
    assert a["bad_hours"] == pytest.approx(0.5 / 3600)
    assert a["n_windows"] == 4 + 2  # 5 windows minus 1 on the BAD span, + 2
    assert a["n_channels_min"] == 3 and a["n_channels_max"] == 4
    assert a["channels_by_type"] == {"eeg": [3, 3], "eog": [0, 1]}
    assert a["sfreqs"] == [100.0] and b["sfreqs"] == [200.0]
    assert b["n_windows"] == 9 and b["channels_by_type"] == {"grad": [2, 2], "mag": [1, 1]}
    assert dataset_stats(open_store(tmp_path / "store"), window_s=2.0, stride_s=1.0)[1]["n_windows"] == 17
    table = format_stats_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["dataset", "recordings", "subjects"]
    assert lines[3].split()[0] == "total" and lines[3].split()[-1] == "15"
    assert "eeg:3 eog:0-1" in table and "100,200" in table
    with pytest.raises(ValueError, match="window_s"):
        dataset_stats(open_store(tmp_path / "store"), window_s=0.0)


def test_bad_hours_count_only_time_inside_the_recording(tmp_path):
    # a BAD span from -1 s to 0.5 s and one from 9.5 s to 11.5 s on a 10-s recording: 0.5 s + 0.5 s inside
    writer = StoreWriter(tmp_path / "store")
    writer.write(_recording("a", "01", 1000, 100.0, ["eeg"] * 2, events=[(-1.0, 1.5, "BAD_a"), (9.5, 2.0, "BAD_b")]))
    (row,) = dataset_stats(open_store(tmp_path / "store"), window_s=2.0)
    assert row["bad_hours"] == pytest.approx(1.0 / 3600)
    assert row["n_windows"] == 3  # windows at 2, 4 and 6 s; 0 s and 8 s overlap the spans


def test_stats_say_when_subjects_are_not_known(tmp_path):
    writer = StoreWriter(tmp_path / "store")
    for run in ("1", "2"):  # no subject: each recording counts as its own
        recording = _recording("plain", None, 1000, 100.0, ["eeg"] * 2)
        recording.identity = Identity("plain", run=run)
        writer.write(recording)
    rows = dataset_stats(open_store(tmp_path / "store"), window_s=2.0)
    assert rows[0]["n_subjects"] == 2 and rows[0]["subject_sources"] == {"recording": 2}
    assert "subjects of plain: 2 recordings without a known subject count as one subject each" in format_stats_table(rows)
