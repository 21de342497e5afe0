"""Map-style dataset of windows that assembles whole batches from decoded chunks.

``dataset.__getitems__(window_indices)`` (what a DataLoader calls with a batch sampler)
returns one :class:`~brainfm.loading.batch.Batch`: the windows are sorted by recording and
start, every chunk they touch is decoded once (or found in the per-process cache), the
windows inside one chunk are cut by a single strided gather straight into the batch, the
rare windows that straddle a chunk boundary are copied piecewise, and the per-channel
normalisation (``zscore``, ``robust``) is applied to each chunk's block of windows right
after it is written, while it is still in the CPU cache. ``dataset[i]`` returns a batch of
one window, for :func:`~brainfm.loading.batch.collate_batches`.

Memory: in a DataLoader worker the batch signal is written into shared memory (the main
process maps it without a copy): into a reused slot of
:class:`~brainfm.loading.shared_slots.SharedSlots` when the loader set them up (fork), else
a fresh segment. In the main process it comes from a few reused buffers
(:class:`~brainfm.loading.buffers.SignalBuffers`). Either way memory is reused only once
the batch that used it is gone, which saves the page faults of a fresh 30-MB allocation
per batch.

Concurrency: the dataset holds only plain arrays and the store path; each process (the
main one, every DataLoader worker) opens the store on first read and keeps its own chunk
cache; ``__getstate__`` drops both, so the dataset pickles cleanly to spawned workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from brainfm._check import check_option
from brainfm.loading.batch import PAD_FRAME_ID, PAD_SENSOR_TYPE, Batch
from brainfm.loading.buffers import SignalBuffers
from brainfm.loading.chunks import ChunkReader, configure_worker_threads
from brainfm.loading.codes import CodesReader
from brainfm.loading.normalization import (
    NORMALIZATIONS,
    channel_affine,
    sensortype_normalize_,
    window_normalize_,
)
from brainfm.loading.shared_slots import SharedSlots, SlotBatch
from brainfm.loading.windows import WindowIndex

__all__ = ["WindowDataset", "init_loader_worker", "whole_batch_collate"]


def whole_batch_collate(batch: Batch) -> Batch:
    """A DataLoader ``collate_fn`` for :class:`WindowDataset`: its ``__getitems__`` returns whole batches.

    Parameters
    ----------
    batch : Batch
        What the dataset returned.

    Returns
    -------
    batch : Batch
        The same batch.
    """
    return batch


def init_loader_worker(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: one thread per worker for torch, blosc and Zarr.

    It lives here, with the dataset, so that a spawned or forkserver worker imports only
    what the dataset needs (not Lightning, which costs seconds per worker start).

    Parameters
    ----------
    worker_id : int
        The DataLoader worker id.
    """
    configure_worker_threads(1)


