"""Trials from a store paired with concept embeddings (issue 12 item 1, spec §8.10)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.downstream.retrieval.paired_data import load_concept_embeddings, load_paired_trials
from brainfm.errors import ConfigError
from brainfm.store import StoreWriter

SFREQ = 100.0


def _recording(subject: str, events: list[tuple[float, float, str]]) -> Recording:
    # sample (c, t) holds c * 10000 + t, so every trial can be checked exactly
    signal = (np.arange(3)[:, None] * 10000 + np.arange(2000)[None, :]).astype(np.float32)
    channels = empty_channel_table(["Fz", "Cz", "Pz"], ["eeg"] * 3)
    table = pd.DataFrame(events, columns=["onset_s", "duration_s", "description"])
    source = {"path": f"/data/things/{subject}.edf", "relpath": "", "size": 0, "sha256": ""}
    return Recording(signal, SFREQ, Identity("things", subject=subject), channels, table, source=source)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    writer = StoreWriter(path)
    writer.write(_recording("01", [(1.0, 0.0, "stim/dog"), (2.5, 0.0, "stim/cat"), (4.0, 0.0, "BAD_blink"), (5.0, 0.0, "button")]))
    writer.write(_recording("02", [(3.0, 0.0, "stim/cat"), (6.0, 0.0, "stim/zebra"), (19.9, 0.0, "stim/dog")]))
    return path


@pytest.fixture
def embeddings(tmp_path):
    features = {"cat": np.full(4, 1.0), "dog": np.full(4, 2.0), "owl": np.full(4, 3.0)}
    path = tmp_path / "concepts.npz"
    np.savez(path, **features)
    return path


def test_trials_are_event_locked_windows_labelled_by_concept(store, embeddings):
    with pytest.warns(RuntimeWarning, match="1 concept\\(s\\).*'zebra'"):
        trials = load_paired_trials(store, embeddings, tmin=-0.1, tmax=0.4, pattern=r"stim/(\w+)", normalization="none")
    assert trials.embeddings.ids == ["cat", "dog", "owl"]
    # sub-01: dog at 1.0 s, cat at 2.5 s; sub-02: cat at 3.0 s (dog at 19.9 s runs past the end)
    assert trials.signals.shape == (3, 3, 50)
    starts = trials.signals[:, 0, 0].astype(int).tolist()
    by_start = dict(zip(starts, trials.concepts.tolist(), strict=True))
    assert by_start == {90: 1, 240: 0, 290: 0}
    np.testing.assert_array_equal(trials.signals[0, 2], 20000 + np.arange(starts[0], starts[0] + 50))
    assert sorted(trials.subjects.tolist()) == ["things/01", "things/01", "things/02"]
    paired = trials.embeddings.features[trials.concepts][:, 0]
    assert dict(zip(starts, paired.tolist(), strict=True)) == {90: 2.0, 240: 1.0, 290: 1.0}


def test_whole_descriptions_as_concept_ids(store, tmp_path):
    path = tmp_path / "concepts.h5"
    with h5py.File(path, "w") as file:
        file["features"] = np.eye(2, dtype=np.float32)
        file["concept_ids"] = np.array([b"stim/cat", b"button"])
    with pytest.warns(RuntimeWarning, match="have no embedding"):
        trials = load_paired_trials(store, path, tmin=0.0, tmax=0.2, normalization="none")
    assert sorted(trials.concepts.tolist()) == [0, 0, 1]


def test_embedding_file_layouts(tmp_path):
    npy = tmp_path / "rows.npy"
    np.save(npy, np.arange(6, dtype=np.float64).reshape(3, 2))
    loaded = load_concept_embeddings(npy)
    assert loaded.ids == ["0", "1", "2"] and loaded.features.dtype == np.float32
    h5 = tmp_path / "per_concept.hdf5"
    with h5py.File(h5, "w") as file:
        file["b"] = np.ones(3)
        file["a"] = np.zeros(3)
    loaded = load_concept_embeddings(h5)
    assert loaded.ids == ["a", "b"]
    np.testing.assert_array_equal(loaded.features[:, 0], [0.0, 1.0])
    bad = tmp_path / "ragged.npz"
    np.savez(bad, a=np.ones(3), b=np.ones(4))
    with pytest.raises(ConfigError, match="same length"):
        load_concept_embeddings(bad)
    with pytest.raises(ConfigError, match="unsupported embeddings file type '.csv'"):
        (tmp_path / "x.csv").write_text("a,1\n")
        load_concept_embeddings(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_concept_embeddings(tmp_path / "missing.npz")


def test_no_matching_concept_or_bad_pattern_names_the_fix(store, embeddings):
    with pytest.raises(ConfigError, match="check pattern"):
        load_paired_trials(store, embeddings, tmin=0.0, tmax=0.2, pattern=r"image/(\w+)")
    with pytest.raises(ConfigError, match="exactly one group"):
        load_paired_trials(store, embeddings, tmin=0.0, tmax=0.2, pattern=r"stim/\w+")
