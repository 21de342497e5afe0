"""Recording -> StoreWriter -> open_store gives back the same recording."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import zarr

from brainfm import open_store
from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.errors import StoreFormatError, StoreNotFoundError
from brainfm.store import StoreWriter
from brainfm.store.check import check_store
from brainfm.store.encoding import bitround, signal_chunk_times
from brainfm.store.summary import store_info


def _recording(n_channels: int = 5, n_times: int = 20_000, subject: str = "01", seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    names = [f"C{i}" for i in range(n_channels)]
    types = ["eeg"] * (n_channels - 2) + ["mag", "grad"]
    channels = empty_channel_table(names, types)
    channels.loc[0, ["x", "y", "z"]] = [0.01, 0.02, 0.03]
    channels.loc[0, "pos_source"] = "template"
    channels.loc[n_channels - 1, ["ox", "oy", "oz", "gx", "gy", "gz"]] = [0, 0, 1, 1, 0, 0]
    channels.loc[1, ["status", "status_reason"]] = ["bad", "flat"]
    signal = (rng.standard_normal((n_channels, n_times)) * 1e-5).astype(np.float32)
    events = pd.DataFrame({"onset_s": [2.0, 0.5, 3.0], "duration_s": [0.0, 1.0, 0.0], "description": ["T1", "BAD_seg", "T1"]})
    return Recording(
        signal=signal, sfreq=250.0, identity=Identity("ds", subject, task="rest", run="1"),
        channels=channels, events=events, source={"path": f"/x/{subject}.edf", "sha256": "abc"},
        provenance={"recipe": "test", "config_hash": "h1"}, line_freq=50.0,
    )


def test_roundtrip_values_tables_and_attributes(tmp_path):
    recording = _recording()
    rid = StoreWriter(tmp_path / "s.zarr").write(recording)
    store = open_store(tmp_path / "s.zarr")
    assert list(store) == [rid] == ["ds_sub-01_task-rest_run-1"]
    stored = store[rid]
    np.testing.assert_array_equal(stored.signal[:], recording.signal)
    assert stored.signal.metadata.dimension_names == ("channel", "time")
    assert stored.sfreq == 250.0 and stored.subject == "01" and stored.task == "rest" and stored.run == "1"
    pd.testing.assert_frame_equal(stored.channels, recording.channels, check_dtype=False)
    events = stored.events
    assert events["onset_s"].tolist() == [0.5, 2.0, 3.0]  # sorted by onset
    assert events["description"].tolist() == ["BAD_seg", "T1", "T1"]
    stats = stored.stats
    good = np.concatenate([recording.signal[:, :125], recording.signal[:, 375:]], axis=1)  # BAD_seg: [0.5, 1.5) s
    assert stored.attrs["stat_samples"] == good.shape[1] == 20_000 - 250
    np.testing.assert_allclose(stats["mean"], good.mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(stats["std"], good.astype(np.float64).std(axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats["median"], np.median(good, axis=1), rtol=1e-5)
    q75, q25 = np.percentile(good, [75, 25], axis=1)
    np.testing.assert_allclose(stats["iqr"], q75 - q25, rtol=1e-5)
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert root.attrs["brainfm_format_version"] == 1
    assert set(root.attrs["written_by"]) == {"brainfm", "mne", "zarr", "numpy"}
    # attributes are strict JSON (NaN positions became null)
    text = (tmp_path / "s.zarr" / "recordings" / rid / "zarr.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_incomplete_recording_is_invisible_and_reported(tmp_path, monkeypatch):
    writer = StoreWriter(tmp_path / "s.zarr")
    writer.write(_recording(subject="01"))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the run were killed while writing

    monkeypatch.setattr("brainfm.store.writer.channel_stats", crash)
    with pytest.raises(KeyboardInterrupt):
        writer.write(_recording(subject="02"))
    store = open_store(tmp_path / "s.zarr")
    assert list(store) == ["ds_sub-01_task-rest_run-1"]
    assert store.incomplete == ["ds_sub-02_task-rest_run-1"]
    problems = check_store(store)
    assert list(problems) == ["ds_sub-02_task-rest_run-1"]
    assert "incomplete" in problems["ds_sub-02_task-rest_run-1"][0]
    monkeypatch.undo()
    writer.write(_recording(subject="02"))  # the next run completes it
    assert len(open_store(tmp_path / "s.zarr")) == 2


def test_up_to_date_needs_same_hash_and_config(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    rid = writer.write(_recording())
    assert writer.is_up_to_date(rid, "abc", "h1")
    assert not writer.is_up_to_date(rid, "abd", "h1")
    assert not writer.is_up_to_date(rid, "abc", "h2")
    assert not writer.is_up_to_date("other", "abc", "h1")


def test_unknown_format_version_names_both_versions(tmp_path):
    StoreWriter(tmp_path / "s.zarr")
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="a")
    root.attrs["brainfm_format_version"] = 7
    with pytest.raises(StoreFormatError, match="version 7.*version 1"):
        open_store(tmp_path / "s.zarr")
    with pytest.raises(StoreFormatError, match="version 7.*version 1"):
        StoreWriter(tmp_path / "s.zarr")


def test_not_a_store(tmp_path):
    with pytest.raises(StoreNotFoundError, match="not a brainfm store"):
        open_store(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreFormatError, match="not a brainfm store"):
        open_store(tmp_path / "plain.zarr")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file.txt").write_text("x")
    with pytest.raises(StoreFormatError, match="not empty"):
        StoreWriter(tmp_path / "full")


def test_failures_are_recorded_and_cleared(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr")
    writer.record_failure("/x/01.edf", ValueError("broken header"), "ds_sub-01_task-rest_run-1")
    assert open_store(tmp_path / "s.zarr").failed[0]["error"] == "broken header"
    writer.write(_recording())  # same source path, now stored
    assert open_store(tmp_path / "s.zarr").failed == []


def test_check_store_finds_tampered_shapes(tmp_path):
    rid = StoreWriter(tmp_path / "s.zarr").write(_recording())
    assert check_store(open_store(tmp_path / "s.zarr")) == {}
    group = zarr.open_group(str(tmp_path / "s.zarr" / "recordings" / rid), mode="a")
    group.attrs["n_times"] = 5
    problems = check_store(open_store(tmp_path / "s.zarr"))
    assert any("signal shape" in p for p in problems[rid])


def test_check_store_finds_non_finite_values(tmp_path):
    rid = StoreWriter(tmp_path / "s.zarr").write(_recording())
    zarr.open_array(str(tmp_path / "s.zarr" / "recordings" / rid / "signal"), mode="a")[2, 100] = np.nan
    problems = check_store(open_store(tmp_path / "s.zarr"))
    assert any("non-finite" in p for p in problems[rid])


def test_store_info_contract(tmp_path):
    StoreWriter(tmp_path / "s.zarr").write(_recording())
    info = store_info(open_store(tmp_path / "s.zarr"))
    assert info["format_version"] == 1
    row = info["recordings"][0]
    assert set(row) == {
        "id", "dataset", "subject", "subject_source", "session", "task", "run", "sfreq", "n_channels", "n_times",
        "channel_types", "n_positions", "pos_sources", "n_bad_channels", "n_events", "event_counts", "source",
    }
    assert row["subject_source"] == "given" and info["subject_sources"] == {"given": 1}
    assert row["channel_types"] == {"eeg": 3, "mag": 1, "grad": 1}
    assert row["n_positions"] == 1 and row["pos_sources"] == {"template": 1, "none": 4}
    assert row["n_bad_channels"] == 1 and row["event_counts"] == {"BAD_seg": 1, "T1": 2}
    assert row["source"] == {"path": "/x/01.edf", "sha256": "abc"}


def test_bitround_error_bound_and_compression(tmp_path):
    rng = np.random.default_rng(1)
    values = (rng.standard_normal(100_000) * 1e-5).astype(np.float32)
    rounded = bitround(values, 12)
    relative = np.abs(rounded - values) / np.abs(values)
    assert relative.max() <= 2.0**-13 * 1.0001
    assert np.any(rounded != values)
    recording = _recording(n_times=200_000)
    StoreWriter(tmp_path / "exact.zarr").write(recording, compression="lz4")
    StoreWriter(tmp_path / "round.zarr").write(recording, compression="lz4", bitround_keepbits=10)
    assert open_store(tmp_path / "round.zarr")[recording.recording_id].attrs["signal_encoding"]["compressor"]["shuffle"] == "bitshuffle"

    def size(path):
        return sum(p.stat().st_size for p in (path / "recordings").rglob("c/*/*") if p.is_file())

    assert size(tmp_path / "round.zarr") < 0.8 * size(tmp_path / "exact.zarr")
    stored = open_store(tmp_path / "round.zarr")[recording.recording_id]
    assert stored.attrs["signal_encoding"]["bitround_keepbits"] == 10
    assert stored.attrs["signal_encoding"]["bitround"] == {"id": "bitround", "keepbits": 10}
    assert open_store(tmp_path / "exact.zarr")[recording.recording_id].attrs["signal_encoding"]["bitround"] is None


def test_bitround_is_numcodecs_rounding_to_nearest():
    """The stored values are numcodecs' BitRound of the input: low bits zero, nearest of the grid."""
    from numcodecs import BitRound

    rng = np.random.default_rng(2)
    values = (rng.standard_normal((3, 4096)) * 1e-5).astype(np.float32)
    before = values.copy()
    rounded = bitround(values, 7)
    np.testing.assert_array_equal(values, before)  # the input is left alone
    expected = BitRound(7).encode(values).view(np.float32).reshape(values.shape)
    np.testing.assert_array_equal(rounded, expected)
    assert not np.any(rounded.view(np.uint32) & np.uint32((1 << 16) - 1))  # 23 - 7 low bits dropped
    # nearest: no neighbour on the 7-bit grid is closer than the rounded value
    step = np.uint32(1 << 16)
    for neighbour in (rounded.view(np.uint32) - step, rounded.view(np.uint32) + step):
        assert np.all(np.abs(rounded - values) <= np.abs(neighbour.view(np.float32) - values))
    assert bitround(values, 23) is values
    with pytest.raises(ValueError, match="keepbits must lie in"):
        bitround(values, 0)
    with pytest.raises(TypeError, match="float32"):
        bitround(values.astype(np.float64), 12)