def _empty_shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor directly in shared memory (for a DataLoader worker's result).

    A worker's result travels to the main process through shared memory; allocating it
    there from the start saves one copy of every batch (as PyTorch's ``default_collate``).
    """
    numel = int(np.prod(shape))
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
    return torch.empty(0, dtype=dtype).new(storage).view(shape)


class _RecordingTensors:
    """Per-recording constants: the normalisation map as tensors, the channels kept unmasked."""

    def __init__(self, index: WindowIndex, layout_index: int, normalization: str) -> None:
        layout = index.layouts[layout_index]
        scale, shift, good = channel_affine(layout.stats, layout.good, normalization)
        needs_affine = normalization in ("zscore", "robust") or not bool(good.all())
        # (C, 1): x * scale + shift on each block of windows (float32, as the stored values)
        self.scale = torch.from_numpy(scale[:, None]) if needs_affine else None
        self.shift = torch.from_numpy(shift[:, None]) if needs_affine and normalization in ("zscore", "robust") else None
        self.good_np = good


class WindowDataset(torch.utils.data.Dataset):
    """Windows of a store, delivered as :class:`~brainfm.loading.batch.Batch` objects.

    Parameters
    ----------
    index : WindowIndex
        The windows (:func:`~brainfm.loading.windows.build_window_index`).
    store_path : str | pathlib.Path
        The store folder the index was built from.
    normalization : "zscore" | "robust" | "sensortype" | "window" | "none"
        Load-time normalisation (:mod:`brainfm.loading.normalization`).
    sensortype_eps : mapping of str to float | None
        ``eps`` by channel type for ``"sensortype"``; None uses BrainOmni's values.
    cache_mib : float
        Decoded-chunk cache per process, in MiB.
    with_labels : bool | None
        Whether batches carry ``labels``; None: when the index has labels.
    codes : CodesReader | None
        Cached tokenizer codes to cut to the same windows (``Batch.codes``); None: no codes.
    """

    def __init__(
        self,
        index: WindowIndex,
        store_path: str | Path,
        normalization: Literal["zscore", "robust", "sensortype", "window", "none"] = "zscore",
        *,
        sensortype_eps: Mapping[str, float] | None = None,
        cache_mib: float = 128.0,
        with_labels: bool | None = None,
        codes: CodesReader | None = None,
    ) -> None:
        check_option("normalization", normalization, NORMALIZATIONS)
        self.codes = codes
        self.index = index
        self.store_path = Path(store_path)
        self.normalization = normalization
        self.sensortype_eps = dict(sensortype_eps) if sensortype_eps is not None else None
        self.cache_mib = float(cache_mib)
        self.with_labels = bool(index.label_map) if with_labels is None else bool(with_labels)
        self._subject_of = np.array([layout.subject_index for layout in index.layouts], dtype=np.int64)
        self._tensors: dict[int, _RecordingTensors] = {}
        self._reader: ChunkReader | None = None
        self._signal_buffers = SignalBuffers()
        #: Set by WindowDataLoader before it forks its workers (see brainfm.loading.shared_slots).
        self._shared_slots: SharedSlots | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # Open handles, decoded chunks and buffers stay in their process (SignalBuffers pickles empty).
        state["_reader"] = None
        state["_tensors"] = {}
        state["_shared_slots"] = None  # a spawned worker allocates fresh shared memory per batch
        return state

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"<WindowDataset | {len(self)} windows, normalization={self.normalization!r}, store {str(self.store_path)!r}>"

    @property
    def reader(self) -> ChunkReader:
        """This process's chunk reader (created on first use)."""
        if self._reader is None:
            self._reader = ChunkReader(self.store_path, cache_mib=self.cache_mib)
        return self._reader

    def _recording_tensors(self, layout_index: int) -> _RecordingTensors:
        tensors = self._tensors.get(layout_index)
        if tensors is None:
            tensors = self._tensors[layout_index] = _RecordingTensors(self.index, layout_index, self.normalization)
        return tensors

    def __getitem__(self, window: int) -> Batch:
        return self.__getitems__([window])

    def __getitems__(self, windows: Sequence[int] | np.ndarray) -> Batch:
        """Assemble the windows into one batch (sorted by recording, then start).

        Parameters
        ----------
        windows : sequence of int
            Window indices into :attr:`index`.

        Returns
        -------
        batch : Batch
            The batch, channels padded (and masked) to the widest recording in it.
        """
        windows = np.asarray(windows, dtype=np.int64)
        if windows.ndim != 1 or not len(windows):
            raise ValueError(f"Expected a non-empty 1-D list of window indices, got shape {windows.shape}.")
        recording = self.index.recording[windows]
        start = self.index.start[windows]
        order = np.lexsort((start, recording))
        windows, recording, start = windows[order], recording[order], start[order]
        n_windows, n_times = len(windows), self.index.window_size_samples
        groups, group_start = np.unique(recording, return_index=True)
        group_stop = np.append(group_start[1:], n_windows)
        widths = [self.index.layouts[g].n_channels for g in groups]
        n_channels = max(widths)

        shape = (n_windows, n_channels, n_times)
        worker = torch.utils.data.get_worker_info()
        slot = None
        if worker is None:
            signal = self._signal_buffers.empty(shape)
        else:
            taken = self._shared_slots.take(worker.id, shape) if self._shared_slots is not None else None
            if taken is None:
                signal = _empty_shared(shape, torch.float32)
            else:
                slot, signal = taken
        # Per-channel fields: one padded row per recording, then one gather per field.
        n_groups = len(groups)
        channel_mask = np.zeros((n_groups, n_channels), dtype=bool)
        sensor_pos = np.zeros((n_groups, n_channels, 6), dtype=np.float32)
        sensor_type = np.full((n_groups, n_channels), PAD_SENSOR_TYPE, dtype=np.int64)
        pos_mask = np.zeros((n_groups, n_channels), dtype=bool)
        frame_ids = np.full((n_groups, n_channels), PAD_FRAME_ID, dtype=np.int64)
        channel_ids = np.zeros((n_groups, n_channels), dtype=np.int64)
        region_ids = np.zeros((n_groups, n_channels), dtype=np.int64)
        for k, (g, i0, i1, width) in enumerate(zip(groups.tolist(), group_start.tolist(), group_stop.tolist(), widths,
                                                   strict=True)):
            block = signal[i0:i1, :width]  # (n, C_rec, T)
            self._cut(g, start[i0:i1], block)  # normalised per channel already
            if width < n_channels:
                signal[i0:i1, width:] = 0.0
            tensors = self._recording_tensors(g)
            layout = self.index.layouts[g]
            if self.normalization == "sensortype":
                sensortype_normalize_(block, layout.sensor_type, tensors.good_np, self.sensortype_eps)
            elif self.normalization == "window":
                window_normalize_(block, tensors.good_np)
            channel_mask[k, :width] = tensors.good_np
            sensor_pos[k, :width] = layout.sensor_pos
            sensor_type[k, :width] = layout.sensor_type
            pos_mask[k, :width] = layout.pos_mask
            frame_ids[k, :width] = layout.frame_ids
            channel_ids[k, :width] = layout.channel_ids
            region_ids[k, :width] = layout.region_ids
        group_of = np.repeat(np.arange(n_groups), group_stop - group_start)  # (B,) row of each window
        batch = (Batch if slot is None else SlotBatch)(
            signal=signal,
            channel_mask=torch.from_numpy(channel_mask[group_of]),
            sensor_pos=torch.from_numpy(sensor_pos[group_of]),
            sensor_type=torch.from_numpy(sensor_type[group_of]),
            pos_mask=torch.from_numpy(pos_mask[group_of]),
            frame_ids=torch.from_numpy(frame_ids[group_of]),
            channel_ids=torch.from_numpy(channel_ids[group_of]),
            region_ids=torch.from_numpy(region_ids[group_of]),
            subject_ids=torch.from_numpy(self._subject_of[recording]),
            recording_ids=torch.from_numpy(recording.copy()),
            start=torch.from_numpy(start.copy()),
            labels=torch.from_numpy(self.index.label[windows]) if self.with_labels else None,
            codes=None if self.codes is None else self.codes.batch_codes(
                self.index, recording, start, group_start, group_stop, n_channels),
        )
        if slot is not None:
            batch.slots_key, batch.slot = self._shared_slots.key, slot  # type: ignore[union-attr,attr-defined]
            batch.channel_rows = (group_of, {  # type: ignore[attr-defined]
                "channel_mask": channel_mask, "sensor_pos": sensor_pos, "sensor_type": sensor_type,
                "pos_mask": pos_mask, "frame_ids": frame_ids,
                "channel_ids": channel_ids, "region_ids": region_ids,
            })
        return batch

    def _cut(self, layout_index: int, starts: np.ndarray, out: torch.Tensor) -> None:
        """Write the windows ``starts`` (sorted) of one recording, normalised, into ``out`` (n, C, T)."""
        layout = self.index.layouts[layout_index]
        chunk_times, n_times = layout.chunk_times, out.shape[2]
        first = starts // chunk_times
        last = (starts + n_times - 1) // chunk_times
        inside = np.flatnonzero(first == last)
        reader = self.reader
        tensors = self._recording_tensors(layout_index)
        # Windows inside one chunk: one strided gather per chunk, then the affine map on that
        # block while it is in cache. Sorted starts make the windows of each chunk a
        # contiguous run of rows (a window crossing into the next chunk starts after them).
        if len(inside):
            inside_first = first[inside]
            bounds = np.concatenate(([0], np.flatnonzero(np.diff(inside_first)) + 1, [len(inside)]))
            run_chunks = inside_first[bounds[:-1]].tolist()
            run_rows = inside.tolist()
            bounds_list = bounds.tolist()
            local = torch.from_numpy(starts - first * chunk_times)  # start of each window in its chunk
            for k, chunk_index in enumerate(run_chunks):
                row0, row1 = run_rows[bounds_list[k]], run_rows[bounds_list[k + 1] - 1] + 1
                chunk = torch.from_numpy(reader.chunk(layout, chunk_index))  # (C, chunk_times)
                # (chunk_times - T + 1, C, T) view: window w starts at sample w of the chunk
                view = chunk.as_strided((chunk_times - n_times + 1, chunk.shape[0], n_times), (1, chunk_times, 1))
                block = out[row0:row1]
                torch.index_select(view, 0, local[row0:row1], out=block)
                self._normalize_(block, tensors)
        # Windows across chunk boundaries: copy piece by piece.
        for row in np.flatnonzero(first != last):
            position = 0
            for chunk_index in range(int(first[row]), int(last[row]) + 1):
                chunk = reader.chunk(layout, chunk_index)
                lo = max(int(starts[row]) - chunk_index * chunk_times, 0)
                hi = min(int(starts[row]) + n_times - chunk_index * chunk_times, chunk_times)
                out[row, :, position : position + hi - lo] = torch.from_numpy(chunk[:, lo:hi])
                position += hi - lo
            self._normalize_(out[row : row + 1], tensors)

    @staticmethod
    def _normalize_(block: torch.Tensor, tensors: _RecordingTensors) -> None:
        """``block * scale + shift`` per channel, in place (two float32 passes, as numpy would)."""
        if tensors.scale is not None:
            block.mul_(tensors.scale)
        if tensors.shift is not None:
            block.add_(tensors.shift)
