"""Stores are uncompressed by default (fastest to load); compression is one recipe key away."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from brainfm import open_store
from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.preprocessing.recipe import available_recipes, load_recipe
from brainfm.preprocessing.run import preprocess
from brainfm.store import StoreWriter


def _chunk_files(store, recording_id):
    return sorted(p for p in (store / "recordings" / recording_id / "signal" / "c").rglob("*") if p.is_file())


def test_writer_default_is_uncompressed(tmp_path):
    """Each chunk file is the raw float32 chunk, which the loader memory-maps without decoding."""
    rng = np.random.default_rng(0)
    signal = (rng.standard_normal((4, 3000)) * 1e-5).astype(np.float32)
    recording = Recording(signal, 250.0, Identity("ds", "01"), empty_channel_table([f"C{i}" for i in range(4)], ["eeg"] * 4))
    rid = StoreWriter(tmp_path / "s.zarr").write(recording, chunk_mib=0.004)
    stored = open_store(tmp_path / "s.zarr")[rid]
    encoding = stored.attrs["signal_encoding"]
    assert encoding["compressor"] is None and stored.signal.compressors == ()
    files = _chunk_files(tmp_path / "s.zarr", rid)
    assert len(files) == -(-3000 // encoding["chunk_times"])
    assert all(f.stat().st_size == 4 * 4 * encoding["chunk_times"] for f in files)
    np.testing.assert_array_equal(
        np.fromfile(files[0], dtype="<f4").reshape(4, -1), signal[:, : encoding["chunk_times"]]
    )


@pytest.mark.parametrize("name", available_recipes())
def test_shipped_recipes_write_uncompressed(name):
    write = load_recipe(name).write
    assert write.compression == "none" and write.bitround_keepbits is None


def test_archive_is_one_recipe_key_away(tmp_path, shared_data):
    """``write: {compression: zstd, bitround_keepbits: 12}`` on top of the default: about half the disk."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", folder)
    archive = tmp_path / "archive.yaml"
    archive.write_text("extends: default\nname: archive\nwrite: {compression: zstd, bitround_keepbits: 12}\n")
    for store, recipe in ((tmp_path / "default.zarr", "default"), (tmp_path / "archive.zarr", archive)):
        summary = preprocess(folder, store, recipe=recipe)
        assert len(summary.processed) == 1 and not summary.failed
    exact, rounded = open_store(tmp_path / "default.zarr"), open_store(tmp_path / "archive.zarr")
    (rid,) = list(exact)
    assert list(rounded) == [rid]
    encoding = rounded[rid].attrs["signal_encoding"]
    assert encoding["compressor"] == {"name": "blosc", "cname": "zstd", "clevel": 5, "shuffle": "bitshuffle"}
    assert encoding["bitround_keepbits"] == 12 and encoding["bitround"] == {"id": "bitround", "keepbits": 12}
    assert exact[rid].attrs["signal_encoding"]["compressor"] is None

    def size(store):
        return sum(f.stat().st_size for f in _chunk_files(store, rid))

    assert size(tmp_path / "archive.zarr") < 0.6 * size(tmp_path / "default.zarr")
    a, b = np.asarray(exact[rid].signal[:], dtype=np.float64), np.asarray(rounded[rid].signal[:], dtype=np.float64)
    assert 0 < np.sqrt(np.mean((a - b) ** 2) / np.mean(a**2)) < 2**-12


def test_archive_is_one_flag_away(tmp_path, shared_data):
    """``brainfm preprocess ... --compression zstd --bitround-keepbits 12`` writes the archive encoding."""
    from brainfm.cli.main import main

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", folder)
    store = tmp_path / "archive.zarr"
    assert main(["preprocess", str(folder), str(store), "-q", "--compression", "zstd", "--bitround-keepbits", "12"]) == 0
    (rid,) = list(open_store(store))
    encoding = open_store(store)[rid].attrs["signal_encoding"]
    assert encoding["compressor"]["cname"] == "zstd" and encoding["bitround_keepbits"] == 12
    assert main(["preprocess", str(folder), str(tmp_path / "bad.zarr"), "-q", "--bitround-keepbits", "40"]) == 2
    assert not (tmp_path / "bad.zarr").exists()
