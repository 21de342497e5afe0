"""Evaluation protocols: which trials train and which test, never sharing what must stay apart.

- ``within_session``: k folds over the trials of each session (stratified by class); a
  fold's training and test trials come from the same session, as in a single-session BCI.
- ``cross_run``: within each subject, each run (recording) is held out once and the
  subject's other runs train (subjects with one run are skipped).
- ``cross_subject``: leave one subject out (``n_folds: null``) or k folds grouped by
  subject; no subject is ever in both training and test.

Validation trials for early stopping and learning-rate choice come from the training fold
only, split by the same unit (:func:`validation_split`).

Within a session, ``protocol.split`` may replace the k folds by one training/validation/test
split by ``protocol.fractions`` (BaRISTA's 80/10/10, spec §4.7): ``random`` (stratified by class,
reshuffled by each seed) or ``chronological`` (in time order). Windows that overlap in time form
one group that stays on one side, so no sample is in two parts. ``protocol.balance: subsample``
first subsamples the larger classes of each session to the size of the smallest, per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainfm._logging import logger
from brainfm.downstream.decoding.task import ProtocolConfig
from brainfm.downstream.decoding.trials import Trials
from brainfm.errors import ConfigError

__all__ = ["Fold", "balanced_rows", "fit_and_validation", "make_folds", "overlap_groups", "validation_split"]


@dataclass
class Fold:
    """One training/test split.

    Attributes
    ----------
    name : str
        e.g. ``"subject eegmat/03"``, ``"fold 2/5"``, ``"eegmmidb/001/ses- fold 1/5"``.
    train, test : numpy.ndarray of int64
        Trial rows.
    val : numpy.ndarray of int64 | None
        Validation rows, a subset of ``train``, when the split fixes them (``split: random |
        chronological``); None: models draw them from ``train`` (:func:`validation_split`).
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray | None = None


