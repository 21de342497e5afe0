"""Worker start methods: fork, forkserver (Python 3.14's default on Linux) and spawn deliver the
batches of the main process, through reused shared-memory slots (fork) or a fresh shared
segment per batch (the fallback); reusing memory never reads reference counts."""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest
import torch

from brainfm.loading import WindowDataModule
from brainfm.loading.buffers import SignalBuffers
from brainfm.loading.chunks import ChunkReader
from brainfm.loading.shared_slots import SharedSlots
from brainfm.loading.windows import build_window_index

FIELDS = ("signal", "channel_mask", "sensor_pos", "sensor_type", "channel_ids", "region_ids", "subject_ids")


def _windows(data: WindowDataModule, batches: list) -> dict[tuple[int, int], list[torch.Tensor]]:
    """Each window's fields, by (recording, start), cut to the recording's own channels."""
    widths = [layout.n_channels for layout in data.index.layouts]
    out = {}
    for batch in batches:
        for i, (r, s) in enumerate(zip(batch.recording_ids.tolist(), batch.start.tolist(), strict=True)):
            out[(r, s)] = [getattr(batch, name)[i, : widths[r]] if getattr(batch, name).ndim > 1
                           else getattr(batch, name)[i] for name in FIELDS]
    return out


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_start_method_delivers_the_main_process_batches(make_recording, make_store, method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"the {method!r} start method does not exist on {sys.platform}")
    recordings = [make_recording(subject="01", n_channels=4, n_times=1500, bad=(1,)),
                  make_recording(subject="02", n_channels=3, n_times=1200, names=["Cz", "Pz", "Oz"])]
    store = make_store(recordings, compression="lz4")
    options = dict(window_s=0.5, stride_s=0.3, batch_size=4, val_fraction=0.0, split_unit="window", shuffle="uniform")
    reference_data = WindowDataModule(store, **options)
    reference = _windows(reference_data, [batch for batch in reference_data.train_dataloader()])
    # one worker where each starts a fresh interpreter (seconds of imports on a 2-core CI machine)
    n_workers = 2 if method == "fork" else 1
    data = WindowDataModule(store, num_workers=n_workers, multiprocessing_context=method, **options)
    loader = data.train_dataloader()
    kept = list(loader)  # every batch kept: under fork the slots run out and the fallback takes over
    n_slots = n_workers * 4  # per worker: prefetch 2 + 2 held by the consumer
    assert len(kept) > n_slots
    if method == "fork":
        slots = loader._shared_slots
        assert slots is not None and len(slots._delivered) == n_slots  # the first batches came in slots
    else:
        assert loader._shared_slots is None  # the workers cannot inherit them
    delivered = _windows(data, kept)
    assert delivered.keys() == reference.keys() and len(delivered) == len(data.index)
    for key, values in reference.items():
        for name, a, b in zip(FIELDS, values, delivered[key], strict=True):
            assert torch.equal(a, b), (method, key, name)


def test_memory_reuse_never_reads_reference_counts(monkeypatch, make_recording, make_store):
    """Python 3.14 borrows references on the stack and free-threaded builds defer them: counts lie."""

    getrefcount = sys.getrefcount

    def counted(obj: object) -> int:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("brainfm"):  # (pandas reads counts for its copy-on-write checks)
            raise AssertionError(f"{caller} called sys.getrefcount")
        return getrefcount(obj) - 1  # without this frame's reference

    monkeypatch.setattr(sys, "getrefcount", counted)
    buffers = SignalBuffers(n_buffers=2)
    first = buffers.empty((2, 3, 5))
    first.fill_(1.0)
    pointer = first.data_ptr()
    assert buffers.empty((2, 3, 5)).data_ptr() != pointer  # `first` is alive
    kept = first[0].numpy()
    del first
    assert buffers.empty((2, 3, 5)).data_ptr() != pointer and (kept == 1.0).all()
    del kept
    assert buffers.empty((2, 3, 5)).data_ptr() == pointer  # now free: reused

    store = make_store([make_recording(n_times=2000)])
    layout = build_window_index(store, window_s=1.0).layouts[0]
    reader = ChunkReader(store, cache_mib=0.001)  # one chunk cached: each read evicts the previous one
    held = reader.chunk(layout, 0)
    expected = held.copy()
    for chunk_index in (1, 2, 3, 4, 5, 6, 7):
        reader.chunk(layout, chunk_index)
    np.testing.assert_array_equal(held, expected)  # held: never recycled
    del held
    spares = len(reader._spare)
    reader.chunk(layout, 0)
    assert spares and len(reader._spare) < spares + 1  # a spare was taken for the decode

    slots = SharedSlots(n_workers=1, slots_per_worker=1, slot_bytes=4 * 30)
    slot, written = slots.take(0, (2, 3, 5))
    received = slots.receive(slot, (2, 3, 5))
    del written
    assert slots.release() == 0  # the consumer holds it
    del received
    assert slots.release() == 1


def test_a_worker_unpickling_the_dataset_does_not_import_lightning():
    """spawn/forkserver workers import what the dataset needs; Lightning alone costs seconds per worker."""
    import subprocess

    code = ("import pickle, sys; import brainfm.loading.dataset as d; "
            "pickle.loads(pickle.dumps((d.whole_batch_collate, d.init_loader_worker))); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