def test_store_rounded_before_numcodecs_still_reads(tmp_path):
    """Stores rounded by the hand-written code (no ``bitround`` attribute) read and check as before."""
    recording = _recording(n_times=4096)
    path = tmp_path / "old.zarr"
    StoreWriter(path).write(recording, bitround_keepbits=12)
    group = zarr.open_group(path / "recordings" / recording.recording_id, mode="r+")
    encoding = dict(group.attrs["signal_encoding"])
    del encoding["bitround"]
    group.update_attributes({"signal_encoding": encoding})
    store = open_store(path)
    stored = store[recording.recording_id]
    assert stored.attrs["signal_encoding"]["bitround_keepbits"] == 12
    np.testing.assert_array_equal(np.asarray(stored.signal[:]), bitround(recording.signal, 12))
    assert check_store(store) == {}


def test_chunk_times_targets_size():
    assert signal_chunk_times(64, 10**7, 2.0) == 8192
    assert signal_chunk_times(306, 10**7, 2.0) == 2048
    assert signal_chunk_times(64, 1000, 2.0) == 1000  # short recording: one chunk
    # 3 min of 21 channels at 256 Hz: 3 chunks of 16384 (5% padding), not 2 of 32768 (41%)
    assert signal_chunk_times(21, 46_592, 2.0) == 16_384


