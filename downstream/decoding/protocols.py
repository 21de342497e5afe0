"""Evaluation protocols: which trials train and which test, never sharing what must stay apart.

- ``within_session``: k folds over the trials of each session (stratified by class); a
  fold's training and test trials come from the same session, as in a single-session BCI.
- ``cross_run``: within each subject, each run (recording) is held out once and the
  subject's other runs train (subjects with one run are skipped).
- ``cross_subject``: leave one subject out (``n_folds: null``) or k folds grouped by
  subject; no subject is ever in both training and test.

Validation trials for early stopping and learning-rate choice come from the training fold
only, split by the same unit (:func:`validation_split`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainfm._logging import logger
from brainfm.downstream.decoding.task import ProtocolConfig
from brainfm.downstream.decoding.trials import Trials
from brainfm.errors import ConfigError

__all__ = ["Fold", "make_folds", "validation_split"]


@dataclass
class Fold:
    """One training/test split.

    Attributes
    ----------
    name : str
        e.g. ``"subject eegmat/03"``, ``"fold 2/5"``, ``"eegmmidb/001/ses- fold 1/5"``.
    train, test : numpy.ndarray of int64
        Trial rows.
    """

    name: str
    train: np.ndarray
    test: np.ndarray


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
    if protocol.name == "within_session":
        n_folds = protocol.n_folds or 5
        for session in sorted(set(trials.session.tolist())):
            rows = np.flatnonzero(trials.session == session)
            counts = np.bincount(trials.y[rows])
            if len(rows) < n_folds or np.count_nonzero(counts) < 2:
                logger.info("session %s: %d trials, too few for %d folds; skipped", session, len(rows), n_folds)
                continue
            fold_of = _stratified_folds(trials.y[rows], n_folds, rng)
            for k in range(n_folds):
                folds.append(Fold(f"{session} fold {k + 1}/{n_folds}", rows[fold_of != k], rows[fold_of == k]))
    elif protocol.name == "cross_run":
        for subject in sorted(set(trials.subject.tolist())):
            rows = np.flatnonzero(trials.subject == subject)
            runs = sorted(set(trials.run[rows].tolist()))
            if len(runs) < 2:
                logger.info("subject %s has one run; skipped by cross_run", subject)
                continue
            for run in runs:
                test = rows[trials.run[rows] == run]
                folds.append(Fold(f"run {run}", rows[trials.run[rows] != run], test))
    elif protocol.name == "cross_subject":
        subjects = np.array(sorted(set(trials.subject.tolist())))
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
            test_mask = np.isin(trials.subject, group)
            folds.append(Fold(name, np.flatnonzero(~test_mask), np.flatnonzero(test_mask)))
    else:  # pragma: no cover - validated in the task
        raise ConfigError(f"Unknown protocol {protocol.name!r}.")
    folds = [f for f in folds if len(f.train) and len(f.test) and len(np.unique(trials.y[f.train])) > 1]
    if not folds:
        raise ConfigError(
            f"Protocol {protocol.name!r} gives no usable fold on these trials ({len(trials)} trials, "
            f"{len(set(trials.subject.tolist()))} subjects, {len(set(trials.run.tolist()))} runs): "
            "cross_run needs subjects with several runs, within_session enough trials of two classes per session."
        )
    return folds


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
