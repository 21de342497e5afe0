"""Shared-memory slots of DataLoader workers: the take/receive/release protocol, pickling, and
batches a consumer keeps are never overwritten by later ones."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest
import torch

from brainfm.loading import Batch, WindowDataModule
from brainfm.loading.shared_slots import SharedSlots, SlotBatch


def test_slots_are_taken_received_and_released():
    slots = SharedSlots(n_workers=2, slots_per_worker=2, slot_bytes=4 * 60)
    assert slots.slot_bytes % 4096 == 0
    first, a = slots.take(0, (2, 3, 10))
    second, b = slots.take(0, (2, 3, 10))
    assert (first, second) == (0, 1) and slots.take(0, (2, 3, 10)) is None  # worker 0 has two slots
    assert slots.take(1, (2, 3, 10))[0] == 2  # worker 1 has its own
    assert slots.take(1, (1024, 1024)) is None and slots.take(5, (1,)) is None  # too large; no such worker
    a.fill_(1.0)
    received = slots.receive(first, (2, 3, 10))
    assert received.data_ptr() == a.data_ptr() and (received == 1.0).all()  # the same memory, no copy
    kept_view = received[1]
    del received
    assert slots.release() == 0  # a view of the signal is still alive
    del kept_view, a  # (`a` stands for the worker's tensor, which lives in another process)
    gc.collect()
    assert slots.release() == 1 and slots.take(0, (2, 3, 10))[0] == first
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(slots)


def test_slot_batches_pickle_without_their_signal():
    slots = SharedSlots(n_workers=1, slots_per_worker=1, slot_bytes=4 * 4000)
    slot, signal = slots.take(0, (2, 2, 1000))
    signal.copy_(torch.arange(4000, dtype=torch.float32).reshape(2, 2, 1000))
    n = 2
    batch = SlotBatch(signal=signal, channel_mask=torch.ones(n, 2, dtype=torch.bool), sensor_pos=torch.zeros(n, 2, 6),
                      sensor_type=torch.zeros(n, 2, dtype=torch.int64), pos_mask=torch.zeros(n, 2, dtype=torch.bool),
                      frame_ids=torch.full((n, 2), -1, dtype=torch.int64), channel_ids=torch.ones(n, 2, dtype=torch.int64),
                      region_ids=torch.zeros(n, 2, dtype=torch.int64), subject_ids=torch.zeros(n, dtype=torch.int64),
                      recording_ids=torch.zeros(n, dtype=torch.int64), start=torch.tensor([0, 10]))
    batch.slots_key, batch.slot = slots.key, slot
    payload = pickle.dumps(batch)
    assert len(payload) < signal.numel() * 4  # the other fields travel, the signal stays in the slot
    received = pickle.loads(payload)
    assert type(received) is Batch and received.signal.data_ptr() == signal.data_ptr()
    assert torch.equal(received.signal, signal) and received.start.tolist() == [0, 10]
    copy = batch.to("cpu")  # dataclasses.replace: not tied to a slot any more, pickles as a plain batch
    assert type(pickle.loads(pickle.dumps(copy))) is Batch


@pytest.mark.parametrize("keep", [True, False])
def test_worker_slots_never_overwrite_kept_batches(make_recording, make_store, keep):
    store = make_store([make_recording(subject=f"{s:02d}", n_times=2000) for s in range(3)], compression="none")
    data = WindowDataModule(store, window_s=0.5, batch_size=4, num_workers=2, val_fraction=0.0, split_unit="window",
                            shuffle="none", normalization="none")
    loader = data.train_dataloader()
    assert len(loader) > 2 * 4 * 2  # more batches than slots
    kept, pointers = [], []
    for batch in loader:
        pointers.append(batch.signal.data_ptr())
        if keep:
            kept.append(batch)
        else:
            # what the consumer needs: the values, checked right away
            assert torch.equal(batch.signal[:, 0], (batch.start[:, None] + torch.arange(50)).float())
    if keep:
        assert len(set(pointers)) == len(kept)  # every kept batch has its own memory
        for batch in kept:  # sample (c, t) of recording r is c * 10000 + t
            expected = (torch.arange(4)[None, :, None] * 10000 + batch.start[:, None, None] + torch.arange(50)).float()
            assert torch.equal(batch.signal, expected)
    else:
        assert len(set(pointers)) < len(pointers)  # released slots were reused
    assert loader._shared_slots is not None and np.all(loader._shared_slots._state <= 1)
