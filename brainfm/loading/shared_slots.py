"""Shared-memory slots that DataLoader workers fill with batch signals, reused once released.

A worker's batch reaches the main process through shared memory. PyTorch creates a new
shared-memory segment for every batch, and writing a new 33.5 MB segment (256 windows x 64
channels x 512 samples) costs one page fault, and a zeroed page, per 4 KiB: measured at
about 30 ms per batch in each of two workers, as long as reading the batch itself.
:class:`SharedSlots` keeps a few segments per worker instead and reuses each one once the
main process has released the batch that used it.

Protocol (fork start method only: the slots are one anonymous shared mapping made in the
main process before the workers start, so the workers inherit it):

- a worker owns ``slots_per_worker`` slots; it takes one whose state is *free*, marks it
  *in use*, writes the signal into it and returns a batch that pickles as
  ``(slots key, slot, shape)`` instead of a copy of the signal;
- the main process unpickles that into a :class:`~brainfm.loading.batch.Batch` whose signal
  is a view of the slot, and remembers the slot;
- :meth:`SharedSlots.release` (called by the loader for every batch it yields) marks free
  the remembered slots whose signal nothing references any more (numpy views and tensors
  of the slot count; followed with weak references, see :mod:`brainfm.loading.buffers`).

Only a worker sets a slot *in use*, only for a *free* slot it owns, and only the main
process sets it *free*, for a slot whose batch it has received: the two never race. When
a worker finds no free slot (the consumer keeps many batches), it falls back to a fresh
segment, so a kept batch is never overwritten.
"""

from __future__ import annotations

import itertools
import mmap
import os
import threading
import weakref
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from brainfm.loading.batch import Batch
from brainfm.loading.buffers import ReusableMemory

__all__ = ["SharedSlots", "SlotBatch"]

_FREE, _IN_USE = 0, 1
_PAGE = mmap.PAGESIZE
_counter = itertools.count()
#: The main process's slots by key, to resolve unpickled batches.
_REGISTRY: weakref.WeakValueDictionary[str, SharedSlots] = weakref.WeakValueDictionary()


class SharedSlots:
    """Reusable shared-memory slots for the batch signals of a DataLoader's workers.

    Parameters
    ----------
    n_workers : int
        DataLoader workers (worker ``w`` owns slots ``w * slots_per_worker ...``).
    slots_per_worker : int
        Slots per worker: batches it has in flight plus those the consumer still holds.
    slot_bytes : int
        Capacity of one slot (the largest batch signal, float32).
    """

    def __init__(self, n_workers: int, slots_per_worker: int, slot_bytes: int) -> None:
        self.key = f"{os.getpid()}-{next(_counter)}"
        self.n_workers = int(n_workers)
        self.slots_per_worker = int(slots_per_worker)
        self.slot_bytes = -(-int(slot_bytes) // _PAGE) * _PAGE
        n_slots = self.n_workers * self.slots_per_worker
        # MAP_SHARED | MAP_ANONYMOUS: pages are allocated on first touch and shared with
        # processes forked afterwards.
        self._arena = mmap.mmap(-1, max(n_slots * self.slot_bytes, _PAGE))
        self._state = np.frombuffer(mmap.mmap(-1, _PAGE), dtype=np.uint8)[:n_slots]
        arena = memoryview(self._arena)
        self._slots = [ReusableMemory(arena[i * self.slot_bytes : (i + 1) * self.slot_bytes]) for i in range(n_slots)]
        self._delivered: list[int] = []
        self._lock = threading.Lock()
        _REGISTRY[self.key] = self

    def __repr__(self) -> str:
        return (f"<SharedSlots {self.key} | {self.n_workers} workers x {self.slots_per_worker} slots of "
                f"{self.slot_bytes / 2**20:.1f} MiB>")

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("SharedSlots live in one process tree (fork); they cannot be pickled.")

    def _tensor(self, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.from_numpy(self._slots[slot].array(shape))

    def take(self, worker_id: int, shape: tuple[int, ...]) -> tuple[int, torch.Tensor] | None:
        """In a worker: a free slot of this worker as a float32 tensor of ``shape``.

        Parameters
        ----------
        worker_id : int
            The DataLoader worker id.
        shape : tuple of int
            The signal shape.

        Returns
        -------
        slot, tensor : tuple of (int, torch.Tensor) | None
            None when no slot of this worker is free or the signal does not fit.
        """
        if not 0 <= worker_id < self.n_workers or int(np.prod(shape)) * 4 > self.slot_bytes:
            return None
        first = worker_id * self.slots_per_worker
        for slot in range(first, first + self.slots_per_worker):
            if self._state[slot] == _FREE:
                self._state[slot] = _IN_USE
                return slot, self._tensor(slot, shape)
        return None

    def receive(self, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        """In the main process: the signal a worker wrote into ``slot``, without a copy."""
        with self._lock:
            self._delivered.append(slot)
        return self._tensor(slot, shape)

    def release(self) -> int:
        """Mark free every received slot whose signal nothing references any more.

        Returns
        -------
        n_released : int
            Slots handed back to their workers.
        """
        with self._lock:
            kept = []
            for slot in self._delivered:
                if self._slots[slot].in_use:
                    kept.append(slot)
                else:
                    self._state[slot] = _FREE
            released = len(self._delivered) - len(kept)
            self._delivered = kept
        return released


class SlotBatch(Batch):
    """A batch whose signal lies in a :class:`SharedSlots` slot; pickles without the signal.

    ``channel_rows``, when set, is ``(row_of_window, tables)``: the per-channel fields as one
    row per recording (``tables[name][row_of_window]`` is the field), sent instead of the
    (B, C) fields themselves.
    """

    slots_key: str = ""
    slot: int = -1
    channel_rows: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.slot < 0:  # not in a slot (e.g. a copy made by dataclasses.replace): a plain Batch
            return Batch, tuple(getattr(self, f.name) for f in fields(self))
        # The other fields are small: sent by value (numpy), they avoid a shared-memory segment
        # and a file-descriptor handshake each (several ms per batch in the receiving process).
        compact = self.channel_rows[1] if self.channel_rows is not None else {}
        others = {f.name: None if getattr(self, f.name) is None else getattr(self, f.name).numpy()
                  for f in fields(self) if f.name != "signal" and f.name not in compact}
        return _receive_batch, (self.slots_key, self.slot, tuple(self.signal.shape), others, self.channel_rows)


def _receive_batch(key: str, slot: int, shape: tuple[int, ...], others: dict[str, Any],
                   channel_rows: tuple[np.ndarray, dict[str, np.ndarray]] | None = None) -> Batch:
    slots = _REGISTRY.get(key)
    if slots is None:
        raise RuntimeError(
            f"A DataLoader worker sent a batch in shared-memory slots {key!r} that this process does not "
            "own; SharedSlots need the fork start method and the loader that created them."
        )
    tensors = {name: None if value is None else torch.from_numpy(value) for name, value in others.items()}
    if channel_rows is not None:
        row_of_window, tables = channel_rows
        tensors.update({name: torch.from_numpy(table[row_of_window]) for name, table in tables.items()})
    return Batch(signal=slots.receive(slot, shape), **tensors)