def test_chunk_times_pad_little():
    """The last chunk is stored full size: the padding stays under a quarter chunk (+ 1/64)."""
    rng = np.random.default_rng(3)
    for _ in range(2000):
        n_channels, n_times = int(rng.integers(1, 400)), int(rng.integers(1, 10**7))
        length = signal_chunk_times(n_channels, n_times, 2.0)
        assert length == n_times or (length & (length - 1) == 0 and 256 <= length <= 65536)
        target = 2 ** int(np.clip(np.round(np.log2(2 * 2**20 / (4 * n_channels))), 8, 16))
        assert length >= min(target // 4, n_times) and length <= target
        padding = -(-n_times // length) * length - n_times
        assert padding <= max(target // 4, 256) + n_times / 64, (n_channels, n_times, length)


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_every_compression_roundtrips_and_is_recorded(tmp_path, compression):
    recording = _recording()
    rid = StoreWriter(tmp_path / "s.zarr").write(recording, compression=compression)
    stored = open_store(tmp_path / "s.zarr")[rid]
    np.testing.assert_array_equal(stored.signal[:], recording.signal)
    encoding = stored.attrs["signal_encoding"]
    if compression == "none":
        assert encoding["compressor"] is None and stored.signal.compressors == ()
    else:
        assert encoding["compressor"]["cname"] == compression
        assert stored.signal.compressors[0].cname.value == compression
    with pytest.raises(ValueError, match="compression must be one of"):
        StoreWriter(tmp_path / "s.zarr").write(recording, compression="gzip")


def test_quantiles_of_long_recordings_use_an_even_subsample():
    from brainfm.store.encoding import QUANTILE_SAMPLES, channel_stats

    rng = np.random.default_rng(3)
    signal = rng.standard_normal((3, 40 * QUANTILE_SAMPLES // 10)).astype(np.float32)
    stats = channel_stats(signal)
    np.testing.assert_allclose(stats[:, 0], signal.mean(axis=1), atol=1e-6)  # exact
    np.testing.assert_allclose(stats[:, 2], np.median(signal, axis=1), atol=0.02)  # about 1/sqrt(65536)
    q75, q25 = np.percentile(signal, [75, 25], axis=1)
    np.testing.assert_allclose(stats[:, 3], q75 - q25, rtol=0.02)


def test_normalisation_statistics_leave_out_bad_spans(tmp_path):
    """An artefact marked BAD (a 1000x jump) must not set the mean, spread or quantiles used to normalise."""
    recording = _recording(n_channels=3, n_times=5000)
    recording.signal[:, 1000:1500] += 1e-2  # electrode pop, 1000 times the signal
    recording.signal[:, 4990:] = 5e-3  # and a saturated end, also marked
    recording.events = pd.DataFrame({"onset_s": [4.0, 19.96, 10.0], "duration_s": [2.0, 0.04, 0.0],
                                     "description": ["BAD_pop", "bad_end", "T1"]})  # [1000, 1500), [4990, 5000)
    rid = StoreWriter(tmp_path / "s.zarr").write(recording)
    stored = open_store(tmp_path / "s.zarr")[rid]
    good = np.concatenate([recording.signal[:, :1000], recording.signal[:, 1500:4990]], axis=1)
    assert stored.attrs["stat_samples"] == good.shape[1]
    stats = stored.stats
    np.testing.assert_allclose(stats["mean"], good.mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(stats["std"], good.astype(np.float64).std(axis=1), rtol=1e-6)
    assert (stats["std"] < 2e-5).all()  # the artefact would make it ~4e-3
    np.testing.assert_allclose(stats["median"], np.median(good, axis=1), rtol=1e-5)
    # a recording that is BAD from end to end keeps statistics (of every sample) rather than none
    recording.events = pd.DataFrame({"onset_s": [0.0], "duration_s": [20.0], "description": ["BAD_all"]})
    recording.identity = Identity("ds", "02")
    rid = StoreWriter(tmp_path / "s.zarr").write(recording)
    stored = open_store(tmp_path / "s.zarr")[rid]
    assert stored.attrs["stat_samples"] == 5000
    np.testing.assert_allclose(stored.stats["mean"], recording.signal.mean(axis=1), atol=1e-9)


def _open_writer_and_write(path: str, subject: str, barrier) -> None:
    barrier.wait()  # all processes open the empty path at the same moment
    StoreWriter(path).write(_recording(subject=subject))


def test_array_jobs_creating_one_store_at_once(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    barrier = context.Barrier(4)
    processes = [
        context.Process(target=_open_writer_and_write, args=(str(tmp_path / "s.zarr"), f"{i:02d}", barrier)) for i in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    store = open_store(tmp_path / "s.zarr")
    assert len(store) == 4 and check_store(store) == {}


def test_a_lost_chunk_is_reported_not_read_as_zeros(tmp_path):
    recording = _recording(n_times=300_000)
    rid = StoreWriter(tmp_path / "s.zarr").write(recording, chunk_mib=0.25)
    chunks = sorted((tmp_path / "s.zarr" / "recordings" / rid / "signal" / "c").rglob("*"))
    chunk_files = [p for p in chunks if p.is_file()]
    assert len(chunk_files) > 2
    chunk_files[1].unlink()
    stored = open_store(tmp_path / "s.zarr")[rid]
    assert np.isnan(stored.signal[:, :]).any()
    problems = check_store(open_store(tmp_path / "s.zarr"))
    assert any("non-finite" in p for p in problems[rid])


def test_stray_partial_metadata_file_from_a_killed_writer_is_not_a_recording(tmp_path):
    # Zarr writes metadata to '<dir>/zarr.<hex>.partial' and renames it; a writer killed in
    # between leaves that file beside the recording groups (seen in the killed-run test).
    path = tmp_path / "s.zarr"
    rid = StoreWriter(path).write(_recording())
    (path / "recordings" / "zarr.ea85f3926e094bd8a6883ba8481fb1d0.partial").write_bytes(b'{"zarr_f')
    store = open_store(path)  # pytest turns Zarr's "not recognized" warning into an error
    assert list(store) == [rid]
    assert check_store(store) == {}


def test_stores_written_before_compensation_grades_and_frames_still_read(tmp_path):
    """A v1 store written before ``compensation_grade`` existed (coil types stored as bare
    numbers such as ``201609``; unknown positions NaN) reads, checks clean and loads with
    CTF gradiometers typed GRAD and a position mask derived from the NaN positions."""
    from brainfm.loading import build_window_index

    recording = _recording()
    recording.channels.loc[3, ["x", "y", "z", "frame"]] = [0.0, 0.05, 0.09, "head"]
    StoreWriter(tmp_path / "s").write(recording)
    group = zarr.open_group(tmp_path / "s" / "recordings" / recording.recording_id, mode="r+")
    table = dict(group.attrs["channels"])
    assert table["compensation_grade"] == [0] * 5 and table["coil_type"] == [""] * 5
    del table["compensation_grade"]
    table["type"] = ["eeg", "eeg", "eeg", "mag", "mag"]
    table["coil_type"] = ["", "", "", "201609", "3022"]  # CTF gradiometer at grade 3; VV magnetometer
    group.attrs.update({"channels": table})

    store = open_store(tmp_path / "s")
    assert check_store(store) == {}
    channels = store[recording.recording_id].channels
    assert channels["coil_type"].tolist() == ["", "", "", "FIFFV_COIL_CTF_GRAD", "FIFFV_COIL_VV_MAG_T1"]
    assert channels["compensation_grade"].tolist() == [0, 0, 0, 3, 0]
    layout = build_window_index(tmp_path / "s", window_s=1.0, channel_types=["eeg", "mag"]).layouts[0]
    assert layout.sensor_type.tolist() == [0, 0, 0, 2, 1]
    # NaN: no position; channel 0 has coordinates but no frame, which no reader can place
    assert layout.pos_mask.tolist() == [False, False, False, True, False]
    assert layout.frame_ids.tolist() == [-1, -1, -1, 0, -1]
    assert layout.sensor_pos[:3].tolist() == [[0.0] * 6] * 3
