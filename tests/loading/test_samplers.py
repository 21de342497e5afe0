"""Samplers: chunk-aware shuffling, weights, splits, resume, DDP shards, worker loaders."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from brainfm.errors import ConfigError
from brainfm.loading import (
    WindowBatchSampler,
    WindowDataLoader,
    WindowDataset,
    build_window_index,
    epoch_order,
    split_index,
)


@pytest.fixture
def index_and_store(make_recording, make_store):
    recordings = [make_recording("a", f"{s:02d}", n_times=3000) for s in range(4)]
    recordings += [make_recording("b", f"{s:02d}", n_times=1000, n_channels=2) for s in range(3)]
    store = make_store(recordings)
    return build_window_index(store, window_s=0.5), store  # 50-sample windows, 256-sample chunks


def test_chunk_shuffle_is_a_permutation_with_chunk_locality(index_and_store):
    index, _ = index_and_store
    order = epoch_order(index, seed=1, epoch=0, shuffle="chunk", shuffle_chunks=2)
    assert sorted(order.tolist()) == list(range(len(index)))
    assert not np.array_equal(order, np.arange(len(index)))
    again = epoch_order(index, seed=1, epoch=0, shuffle="chunk", shuffle_chunks=2)
    other = epoch_order(index, seed=1, epoch=1, shuffle="chunk", shuffle_chunks=2)
    assert np.array_equal(order, again) and not np.array_equal(order, other)
    # consecutive windows come from a buffer of at most 2 chunks
    chunk = index.chunk()[order]
    per_buffer = [len(set(chunk[i : i + 8].tolist())) for i in range(0, len(chunk) - 8, 8)]
    assert max(per_buffer) <= 4
    uniform = epoch_order(index, seed=1, epoch=0, shuffle="uniform")
    assert sorted(uniform.tolist()) == list(range(len(index)))
    assert epoch_order(index, seed=1, epoch=0, shuffle="none").tolist() == list(range(len(index)))


def test_dataset_weights_mix_datasets(index_and_store):
    index, _ = index_and_store
    datasets = index.recording_field("dataset")
    order = epoch_order(index, seed=0, epoch=0, dataset_weights={"a": 1.0, "b": 1.0}, epoch_size=400)
    picked = datasets[order]
    assert len(order) == 400 and (picked == "a").sum() == 200 and (picked == "b").sum() == 200
    assert len(set(order[picked == "b"].tolist())) == (datasets == "b").sum()  # 60 windows, all used
    only_a = epoch_order(index, seed=0, epoch=0, dataset_weights={"a": 1.0, "b": 0.0})
    assert set(datasets[only_a]) == {"a"}
    with pytest.raises(ConfigError, match="no weight for the datasets"):
        epoch_order(index, seed=0, epoch=0, dataset_weights={"a": 1.0})


def test_split_by_subject_is_disjoint_and_seeded(index_and_store):
    index, _ = index_and_store
    parts = split_index(index, {"train": 0.6, "val": 0.2, "test": 0.2}, unit="subject", seed=3)
    subjects = {name: set(part.recording_field("subject").tolist()) for name, part in parts.items()}
    assert not (subjects["train"] & subjects["val"]) and not (subjects["train"] & subjects["test"])
    assert all(subjects.values()) and sum(len(p) for p in parts.values()) == len(index)
    again = split_index(index, {"train": 0.6, "val": 0.2, "test": 0.2}, unit="subject", seed=3)
    assert all(np.array_equal(parts[k].start, again[k].start) for k in parts)
    by_recording = split_index(index, {"train": 0.5, "val": 0.5}, unit="recording", seed=0)
    assert sum(len(p) for p in by_recording.values()) == len(index)
    by_window = split_index(index, {"train": 0.9, "val": 0.1}, unit="window", seed=0)
    assert len(by_window["val"]) == round(0.1 * len(index))


def test_sampler_resumes_exactly_where_it_stopped(index_and_store):
    index, _ = index_and_store
    sampler = WindowBatchSampler(index, 16, seed=5, shuffle="chunk")
    reference = WindowBatchSampler(index, 16, seed=5, shuffle="chunk")
    epoch0, epoch1 = list(reference), list(reference)
    assert epoch0 != epoch1
    iterator = iter(sampler)
    seen = [next(iterator) for _ in range(7)]
    state = json.loads(json.dumps(sampler.state_dict()))
    assert state["position"] == 7 and state["epoch"] == 0
    restored = WindowBatchSampler(index, 16, seed=5, shuffle="chunk")
    restored.load_state_dict(state)
    rest = list(restored)
    assert seen + rest == epoch0
    assert list(restored) == epoch1  # and the next epoch follows as usual
    with pytest.raises(ValueError, match="batch_size: saved 16, now 8"):
        WindowBatchSampler(index, 8, seed=5).load_state_dict(state)


def test_bucketing_gives_one_channel_count_per_batch(index_and_store):
    index, _ = index_and_store
    sampler = WindowBatchSampler(index, 16, bucket_by_channels=True, seed=0)
    counts = index.n_channels
    batches = list(sampler)
    assert all(len(set(counts[b].tolist())) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(index)))


def test_shards_are_disjoint_and_cover_the_epoch(index_and_store):
    index, _ = index_and_store
    n_batches = -(-len(index) // 10)
    shards = [list(WindowBatchSampler(index, 10, seed=2, rank=r, world_size=3, num_workers=2)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    windows = [i for shard in shards for batch in shard for i in batch]
    assert set(windows) == set(range(len(index)))
    repeated = len(windows) - len(index)
    assert 0 <= repeated <= 10 * (3 - n_batches % 3) % 30  # only padding batches repeat


def test_loader_with_workers_state_counts_delivered_batches(index_and_store):
    index, store = index_and_store
    dataset = WindowDataset(index, store, "zscore")
    sampler = WindowBatchSampler(index, 16, seed=0, num_workers=2)
    loader = WindowDataLoader(dataset, sampler, num_workers=2, persistent_workers=True)
    full = [b.start.tolist() + b.recording_ids.tolist() for b in loader]
    iterator = iter(loader)
    head = [next(iterator).start.tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state["position"] == 3 and state["epoch"] == 1
    del iterator
    resumed_sampler = WindowBatchSampler(index, 16, seed=0, num_workers=2)
    resumed = WindowDataLoader(dataset, resumed_sampler, num_workers=0)
    resumed.load_state_dict(state)
    rest = [b.start.tolist() for b in resumed]
    epoch1 = [b.start.tolist() for b in WindowDataLoader(dataset, WindowBatchSampler(index, 16, seed=0, num_workers=2))]
    assert len(full) == len(epoch1) and head + rest != [] and len(head) + len(rest) == len(full)
    reference = WindowBatchSampler(index, 16, seed=0, num_workers=2)
    list(reference)  # epoch 0
    expected = [sorted(index.start[b].tolist()) for b in reference.plan(1)]
    assert [sorted(x) for x in head + rest] == expected


_DDP_SCRIPT = """
import json, sys
from pathlib import Path
import torch.distributed as dist
from brainfm.loading import WindowDataModule

