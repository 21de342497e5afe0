"""Read whole signal chunks, decode them once, keep the recent ones.

Zarr's ``array[:, a:b]`` costs a fixed overhead per call (its async machinery, selection
planning), which dominates when a loader wants thousands of chunks per second. For arrays
on a local store whose codec chain is ``bytes`` followed by ``blosc``, ``zstd`` or ``gzip``
(every store format v1 signal), :class:`ChunkReader` reads the chunk object named by the
array's own metadata (``chunk_key_encoding``, ``chunk_grid``, ``data_type``, ``codecs``,
``fill_value``) and decodes it with numcodecs, which is what Zarr itself does underneath.
Any other layout (remote stores, sharding, transposes, checksums) goes through Zarr.

A reader is per process: DataLoader workers build their own on first use (the dataset
drops it when pickled), and each keeps an LRU cache of decoded chunks so that the many
windows cut from one chunk decode it once.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from brainfm.errors import StoreFormatError
from brainfm.loading.layout import RecordingLayout
from brainfm.store.format import RECORDINGS_GROUP

__all__ = ["ChunkReader", "configure_worker_threads"]

_BYTES_TO_BYTES = ("blosc", "zstd", "gzip")


def configure_worker_threads(n_threads: int = 1) -> None:
    """Limit the threads one loader process uses (torch, blosc, Zarr).

    DataLoader workers already run in parallel; letting each also start one thread per core
    for decompression or tensor ops oversubscribes the machine.

    Parameters
    ----------
    n_threads : int
        Threads per process.
    """
    import numcodecs.blosc
    import torch
    import zarr

    torch.set_num_threads(n_threads)
    numcodecs.blosc.set_nthreads(n_threads)
    zarr.config.set({"threading.max_workers": n_threads})


class _Source:
    """How to fetch and decode the chunks of one signal array."""

    def __init__(self, array: Any) -> None:
        from zarr.storage import LocalStore

        meta = array.metadata.to_dict()
        self.array = array
        self.shape = tuple(int(s) for s in meta["shape"])
        grid = meta["chunk_grid"]
        self.chunk_shape = tuple(int(s) for s in grid["configuration"]["chunk_shape"])
        if grid.get("name") != "regular" or len(self.shape) != 2 or self.chunk_shape[0] != self.shape[0]:
            raise StoreFormatError(
                f"{array.path}: the signal must be a 2-D array chunked along time only (store format v1); "
                f"got shape {self.shape}, chunks {self.chunk_shape}."
            )
        if meta["data_type"] != "float32":
            raise StoreFormatError(f"{array.path}: signal data type is {meta['data_type']!r}, expected 'float32'.")
        self.fill_value = float(meta.get("fill_value") or 0.0)
        self.decoders: list[Any] = []
        self.root: Path | None = None
        codecs = meta["codecs"]
        fast = (
            isinstance(array.store, LocalStore)
            and codecs
            and codecs[0]["name"] == "bytes"
            and (codecs[0].get("configuration") or {}).get("endian", "little") == "little"
            and all(c["name"] in _BYTES_TO_BYTES for c in codecs[1:])
        )
        if fast:
            import numcodecs

            for codec in reversed(codecs[1:]):
                config = codec.get("configuration") or {}
                if codec["name"] == "blosc":
                    self.decoders.append("blosc")
                elif codec["name"] == "zstd":
                    self.decoders.append(numcodecs.Zstd())
                else:
                    self.decoders.append(numcodecs.GZip(level=int(config.get("level", 5))))
            self.root = Path(array.store.root) / array.path
            self.encode_key = array.metadata.encode_chunk_key

    def read(self, chunk_index: int) -> np.ndarray:
        """Decode one chunk as a (n_channels, chunk_times) float32 array (edge chunks full size)."""
        n_channels, chunk_times = self.chunk_shape
        out = np.empty((n_channels, chunk_times), dtype=np.float32)
        if self.root is None:
            start = chunk_index * chunk_times
            stop = min(start + chunk_times, self.shape[1])
            out[:, : stop - start] = self.array[:, start:stop]
            out[:, stop - start :] = self.fill_value
            return out
        try:
            data: Any = (self.root / self.encode_key((0, chunk_index))).read_bytes()
        except FileNotFoundError:  # chunks equal to the fill value are not written
            out.fill(self.fill_value)
            return out
        import numcodecs.blosc

        for i, decoder in enumerate(self.decoders):
            last = i == len(self.decoders) - 1
            if decoder == "blosc":
                if last:
                    numcodecs.blosc.decompress(data, out)
                    return out
                data = numcodecs.blosc.decompress(data)
            else:
                data = decoder.decode(data, out=out if last else None)
                if last:
                    return out
        out[...] = np.frombuffer(data, dtype="<f4").reshape(n_channels, chunk_times)
        return out


class ChunkReader:
    """Decoded signal chunks of one store, with an LRU cache (one reader per process).

    Parameters
    ----------
    store_path : str | pathlib.Path
        The store folder (opened on first use).
    cache_mib : float
        Budget of the decoded-chunk cache in MiB.
    """

    def __init__(self, store_path: str | Path, cache_mib: float = 128.0) -> None:
        self.store_path = Path(store_path)
        self.cache_bytes = int(cache_mib * 2**20)
        self._zarr_store: Any = None
        self._sources: dict[str, _Source] = {}
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self.n_decoded = 0

    def _source(self, layout: RecordingLayout) -> _Source:
        source = self._sources.get(layout.recording_id)
        if source is None:
            import zarr

            if self._zarr_store is None:
                if not (self.store_path / "zarr.json").is_file():
                    raise FileNotFoundError(f"{self.store_path} is not a brainfm store (no zarr.json).")
                self._zarr_store = zarr.storage.LocalStore(str(self.store_path), read_only=True)
            # Open only this signal array: listing the whole store in every worker is slow.
            array = zarr.open_array(self._zarr_store, path=f"{RECORDINGS_GROUP}/{layout.recording_id}/signal", mode="r")
            source = _Source(array)
            if source.chunk_shape[1] != layout.chunk_times:
                raise StoreFormatError(
                    f"{layout.recording_id}: signal chunks hold {source.chunk_shape[1]} samples, but the "
                    f"recording's signal_encoding says {layout.chunk_times}."
                )
            self._sources[layout.recording_id] = source
        return source

    def chunk(
        self,
        layout: RecordingLayout,
        chunk_index: int,
        scale: np.ndarray | None = None,
        shift: np.ndarray | None = None,
    ) -> np.ndarray:
        """The selected channels of one chunk, decoded (and scaled) once, then cached.

        Parameters
        ----------
        layout : RecordingLayout
            The recording.
        chunk_index : int
            Chunk number along time.
        scale, shift : numpy.ndarray of float32, shape (C,) | None
            Per-channel affine map applied right after decoding, while the chunk is in
            cache (``x * scale + shift``); None leaves the stored values. A reader must
            always be called with the same map for a recording (the cache keys ignore it).

        Returns
        -------
        chunk : numpy.ndarray of float32, shape (C, chunk_times)
            Read-only by convention (it is shared through the cache).
        """
        key = (layout.index, int(chunk_index))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        decoded = self._source(layout).read(int(chunk_index))
        if not layout.all_rows:
            decoded = decoded[layout.rows]
        if scale is not None:
            decoded *= scale[:, None]
        if shift is not None:
            decoded += shift[:, None]
        self.n_decoded += 1
        self._cache[key] = decoded
        self._cached_bytes += decoded.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.nbytes
        return decoded

    def clear(self) -> None:
        """Drop cached chunks and open handles (the next read reopens the store)."""
        self._cache.clear()
        self._cached_bytes = 0
        self._sources.clear()
        self._zarr_store = None