def _stratified_folds(y: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number of each trial: every class dealt round-robin over the folds, in a seeded order."""
    fold_of = np.empty(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        rows = rows[rng.permutation(len(rows))]
        fold_of[rows] = (np.arange(len(rows)) + offset) % n_folds
        offset += len(rows)
    return fold_of


def balanced_rows(trials: Trials, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of every class subsampled to the size of the smallest class present (sorted).

    Parameters
    ----------
    trials : Trials
        The task's trials.
    rows : numpy.ndarray of int64
        The rows to balance (one session).
    rng : numpy.random.Generator
        Draws which rows of the larger classes are kept.

    Returns
    -------
    kept : numpy.ndarray of int64
        As many rows of each class present as of the smallest one, in ascending order.
    """
    labels = trials.y[rows]
    present = np.unique(labels)
    n = min(int((labels == label).sum()) for label in present)
    kept = [rng.choice(rows[labels == label], size=n, replace=False) for label in present]
    return np.sort(np.concatenate(kept))


def overlap_groups(runs: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Group number of each window: windows of one recording that overlap in time share one.

    Parameters
    ----------
    runs : numpy.ndarray, shape (n,)
        Recording (run key) of each window.
    starts : numpy.ndarray of int64, shape (n,)
        First sample of each window.
    size : int
        Samples per window.

    Returns
    -------
    group : numpy.ndarray of int64, shape (n,)
        Groups numbered in (recording, time) order; a chain of overlapping windows is one group.
    """
    order = np.lexsort((starts, runs))
    group = np.empty(len(starts), dtype=np.int64)
    current, end, run = -1, 0, None
    for i in order:
        start = int(starts[i])
        if runs[i] != run or start >= end:  # a new recording, or a gap after the chain so far
            current, run, end = current + 1, runs[i], start + size
        else:
            end = max(end, start + size)
        group[i] = current
    return group


def _three_way(trials: Trials, rows: np.ndarray, protocol: ProtocolConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Training, validation and test rows of one session by ``protocol.fractions``, overlap groups kept whole.

    ``random``: per class (the majority label of a group), the groups in a seeded order;
    ``chronological``: all groups in time order. Of the n trials of a stratum the last
    ``max(1, round(f_test n))`` go to test, the ``max(1, round(f_val n))`` before them to
    validation, the rest to training; a group goes where its first trial falls.
    """
    group = overlap_groups(trials.run[rows], trials.index.start[rows], trials.index.window_size_samples)
    _, f_val, f_test = protocol.fractions
    part = np.empty(len(rows), dtype=np.int64)
    if protocol.split == "chronological":
        strata = [np.arange(group.max() + 1)]
    else:
        majority = np.array([np.bincount(trials.y[rows[group == g]]).argmax() for g in range(group.max() + 1)])
        strata = [rng.permutation(np.flatnonzero(majority == label)) for label in np.unique(majority)]
    for groups in strata:
        sizes = np.array([np.count_nonzero(group == g) for g in groups])
        n = int(sizes.sum())
        n_test, n_val = max(1, round(f_test * n)), max(1, round(f_val * n))
        cuts = [n - n_val - n_test, n - n_test]  # first positions of validation and test
        for g, before in zip(groups, np.cumsum(sizes) - sizes, strict=True):
            part[group == g] = np.searchsorted(cuts, before, side="right")
    return [rows[part == k] for k in range(3)]


def _unit_of(trials: Trials, protocol: str) -> np.ndarray:
    return {"within_session": np.arange(len(trials)).astype(str), "cross_run": trials.run,
            "cross_subject": trials.subject}[protocol]


def make_folds(trials: Trials, protocol: ProtocolConfig, seed: int) -> list[Fold]:
    """The folds of a protocol for one seed.

    Parameters
    ----------
    trials : Trials
        The task's trials.
    protocol : ProtocolConfig
        Protocol name and fold count.
    seed : int
        Seed of the fold assignment (within_session, grouped k-fold).

    Returns
    -------
    folds : list of Fold
        Non-empty training and test sets.
    """
    rng = np.random.default_rng([int(seed), 0x666F6C64])
    folds: list[Fold] = []
    usable = np.arange(len(trials))
    if protocol.balance == "subsample":
        balance_rng = np.random.default_rng([int(seed), 0x62616C])
        usable = np.concatenate([balanced_rows(trials, np.flatnonzero(trials.session == session), balance_rng)
                                 for session in sorted(set(trials.session.tolist()))])
        logger.info("balance subsample: %d of %d trials kept (seed %d)", len(usable), len(trials), seed)
    if protocol.name == "within_session" and protocol.split != "kfold":
        shares = "/".join(f"{round(100 * f):d}" for f in protocol.fractions)
        for session in sorted(set(trials.session[usable].tolist())):
            rows = usable[trials.session[usable] == session]
            fit, val, test = _three_way(trials, rows, protocol, rng)
            missing = [name for name, part in (("training", fit), ("validation", val), ("test", test))
                       if len(np.unique(trials.y[part])) < 2]
            if missing:
                logger.info("session %s: %d trials; the %s split leaves the %s part without two classes; skipped",
                            session, len(rows), protocol.split, ", ".join(missing))
                continue
            folds.append(Fold(f"{session} {protocol.split} {shares}", np.sort(np.concatenate([fit, val])), test, val))
    elif protocol.name == "within_session":
        n_folds = protocol.n_folds or 5
        for session in sorted(set(trials.session[usable].tolist())):
            rows = usable[trials.session[usable] == session]
            counts = np.bincount(trials.y[rows])
            if len(rows) < n_folds or np.count_nonzero(counts) < 2:
                logger.info("session %s: %d trials, too few for %d folds; skipped", session, len(rows), n_folds)
                continue
            fold_of = _stratified_folds(trials.y[rows], n_folds, rng)
            for k in range(n_folds):
                folds.append(Fold(f"{session} fold {k + 1}/{n_folds}", rows[fold_of != k], rows[fold_of == k]))
    elif protocol.name == "cross_run":
        for subject in sorted(set(trials.subject[usable].tolist())):
            rows = usable[trials.subject[usable] == subject]
            runs = sorted(set(trials.run[rows].tolist()))
            if len(runs) < 2:
                logger.info("subject %s has one run; skipped by cross_run", subject)
                continue
            for run in runs:
                test = rows[trials.run[rows] == run]
                folds.append(Fold(f"run {run}", rows[trials.run[rows] != run], test))
    elif protocol.name == "cross_subject":
        subjects = np.array(sorted(set(trials.subject[usable].tolist())))
        if len(subjects) < 2:
            raise ConfigError(f"cross_subject needs at least two subjects; the trials have {len(subjects)}: {list(subjects)}.")
        if protocol.n_folds is None or protocol.n_folds >= len(subjects):
            groups = [[s] for s in subjects]
            names = [f"subject {s}" for s in subjects]
        else:
            permuted = subjects[rng.permutation(len(subjects))]
            groups = [list(permuted[k :: protocol.n_folds]) for k in range(protocol.n_folds)]
            names = [f"fold {k + 1}/{protocol.n_folds}" for k in range(protocol.n_folds)]
        for name, group in zip(names, groups, strict=True):
            test_mask = np.isin(trials.subject[usable], group)
            folds.append(Fold(name, usable[~test_mask], usable[test_mask]))
    else:  # pragma: no cover - validated in the task
        raise ConfigError(f"Unknown protocol {protocol.name!r}.")
    folds = [f for f in folds if len(f.train) and len(f.test) and len(np.unique(trials.y[f.train])) > 1]
    if not folds:
        raise ConfigError(
            f"Protocol {protocol.name!r} gives no usable fold on these trials ({len(trials)} trials, "
            f"{len(set(trials.subject.tolist()))} subjects, {len(set(trials.run.tolist()))} runs): "
            "cross_run needs subjects with several runs, within_session enough trials of two classes per session "
            "(with split random or chronological: in each of its training, validation and test parts)."
        )
    return folds


def fit_and_validation(trials: Trials, fold: Fold, protocol: ProtocolConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitting and validation rows of a fold: its fixed validation part, else :func:`validation_split`.

    Parameters
    ----------
    trials : Trials
        The task's trials.
    fold : Fold
        One fold of :func:`make_folds`.
    protocol : ProtocolConfig
        The protocol.
    seed : int
        Seed of :func:`validation_split`.

    Returns
    -------
    fit, val : numpy.ndarray of int64
        Disjoint rows of ``fold.train``.
    """
    if fold.val is not None:
        return np.setdiff1d(fold.train, fold.val), fold.val
    return validation_split(trials, fold.train, protocol, seed)


def validation_split(trials: Trials, train: np.ndarray, protocol: ProtocolConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a training fold into fitting and validation trials by the protocol's unit.

    Parameters
    ----------
    trials : Trials
        The task's trials.
    train : numpy.ndarray of int64
        The fold's training rows (test rows are never passed here).
    protocol : ProtocolConfig
        Protocol (unit) and ``val_fraction``.
    seed : int
        Seed of the choice.

    Returns
    -------
    fit, val : numpy.ndarray of int64
        Disjoint rows of ``train``. Whole subjects (cross_subject) or runs (cross_run) are held
        out when there are at least two; else trials, stratified by class.
    """
    rng = np.random.default_rng([int(seed), 0x76616C])
    units = _unit_of(trials, protocol.name)[train]
    distinct = np.array(sorted(set(units.tolist())))
    if protocol.name != "within_session" and len(distinct) >= 2:
        n_val = min(max(1, round(protocol.val_fraction * len(distinct))), len(distinct) - 1)
        chosen = distinct[rng.permutation(len(distinct))[:n_val]]
        mask = np.isin(units, chosen)
    else:
        n_folds = max(2, round(1 / protocol.val_fraction))
        mask = _stratified_folds(trials.y[train], n_folds, rng) == 0
    return train[~mask], train[mask]