rank, world_size, init_file, store, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
try:
    data = WindowDataModule(store, window_s=0.5, batch_size=10, num_workers=0, val_fraction=0.0, seed=4)
    data.setup("fit")
    seen = []
    for batch in data.train_dataloader():
        seen += list(zip(batch.recording_ids.tolist(), batch.start.tolist()))
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(seen))
finally:
    dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ddp_ranks_receive_disjoint_windows_covering_the_epoch(index_and_store, tmp_path):
    # Two real processes joined by torch.distributed (gloo, CPU), each building the data module.
    index, store = index_and_store
    assert len(index) % 20 == 0  # 2 ranks x batches of 10 divide the epoch: no padding
    script = tmp_path / "ddp_rank.py"
    script.write_text(_DDP_SCRIPT)
    processes = [
        subprocess.Popen([sys.executable, str(script), str(rank), "2", str(tmp_path / "init"), str(store), str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    ranks = [set(map(tuple, json.loads((tmp_path / f"rank{r}.json").read_text()))) for r in range(2)]
    everything = set(zip(index.recording.tolist(), index.start.tolist(), strict=True))
    assert ranks[0] and ranks[1] and not (ranks[0] & ranks[1])
    assert ranks[0] | ranks[1] == everything


def _windows(batch) -> list[tuple[int, int]]:
    return sorted(zip(batch.recording_ids.tolist(), batch.start.tolist(), strict=True))


def _planned(index, batches) -> list[list[tuple[int, int]]]:
    return [sorted(zip(index.recording[b].tolist(), index.start[b].tolist(), strict=True)) for b in batches]


def test_loader_state_after_a_full_epoch_without_set_epoch(index_and_store):
    # A plain loop, no workers, no set_epoch: the second pass is epoch 1, and its state says so.
    index, store = index_and_store
    dataset = WindowDataset(index, store, "none")
    loader = WindowDataLoader(dataset, WindowBatchSampler(index, 16, seed=0))
    epoch0 = [_windows(b) for b in loader]
    iterator = iter(loader)
    head = [_windows(next(iterator)) for _ in range(2)]
    state = loader.state_dict()
    assert (state["epoch"], state["position"]) == (1, 2)
    del iterator
    reference = WindowBatchSampler(index, 16, seed=0)
    assert epoch0 == _planned(index, reference.plan(0))
    epoch1 = _planned(index, reference.plan(1))
    assert head == epoch1[:2]
    resumed = WindowDataLoader(dataset, WindowBatchSampler(index, 16, seed=0))
    resumed.load_state_dict(state)
    assert [_windows(b) for b in resumed] == epoch1[2:]


def test_loader_with_workers_resumes_twice_in_a_row(index_and_store):
    # Workers prefetch as soon as the iterator starts: the resume position must not be lost to them.
    index, store = index_and_store
    dataset = WindowDataset(index, store, "none")

    def loader(state=None) -> WindowDataLoader:
        made = WindowDataLoader(dataset, WindowBatchSampler(index, 16, seed=0, num_workers=2), num_workers=2)
        if state is not None:
            made.load_state_dict(state)
        return made

    plan = _planned(index, WindowBatchSampler(index, 16, seed=0, num_workers=2).plan(0))
    first = loader()
    iterator = iter(first)
    head = [_windows(next(iterator)) for _ in range(2)]
    state = first.state_dict()
    del iterator
    assert (state["epoch"], state["position"]) == (0, 2)
    second = loader(state)
    iterator = iter(second)
    middle = [_windows(next(iterator)) for _ in range(2)]
    state = second.state_dict()
    del iterator
    assert (state["epoch"], state["position"]) == (0, 4)
    rest = [_windows(b) for b in loader(state)]
    assert head + middle + rest == plan


def _state_after(sampler: WindowBatchSampler, n_batches: int) -> dict:
    iterator = iter(sampler)
    for _ in range(n_batches):
        next(iterator)
    return json.loads(json.dumps(sampler.state_dict()))  # as a checkpoint stores it


def test_resume_refuses_other_plan_settings_naming_each(index_and_store):
    index, _ = index_and_store
    state = _state_after(WindowBatchSampler(index, 16, seed=5), 3)
    with pytest.raises(ValueError, match=r"batch_size: saved 16, now 32") as info:
        WindowBatchSampler(index, 32, seed=5).load_state_dict(state)
    message = str(info.value)
    assert "same settings" in message and "afresh" in message and "set_epoch(0)" in message
    # Settings the old checks did not cover: each changes which windows land in which batch.
    changed = {
        "shuffle": ({"shuffle": "uniform"}, "saved 'chunk', now 'uniform'"),
        "shuffle_chunks": ({"shuffle_chunks": 4}, "saved 32, now 4"),
        "drop_last": ({"drop_last": True}, "saved False, now True"),
        "bucket_by_channels": ({"bucket_by_channels": True}, "saved False, now True"),
        "dataset_weights": ({"dataset_weights": {"a": 1, "b": 1}}, "saved None, now {'a': 1.0, 'b': 1.0}"),
        "rank": ({"rank": 1, "world_size": 2}, "saved 0, now 1"),
        "num_workers": ({"num_workers": 2}, "saved 1, now 2"),
    }
    for name, (kwargs, values) in changed.items():
        with pytest.raises(ValueError, match=rf"{name}: {re.escape(values)}"):
            WindowBatchSampler(index, 16, seed=5, **kwargs).load_state_dict(state)
    weighted = _state_after(WindowBatchSampler(index, 16, seed=5, dataset_weights={"a": 2, "b": 1}, epoch_size=300), 2)
    with pytest.raises(ValueError, match=r"epoch_size: saved 300, now 200"):
        WindowBatchSampler(index, 16, seed=5, dataset_weights={"a": 2, "b": 1}, epoch_size=200).load_state_dict(weighted)
    # every differing setting is named in one error
    with pytest.raises(ValueError, match=r"batch_size: saved 16, now 8; .*seed: saved 5, now 6"):
        WindowBatchSampler(index, 8, seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match=r"n_windows: saved \d+, now \d+"):
        WindowBatchSampler(index.subset(np.arange(len(index) - 1)), 16, seed=5).load_state_dict(state)


def test_resume_with_the_same_settings_continues_exactly(index_and_store):
    index, _ = index_and_store
    settings = dict(seed=3, shuffle="chunk", shuffle_chunks=2, drop_last=True, dataset_weights={"a": 2, "b": 1},
                    epoch_size=330, rank=1, world_size=2, num_workers=2)
    reference = WindowBatchSampler(index, 12, **settings)
    epoch0 = list(reference)
    sampler = WindowBatchSampler(index, 12, **settings)
    state = _state_after(sampler, 4)
    assert state["plan"]["dataset_weights"] == {"a": 2.0, "b": 1.0} and state["plan"]["num_workers"] == 2
    resumed = WindowBatchSampler(index, 12, **settings)
    resumed.load_state_dict(state)
    assert epoch0[:4] + list(resumed) == epoch0


def test_state_at_an_epoch_boundary_may_start_the_epoch_with_new_settings(index_and_store):
    # Position 0: no batch of the epoch has been used, so any plan covers it exactly once.
    index, _ = index_and_store
    sampler = WindowBatchSampler(index, 16, seed=5)
    list(sampler)
    state = sampler.state_dict()
    assert (state["epoch"], state["position"]) == (1, 0)
    other = WindowBatchSampler(index, 32, seed=5, shuffle="uniform")
    other.load_state_dict(state)
    assert list(other) == [b.tolist() for b in WindowBatchSampler(index, 32, seed=5, shuffle="uniform").plan(1)]


def test_state_without_fingerprint_gets_the_old_checks(index_and_store):
    index, _ = index_and_store
    state = _state_after(WindowBatchSampler(index, 16, seed=5), 3)
    del state["plan"]
    WindowBatchSampler(index, 16, seed=5, shuffle="uniform").load_state_dict(state)  # not recorded: accepted
    with pytest.raises(ValueError, match=r"batch_size: saved 16, now 8"):
        WindowBatchSampler(index, 8, seed=5).load_state_dict(state)


def _reference_selection(index, weights: dict[str, float], total: int, rng: np.random.Generator) -> np.ndarray:
    """The documented rule, spelt out per dataset name: shares round(total * w / sum(w)), whole passes + a draw."""
    datasets = np.array([index.layouts[r].dataset for r in index.recording], dtype=object)
    present = sorted(set(datasets.tolist()))
    w = np.array([weights[d] for d in present], dtype=float)
    parts = []
    for name, share in zip(present, np.round(total * w / w.sum()).astype(int), strict=True):
        members = np.flatnonzero(datasets == name)
        if share:
            full, remainder = divmod(int(share), len(members))
            parts += [members] * full + [rng.choice(members, size=remainder, replace=False)]
    return np.sort(np.concatenate(parts))


def test_weighted_mixing_draws_datasets_in_the_requested_proportions(index_and_store):
    index, _ = index_and_store  # dataset a: 240 windows, b: 60
    datasets = index.recording_field("dataset")
    for epoch in range(3):
        order = epoch_order(index, seed=11, epoch=epoch, shuffle="none", dataset_weights={"a": 3, "b": 1},
                            epoch_size=400)
        picked = datasets[order]
        assert ((picked == "a").sum(), (picked == "b").sum()) == (300, 100)
        # a: one whole pass + 60 drawn without replacement; b: one pass + 40 drawn
        times_a = np.bincount(order, minlength=len(index))[datasets == "a"]
        assert ((times_a == 1).sum(), (times_a == 2).sum()) == (180, 60)
        expected = _reference_selection(index, {"a": 3, "b": 1}, 400, np.random.default_rng([11, epoch, 0x6272]))
        assert np.array_equal(order, expected)
    # over many epochs, a shares drawn inside a dataset stay uniform (within tolerance)
    counts = np.zeros(len(index))
    for epoch in range(200):
        np.add.at(counts, epoch_order(index, seed=0, epoch=epoch, shuffle="none", dataset_weights={"a": 1, "b": 1},
                                      epoch_size=100), 1)
    assert np.allclose(counts[datasets == "a"] / 200, 50 / 240, atol=0.12)
    assert np.allclose(counts[datasets == "b"] / 200, 50 / 60, atol=0.12)


class _CountingName(str):
    comparisons = 0

    def __eq__(self, other):
        type(self).comparisons += 1
        return str.__eq__(self, other)

    def __lt__(self, other):
        type(self).comparisons += 1
        return str.__lt__(self, other)

    __hash__ = str.__hash__


def test_weighted_selection_compares_dataset_names_per_recording_not_per_window(index_and_store):
    # Large corpora have millions of windows but thousands of recordings: names are mapped to
    # integer codes once per recording, the windows are grouped by code.
    index, _ = index_and_store
    expected = epoch_order(index, seed=2, epoch=0, dataset_weights={"a": 1, "b": 2}, epoch_size=250)
    for layout in index.layouts:
        layout.dataset = _CountingName(layout.dataset)
    _CountingName.comparisons = 0
    order = epoch_order(index, seed=2, epoch=0, dataset_weights={"a": 1, "b": 2}, epoch_size=250)
    assert np.array_equal(order, expected)
    assert _CountingName.comparisons <= 4 * len(index.layouts) < len(index)
