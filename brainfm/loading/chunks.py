"""Read whole signal chunks, decode them once, keep the recent ones.

Zarr's ``array[:, a:b]`` costs a fixed overhead per call (its async machinery, selection
planning), which dominates when a loader wants thousands of chunks per second. For arrays
on a local store whose codec chain is ``bytes`` (little endian), optionally followed by
``blosc``, ``zstd`` or ``gzip`` (every store format v1 signal), :class:`ChunkReader` reads
the chunk object named by the array's own metadata (``chunk_key_encoding``, ``chunk_grid``,
``data_type``, ``codecs``, ``fill_value``) and decodes it with numcodecs, which is what Zarr
itself does underneath. Any other layout (remote stores, sharding, transposes, checksums,
big-endian bytes, a chunk grid other than the recording's ``signal_encoding.chunk_times``)
goes through Zarr.

Where the time goes, and what avoids it:

- Compressed chunk files are memory-mapped and decoded from the page cache (no copy into
  a bytes object first), into reused arrays: chunks evicted from the cache are recycled
  for the next decode when no caller still holds them. Fresh allocations of a few MiB per
  chunk cost a page fault per 4 KiB page on first touch, about as much as decoding lz4.
- An uncompressed chunk file (``compression: none``) *is* the ``(n_channels, chunk_times)``
  float32 array, so it is memory-mapped instead of read: windows are gathered straight from
  the page cache into the batch, one copy, and a window touches only its own pages (so
  uniform shuffling is cheap too).

A reader is per process: DataLoader workers build their own on first use (the dataset
drops it when pickled), and each keeps an LRU cache of decoded chunks so that the many
windows cut from one chunk decode it once.
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from brainfm._logging import logger
from brainfm.errors import StoreFormatError
from brainfm.loading.buffers import ReusableMemory
from brainfm.loading.layout import RecordingLayout
from brainfm.store.format import RECORDINGS_GROUP

__all__ = ["ChunkReader", "configure_worker_threads"]

_BYTES_TO_BYTES = ("blosc", "zstd", "gzip")
#: Evicted chunk arrays kept for reuse (beyond the cache budget), per reader.
_MAX_SPARE = 4


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
    """How to fetch and decode the chunks of one signal array.

    ``kind`` is ``"raw"`` (bytes codec only: the file is the chunk), ``"decode"`` (bytes
    followed by blosc/zstd/gzip, decoded with numcodecs) or ``"zarr"`` (anything else).
    """

    def __init__(self, array: Any, chunk_times: int) -> None:
        from zarr.storage import LocalStore

        meta = array.metadata.to_dict()
        self.array = array
        self.shape = tuple(int(s) for s in meta["shape"])
        if len(self.shape) != 2:
            raise StoreFormatError(f"{array.path}: the signal must be a 2-D array (channel, time), got shape {self.shape}.")
        if meta["data_type"] != "float32":
            raise StoreFormatError(f"{array.path}: signal data type is {meta['data_type']!r}, expected 'float32'.")
        # The unit the loader caches: all channels over `chunk_times` samples (the
        # recording's signal_encoding). Read from the files directly only when that is
        # exactly the stored chunk grid.
        self.chunk_shape = (self.shape[0], int(chunk_times))
        grid = meta["chunk_grid"]
        grid_shape = tuple(int(s) for s in (grid.get("configuration") or {}).get("chunk_shape", ()))
        fill = meta.get("fill_value")
        self.fill_value = 0.0 if fill is None else float(fill)  # "NaN" (format v1) parses as nan
        self.chunk_nbytes = self.chunk_shape[0] * self.chunk_shape[1] * 4
        self.decoders: list[Any] = []
        self.root: str | None = None
        self.kind = "zarr"
        codecs = meta["codecs"]
        fast = (
            isinstance(array.store, LocalStore)
            and grid.get("name") == "regular"
            and grid_shape == self.chunk_shape
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
            self.root = os.path.join(array.store.root, array.path)
            self.encode_key = array.metadata.encode_chunk_key
            self.kind = "decode" if self.decoders else "raw"

    def path(self, chunk_index: int) -> str:
        """The file of one chunk (fast kinds only)."""
        assert self.root is not None
        return os.path.join(self.root, self.encode_key((0, chunk_index)))  # str: pathlib costs ~10 us per chunk

    def _map_file(self, chunk_index: int, access: int) -> mmap.mmap | None:
        """Memory-map one chunk file; None when it does not exist (all fill value).

        Zarr replaces chunk files atomically (a new file renamed over the old one), so a
        mapping never sees a file shrink under it.
        """
        try:
            fd = os.open(self.path(chunk_index), os.O_RDONLY)
        except FileNotFoundError:  # chunks equal to the fill value are not written
            self.check_missing(chunk_index)
            return None
        try:
            size = os.fstat(fd).st_size
            if self.kind == "raw" and size != self.chunk_nbytes:
                raise StoreFormatError(
                    f"{self.path(chunk_index)}: an uncompressed signal chunk must hold {self.chunk_nbytes} bytes "
                    f"({self.chunk_shape[0]} channels x {self.chunk_shape[1]} float32 samples), found {size}. "
                    "The store is damaged: rewrite this recording."
                )
            if not size:
                raise StoreFormatError(f"{self.path(chunk_index)}: the chunk file is empty. The store is damaged.")
            return mmap.mmap(fd, size, access=access)
        finally:
            os.close(fd)

    def check_missing(self, chunk_index: int) -> None:
        """Refuse a chunk file that is absent when the fill value is NaN.

        Store format v1 writes signals with a NaN fill value and finite samples only, so
        every chunk file exists; a missing one was lost (a copy cut short, a deleted file),
        and reading it as NaN would feed NaN to training.
        """
        if np.isnan(self.fill_value):
            raise StoreFormatError(
                f"{self.path(chunk_index)}: this signal chunk file is missing (the store is damaged: "
                "a partial copy or a deleted file). Run `brainfm store check` and re-run "
                "`brainfm preprocess` on this recording's source to rewrite it."
            )

    def lost_through_zarr(self, start: int, stop: int) -> None:
        """Refuse samples ``[start, stop)`` that Zarr read as the NaN fill value (a lost chunk).

        Store format v1 stores finite samples only, so a NaN read through Zarr is a chunk (or
        shard) whose file is missing: Zarr returns the fill value for it without a word.
        """
        store = self.array.store
        where = os.path.join(store.root, self.array.path) if hasattr(store, "root") else f"{store}/{self.array.path}"
        keys = sorted({self.array.metadata.encode_chunk_key((0, i)) for i in self._grid_chunks(start, stop)})
        files = ", ".join(os.path.join(str(where), key) for key in keys)
        raise StoreFormatError(
            f"{where}: samples {start} to {stop} read as NaN, the fill value of a signal chunk whose file is "
            f"missing (the store is damaged: a partial copy or a deleted file); chunk file(s) {files}. Run "
            "`brainfm store check` and re-run `brainfm preprocess` on this recording's source to rewrite it."
        )

    def _grid_chunks(self, start: int, stop: int) -> range:
        """Indices along time of the stored chunks (shards when sharded) that hold ``[start, stop)``."""
        meta = self.array.metadata.to_dict()
        grid = (meta["chunk_grid"].get("configuration") or {}).get("chunk_shape", [0, stop])
        step = max(int(grid[1]), 1)
        return range(start // step, (stop - 1) // step + 1)

    def map(self, chunk_index: int) -> np.ndarray | None:
        """An uncompressed chunk file as a (n_channels, chunk_times) array, without a copy.

        Returns
        -------
        chunk : numpy.ndarray | None
            A private (copy-on-write) memory map, writable for torch's sake but only to be
            read; None when the chunk was never written (all fill value).
        """
        mapping = self._map_file(chunk_index, mmap.ACCESS_COPY)
        return None if mapping is None else np.frombuffer(mapping, dtype="<f4").reshape(self.chunk_shape)

    def read(self, chunk_index: int, out: np.ndarray) -> None:
        """Decode one chunk into ``out`` (edge chunks full size).

        The file is memory-mapped and decoded from the page cache directly (faster than
        reading it into a buffer first).

        Parameters
        ----------
        chunk_index : int
            Chunk number along time.
        out : numpy.ndarray of float32, C-contiguous, shape (n_channels, chunk_times)
            Filled with the chunk.
        """
        n_channels, chunk_times = self.chunk_shape
        if self.kind == "zarr":
            start = chunk_index * chunk_times
            stop = min(start + chunk_times, self.shape[1])
            out[:, : stop - start] = self.array[:, start:stop]
            out[:, stop - start :] = self.fill_value
            if np.isnan(self.fill_value) and np.isnan(out[:, : stop - start]).any():
                self.lost_through_zarr(start, stop)
            return
        mapping = self._map_file(chunk_index, mmap.ACCESS_READ)
        if mapping is None:
            out.fill(self.fill_value)
            return
        with mapping:
            if self.kind == "raw":
                out[...] = np.frombuffer(mapping, dtype="<f4").reshape(n_channels, chunk_times)
                return
            import numcodecs.blosc

            data: Any = mapping
            for i, decoder in enumerate(self.decoders):
                last = i == len(self.decoders) - 1
                if decoder == "blosc":
                    data = numcodecs.blosc.decompress(data, out if last else None)
                else:
                    data = decoder.decode(data, out=out if last else None)
            if data is not out:
                out[...] = np.frombuffer(data, dtype="<f4").reshape(n_channels, chunk_times)
            del data  # no view of the mapping may outlive it


class ChunkReader:
    """Decoded signal chunks of one store, with an LRU cache (one reader per process).

    Parameters
    ----------
    store_path : str | pathlib.Path
        The store folder (opened on first use).
    cache_mib : float
        Budget of the decoded-chunk cache in MiB (memory-mapped uncompressed chunks count
        too: their pages are resident while mapped).

    Notes
    -----
    Arrays evicted from the cache are reused for later decodes, but only when nothing else
    references them (a caller's array, view or ``torch.from_numpy`` tensor keeps a chunk
    intact), so a returned chunk never changes under its holder.
    """

    def __init__(self, store_path: str | Path, cache_mib: float = 128.0) -> None:
        self.store_path = Path(store_path)
        self.cache_bytes = int(cache_mib * 2**20)
        self._zarr_store: Any = None
        self._sources: dict[str, _Source] = {}
        # decoded chunk and the memory it lies in (None for a memory-mapped chunk file)
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, ReusableMemory | None]] = OrderedDict()
        self._cached_bytes = 0
        self._spare: list[ReusableMemory] = []
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
            source = _Source(array, layout.chunk_times)
            if source.kind == "zarr":
                logger.debug("%s: signal read through Zarr (no direct chunk path for its layout)", layout.recording_id)
            self._sources[layout.recording_id] = source
        return source

    def _buffer(self, shape: tuple[int, int]) -> tuple[np.ndarray, ReusableMemory]:
        """An array to decode into: in recycled memory of that size that nobody holds, else in new memory."""
        nbytes = shape[0] * shape[1] * 4
        for i, memory in enumerate(self._spare):
            if memory.nbytes == nbytes and not memory.in_use:
                del self._spare[i]
                return memory.array(shape), memory
        memory = ReusableMemory(nbytes)
        return memory.array(shape), memory

    def _recycle(self, memory: ReusableMemory | None) -> None:
        """Keep memory this reader allocated for a later decode (used only once nobody holds it)."""
        if memory is not None:  # None: a memory map of a chunk file
            self._spare.append(memory)
            if len(self._spare) > _MAX_SPARE:
                del self._spare[0]

    def chunk(self, layout: RecordingLayout, chunk_index: int) -> np.ndarray:
        """The selected channels of one chunk, decoded once, then cached.

        Parameters
        ----------
        layout : RecordingLayout
            The recording.
        chunk_index : int
            Chunk number along time.

        Returns
        -------
        chunk : numpy.ndarray of float32, shape (C, chunk_times)
            Read-only by convention (it is shared through the cache; an uncompressed chunk
            is a private memory map of the chunk file).
        """
        key = (layout.index, int(chunk_index))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached[0]
        source = self._source(layout)
        n_rows, chunk_times = layout.n_channels, source.chunk_shape[1]
        memory: ReusableMemory | None
        if source.kind == "raw":
            mapped = source.map(int(chunk_index))
            if mapped is None:
                decoded, memory = self._buffer((n_rows, chunk_times))
                decoded.fill(source.fill_value)
            elif layout.all_rows:
                decoded, memory = mapped, None  # no copy: windows are gathered from the page cache
            else:
                decoded, memory = self._buffer((n_rows, chunk_times))
                np.take(mapped, layout.rows, axis=0, out=decoded)
            del mapped
        else:
            full, full_memory = self._buffer(source.chunk_shape)
            source.read(int(chunk_index), full)
            if layout.all_rows:
                decoded, memory = full, full_memory
            else:
                decoded, memory = self._buffer((n_rows, chunk_times))
                np.take(full, layout.rows, axis=0, out=decoded)
                self._recycle(full_memory)
            del full
        self.n_decoded += 1
        self._cache[key] = (decoded, memory)
        self._cached_bytes += decoded.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, (evicted, evicted_memory) = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.nbytes
            del evicted
            self._recycle(evicted_memory)
        return decoded

    def clear(self) -> None:
        """Drop cached chunks and open handles (the next read reopens the store)."""
        self._cache.clear()
        self._cached_bytes = 0
        self._spare.clear()
        self._sources.clear()
        self._zarr_store = None
