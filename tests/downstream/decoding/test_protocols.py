"""Folds never share a subject (cross_subject) or a run (cross_run); validation never touches test."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest

from brainfm.downstream.decoding.protocols import make_folds, validation_split
from brainfm.downstream.decoding.task import ProtocolConfig, load_task
from brainfm.downstream.decoding.trials import load_trials
from brainfm.errors import ConfigError


@pytest.fixture(scope="module")
def ssvep_trials(ssvep_store):
    return load_trials(load_task(files("brainfm.configs") / "downstream" / "ssvep_exo.yaml", store=ssvep_store))


@pytest.mark.parametrize("n_folds", [None, 2])
def test_cross_subject_folds_never_share_a_subject(ssvep_trials, n_folds):
    protocol = ProtocolConfig(name="cross_subject", n_folds=n_folds, seeds=[0])
    folds = make_folds(ssvep_trials, protocol, seed=0)
    assert len(folds) == 2
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(len(ssvep_trials)))  # every trial tested exactly once
    for fold in folds:
        assert not set(ssvep_trials.subject[fold.train]) & set(ssvep_trials.subject[fold.test])
        fit, val = validation_split(ssvep_trials, fold.train, protocol, seed=0)
        assert not set(fit) & set(val) and not (set(fit) | set(val)) & set(fold.test)


def test_cross_run_holds_out_one_run_of_the_same_subject(ssvep_trials):
    protocol = ProtocolConfig(name="cross_run", seeds=[0])
    folds = make_folds(ssvep_trials, protocol, seed=0)
    assert len(folds) == 4  # 2 subjects x 2 runs
    for fold in folds:
        assert len(set(ssvep_trials.run[fold.test])) == 1
        assert not set(ssvep_trials.run[fold.train]) & set(ssvep_trials.run[fold.test])
        assert set(ssvep_trials.subject[fold.train]) == set(ssvep_trials.subject[fold.test])


def test_within_session_folds_stay_in_their_session_and_change_with_the_seed(ssvep_trials):
    protocol = ProtocolConfig(name="within_session", n_folds=4, seeds=[0])
    folds = make_folds(ssvep_trials, protocol, seed=0)
    for fold in folds:
        assert len(set(ssvep_trials.session[fold.train]) | set(ssvep_trials.session[fold.test])) == 1
        assert not set(fold.train) & set(fold.test)
        assert len(np.unique(ssvep_trials.y[fold.test])) == len(ssvep_trials.classes)  # stratified
    other = make_folds(ssvep_trials, protocol, seed=1)
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(folds, other, strict=True))


def test_cross_subject_with_one_subject_is_refused(ssvep_trials):
    one = np.flatnonzero(ssvep_trials.subject == ssvep_trials.subject[0])
    from brainfm.downstream.decoding.trials import Trials

    single = Trials(ssvep_trials.take(one), ssvep_trials.y[one], ssvep_trials.subject[one], ssvep_trials.session[one],
                    ssvep_trials.run[one], ssvep_trials.recording[one], ssvep_trials.classes, ssvep_trials.sfreq,
                    ssvep_trials.ch_names, ssvep_trials.sources, ssvep_trials.index)
    with pytest.raises(ConfigError, match="at least two subjects"):
        make_folds(single, ProtocolConfig(name="cross_subject"), seed=0)


@pytest.fixture(scope="module")
def ecog_windows(shared_data, tmp_path_factory):
    """3-s windows every 0.5 s over the real BIDS ECoG recording (78 contacts, 21.7 s) at 100 Hz."""
    import dataclasses
    import shutil

    from brainfm.loading.windows import build_window_index
    from brainfm.preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("ecog")
    shutil.copytree(shared_data / "bids" / "ieeg-ecog", root / "ieeg-ecog")
    (root / "recipe.yaml").write_text("name: ecog-windows\npick:\n  types: [ecog]\nsteps:\n"
                                      "  - resample: {sfreq: 100, method: polyphase}\n"
                                      "  - units: {on_implausible: warn}\n")
    summary = preprocess(root / "ieeg-ecog", root / "store", recipe=root / "recipe.yaml")
    assert summary.failed == [] and len(summary.processed) == 1, summary.failed
    index = build_window_index(root / "store", 3.0, 0.5, channel_types=["ecog"])
    return dataclasses.replace(index, label=np.zeros(len(index), dtype=np.int64))  # one class: overlap only


def test_overlap_pruning_and_groups_on_real_ecog_windows(ecog_windows):
    from brainfm.downstream.decoding.protocols import overlap_groups
    from brainfm.downstream.decoding.trials import overlap_pruned

    index, size = ecog_windows, ecog_windows.window_size_samples
    assert size == 300 and len(index) == 38 and np.diff(index.start).tolist() == [50] * 37
    keep = overlap_pruned(index, [0])
    # every sixth window (0, 3, 6, ... s) is the first not to overlap the last kept one
    assert np.flatnonzero(keep).tolist() == list(range(0, 38, 6)) and np.diff(index.start[keep]).min() == size
    assert overlap_pruned(index, [1]).all()  # other classes are never pruned
    runs = np.array([f"r{i}" for i in index.recording])
    # windows 0.5 s apart chain into one group; a gap of at least one window starts a new one
    assert set(overlap_groups(runs, index.start, size).tolist()) == {0}
    rows = np.array([0, 1, 7, 8, 9, 20, 37])  # 0-3.5 s; 3.5-7.5 s (touching is not overlapping); 10-13; 18.5-21.5
    assert overlap_groups(runs[rows], index.start[rows], size).tolist() == [0, 0, 1, 1, 1, 2, 3]
    # the same windows in another recording form their own groups; input order does not matter
    other = np.array(["r9"] * len(rows))
    both = overlap_groups(np.concatenate([runs[rows], other])[::-1], np.concatenate([index.start[rows]] * 2)[::-1], size)
    assert both[::-1].tolist() == [0, 0, 1, 1, 1, 2, 3, 4, 4, 5, 5, 5, 6, 7]
