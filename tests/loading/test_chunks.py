"""Fast chunk paths (memory-mapped uncompressed chunks, blosc decoding into reused arrays) give
exactly what Zarr reads, and reused memory never changes data a caller still holds."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.errors import StoreFormatError
from brainfm.loading import (
    ChunkReader,
    WindowDataset,
    build_window_index,
    channel_affine,
    sensortype_normalize_,
)
from brainfm.loading.buffers import ReusableMemory, SignalBuffers
from brainfm.store import open_store


def _recording(subject: str, types: list[str], n_times: int, seed: int, bad: tuple[int, ...] = (),
               zero_span: tuple[int, int] | None = None) -> Recording:
    rng = np.random.default_rng(seed)
    n_channels = len(types)
    signal = (rng.standard_normal((n_channels, n_times)) * 1e-5 + rng.uniform(-1e-5, 1e-5, (n_channels, 1))).astype(np.float32)
    if zero_span is not None:
        signal[:, zero_span[0] : zero_span[1]] = 0.0  # a whole chunk of fill value: Zarr writes no file
    channels = empty_channel_table([f"{subject}{c}" for c in range(n_channels)], types)
    for c in bad:
        channels.loc[c, "status"] = "bad"
    events = pd.DataFrame({"onset_s": np.zeros(0), "duration_s": np.zeros(0), "description": np.array([], dtype=object)})
    source = {"path": f"/data/{subject}.fif", "relpath": "", "size": 0, "sha256": ""}
    return Recording(signal, 100.0, Identity("syn", subject=subject), channels, events, source=source)


RECORDINGS = (
    # EOG is not loaded (a row subset), one bad channel
    dict(subject="a", types=["eeg", "eeg", "eeg", "eog", "eeg"], n_times=1300, seed=0, bad=(1,)),
    # chunk 1 ([256, 512) at 256 samples per chunk) is all zeros, so it is never written
    dict(subject="b", types=["mag", "grad", "grad"], n_times=900, seed=1, zero_span=(256, 512)),
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from brainfm.store import StoreWriter

    paths = {}
    for compression in ("lz4", "zstd", "none"):
        path = tmp_path_factory.mktemp("chunks") / f"{compression}.zarr"
        writer = StoreWriter(path)
        for spec in RECORDINGS:
            writer.write(_recording(**spec), chunk_mib=0.004, compression=compression)  # type: ignore[arg-type]
        paths[compression] = path
    return paths


def _reference(store: object, index: object, windows: np.ndarray, normalization: str) -> torch.Tensor:
    """The batch signal computed from Zarr slices and numpy float32 arithmetic."""
    stored = open_store(store)  # type: ignore[arg-type]
    order = np.lexsort((index.start[windows], index.recording[windows]))  # type: ignore[attr-defined]
    windows = windows[order]
    n_times = index.window_size_samples  # type: ignore[attr-defined]
    width = max(index.layouts[r].n_channels for r in index.recording[windows])  # type: ignore[attr-defined]
    out = torch.zeros((len(windows), width, n_times))
    for row, window in enumerate(windows):
        layout = index.layouts[index.recording[window]]  # type: ignore[attr-defined]
        start = int(index.start[window])  # type: ignore[attr-defined]
        values = np.asarray(stored[layout.recording_id].signal[layout.rows, start : start + n_times])
        scale, shift, good = channel_affine(layout.stats, layout.good, normalization)
        values = values * scale[:, None]
        if normalization in ("zscore", "robust"):
            values = values + shift[:, None]
        block = torch.from_numpy(values.astype(np.float32))[None]
        if normalization == "sensortype":
            sensortype_normalize_(block, layout.sensor_type, good)
        out[row, : layout.n_channels] = block[0]
    return out


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("normalization", ["none", "zscore", "robust", "sensortype"])
def test_batches_equal_the_zarr_reference(stores, compression, normalization):
    store = stores[compression]
    index = build_window_index(store, window_s=1.5, stride_s=0.7)  # windows straddle chunk boundaries
    assert {layout.chunk_times for layout in index.layouts} == {256}
    assert index.layouts[0].n_channels == 4 and not index.layouts[0].all_rows  # the EOG row is skipped
    dataset = WindowDataset(index, store, normalization)
    order = np.random.default_rng(0).permutation(len(index))
    batches = np.array_split(order, 3)
    kept = []
    for windows in batches:
        batch = dataset.__getitems__(windows)
        expected = _reference(store, index, windows, normalization)
        assert torch.equal(batch.signal, expected), f"{compression}/{normalization}: max difference " \
            f"{(batch.signal - expected).abs().max().item()}"
        kept.append((batch, expected))
    for batch, expected in kept:  # batches the caller kept were not overwritten by later ones
        assert torch.equal(batch.signal, expected)


def test_fast_paths_are_taken_and_zero_chunks_are_stored(stores):
    kinds = {}
    for compression, store in stores.items():
        index = build_window_index(store, window_s=1.0)
        reader = ChunkReader(store)
        layout = index.layouts[1]  # recording b: every row, chunk 1 all zeros
        # The fill value is NaN: a chunk of zeros is a real chunk, written like any other.
        assert (store / "recordings" / layout.recording_id / "signal" / "c" / "0" / "1").exists()
        assert (reader.chunk(layout, 1) == 0).all()
        kinds[compression] = reader._sources[layout.recording_id].kind
        chunk = reader.chunk(layout, 0)
        expected = np.asarray(open_store(store)[layout.recording_id].signal[:, :256])
        np.testing.assert_array_equal(chunk, expected)
        # uncompressed: a view of the memory-mapped file, not in memory of the reader's own
        assert (reader._cache[(layout.index, 0)][1] is None) == (compression == "none")
    assert kinds == {"lz4": "decode", "zstd": "decode", "none": "raw"}


@pytest.mark.parametrize("compression", ["lz4", "none"])
def test_a_lost_chunk_file_is_an_error_naming_it(stores, tmp_path, compression):
    import shutil

    store = tmp_path / "damaged.zarr"
    shutil.copytree(stores[compression], store)
    index = build_window_index(store, window_s=1.0)
    layout = index.layouts[1]
    lost = store / "recordings" / layout.recording_id / "signal" / "c" / "0" / "1"
    lost.unlink()
    reader = ChunkReader(store)
    reader.chunk(layout, 0)  # the others still read
    with pytest.raises(StoreFormatError, match=r"signal/c/0/1: this signal chunk file is missing"):
        reader.chunk(layout, 1)


def test_other_layouts_fall_back_to_zarr(stores, tmp_path):
    import shutil

    store = tmp_path / "sharded.zarr"
    shutil.copytree(stores["lz4"], store)
    recording_id = list(open_store(store))[1]
    group = zarr.open_group(str(store / "recordings" / recording_id), mode="a")
    values = group["signal"][:]
    del group["signal"]
    sharded = group.create_array("signal", shape=values.shape, dtype="float32", chunks=(values.shape[0], 256),
                                 shards=(values.shape[0], 512), dimension_names=["channel", "time"])
    sharded[:] = values
    index = build_window_index(store, window_s=1.5, stride_s=0.7)
    dataset = WindowDataset(index, store, "zscore")
    windows = np.flatnonzero(index.recording == 1)
    batch = dataset.__getitems__(windows)
    assert dataset.reader._sources[recording_id].kind == "zarr"
    assert torch.equal(batch.signal, _reference(store, index, windows, "zscore"))


def test_a_lost_chunk_read_through_zarr_is_an_error_naming_it(stores, tmp_path):
    """The Zarr fallback refuses a lost chunk as the fast paths do (Zarr itself returns NaN)."""
    import shutil

    store = tmp_path / "sharded.zarr"
    shutil.copytree(stores["lz4"], store)
    recording_id = list(open_store(store))[0]
    group = zarr.open_group(str(store / "recordings" / recording_id), mode="a")
    values = group["signal"][:]
    del group["signal"]
    sharded = group.create_array("signal", shape=values.shape, dtype="float32", chunks=(values.shape[0], 256),
                                 shards=(values.shape[0], 512), dimension_names=["channel", "time"],
                                 fill_value=float("nan"))
    sharded[:] = values
    lost = store / "recordings" / recording_id / "signal" / "c" / "0" / "1"  # samples [512, 1024)
    lost.unlink()
    index = build_window_index(store, window_s=1.0)
    layout = index.layouts[0]
    reader = ChunkReader(store)
    reader.chunk(layout, 0)  # the samples of the other shards still read
    assert reader._sources[recording_id].kind == "zarr"
    with pytest.raises(StoreFormatError, match=r"samples 512 to 768 read as NaN.*signal/c/0/1"):
        reader.chunk(layout, 2)
    dataset = WindowDataset(index, store, "none")
    with pytest.raises(StoreFormatError, match=r"chunk whose file is missing"):
        dataset.__getitems__(np.flatnonzero(index.recording == 0))


def test_damaged_uncompressed_chunk_is_reported(stores, tmp_path):
    import shutil

    store = tmp_path / "damaged.zarr"
    shutil.copytree(stores["none"], store)
    index = build_window_index(store, window_s=1.0)
    layout = index.layouts[0]
    chunk_file = store / "recordings" / layout.recording_id / "signal" / "c" / "0" / "2"
    chunk_file.write_bytes(chunk_file.read_bytes()[:100])
    with pytest.raises(StoreFormatError, match=r"must hold 5120 bytes .* found 100"):
        ChunkReader(store).chunk(layout, 2)


def test_chunks_a_caller_holds_are_never_recycled(stores):
    store = stores["lz4"]
    index = build_window_index(store, window_s=1.0)
    layout = index.layouts[0]
    reader = ChunkReader(store, cache_mib=0.001)  # one chunk cached: every read evicts the previous one
    held = reader.chunk(layout, 0)
    expected = held.copy()
    as_tensor = torch.from_numpy(reader.chunk(layout, 1))
    expected_tensor = as_tensor.clone()
    view = reader.chunk(layout, 2)[:, 10:20]
    expected_view = view.copy()
    for chunk_index in (3, 4, 0, 1, 2, 3, 4):
        reader.chunk(layout, chunk_index)
    np.testing.assert_array_equal(held, expected)
    assert torch.equal(as_tensor, expected_tensor)
    np.testing.assert_array_equal(view, expected_view)
    # chunks nobody holds are reused: no new arrays once the spares circulate
    del held, as_tensor, view
    gc.collect()
    spares_before = {id(a) for a in reader._spare}
    reader.chunk(layout, 0)
    assert spares_before and {id(a) for a in reader._spare} != spares_before


def test_signal_buffers_reuse_only_free_memory():
    buffers = SignalBuffers(n_buffers=2)
    first = buffers.empty((4, 3, 10))
    first.fill_(1.0)
    pointer = first.data_ptr()
    second = buffers.empty((4, 3, 10))
    assert second.data_ptr() != pointer  # `first` is alive
    row = first[1]  # a view keeps the buffer too
    del first
    third = buffers.empty((4, 3, 10))
    assert third.data_ptr() not in (pointer, second.data_ptr())
    as_numpy = row.numpy()
    del row
    fourth = buffers.empty((2, 3, 10))
    assert fourth.data_ptr() != pointer
    assert (as_numpy == 1.0).all()
    del as_numpy, fourth
    reused = buffers.empty((2, 3, 10))  # smaller: fits in the free buffer
    assert reused.data_ptr() == pointer and reused.shape == (2, 3, 10)
    assert pickle.loads(pickle.dumps(buffers))._buffers == []


def test_reusable_memory_is_in_use_while_any_view_or_tensor_of_it_lives():
    memory = ReusableMemory(4 * 60)
    assert not memory.in_use
    array = memory.array((3, 20))
    assert memory.in_use
    view = array[1:, 5:][::2]  # numpy views point at the lent array, not at the memory behind it
    del array
    assert memory.in_use
    tensor = torch.from_numpy(view).t()[2:]
    del view
    assert memory.in_use
    back = tensor.numpy()[1:]  # an array of a tensor keeps the tensor's storage
    del tensor
    assert memory.in_use
    del back
    assert not memory.in_use
    with pytest.raises(ValueError, match="needs 244 bytes; this memory holds 240"):
        memory.array((61,))


def test_main_process_batches_reuse_memory_only_when_released(stores):
    store = stores["none"]
    index = build_window_index(store, window_s=1.0)
    dataset = WindowDataset(index, store, "zscore")
    windows = np.arange(len(index))
    first = dataset.__getitems__(windows[:6])
    expected = first.signal.clone()
    pointers = {first.signal.data_ptr()}
    for _ in range(4):  # kept: later batches go elsewhere
        other = dataset.__getitems__(windows[6:12])
        assert other.signal.data_ptr() != first.signal.data_ptr()
        pointers.add(other.signal.data_ptr())
        del other
    assert torch.equal(first.signal, expected)
    assert len(pointers) == 2  # the released batch's buffer was reused every time


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_worker_batches_equal_main_process_batches(stores, compression):
    from brainfm.loading import WindowDataModule

    windows = {}
    fields = ("signal", "channel_mask", "sensor_pos", "sensor_type", "channel_ids", "region_ids")
    for workers in (0, 2):  # the sampler orders batches per worker: compare window by window
        data = WindowDataModule(stores[compression], window_s=1.5, stride_s=0.7, batch_size=5, num_workers=workers,
                                val_fraction=0.0, split_unit="window", shuffle="uniform")
        widths = [layout.n_channels for layout in data.index.layouts]
        windows[workers] = {}
        for batch in data.train_dataloader():
            for i, (r, s, subject) in enumerate(zip(batch.recording_ids.tolist(), batch.start.tolist(),
                                                    batch.subject_ids.tolist(), strict=True)):
                # channels beyond the recording's own are padding, whose width depends on the batch
                values = [getattr(batch, name)[i, : widths[r]].clone() for name in fields]
                assert not batch.channel_mask[i, widths[r]:].any()
                windows[workers][(r, s)] = (subject, values)
    assert windows[0].keys() == windows[2].keys() and len(windows[0]) == len(data.index)
    for key, (subject, values) in windows[0].items():
        assert subject == windows[2][key][0]
        for name, a, b in zip(fields, values, windows[2][key][1], strict=True):
            assert torch.equal(a, b), (key, name)
