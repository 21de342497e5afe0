"""``TrialDataModule``: a decoding task's trials as Lightning loaders, split by the task's protocol.

``brainfm finetune`` trains on one fold of the task's protocol (the same folds ``brainfm
evaluate`` makes, :func:`~brainfm.downstream.decoding.protocols.make_folds`): the fold's
training trials are split once more into fitting and validation trials by the protocol's
unit (:func:`~brainfm.downstream.decoding.protocols.validation_split`; a ``split: random |
chronological`` protocol fixes the validation part itself), and its test trials
are only read by ``brainfm finetune test``. ``test_subjects`` replaces the protocol's fold
by an explicit list of held-out subjects. Trials are read once into memory
(:func:`~brainfm.downstream.decoding.trials.load_trials`): decoding sets are small.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from brainfm._check import suggest
from brainfm.downstream.decoding.protocols import fit_and_validation, make_folds, validation_split
from brainfm.downstream.decoding.task import DecodingTask, load_task
from brainfm.downstream.decoding.trials import Trials, load_trials
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch

__all__ = ["TrialDataModule", "TrialFacts", "task_path"]


@dataclass
class TrialFacts:
    """What a classifier needs to know about the trials (linked from the data module into the model)."""

    classes: list[str]
    """Class names (label = position)."""
    n_chans: int
    """Channels per trial."""
    n_times: int
    """Samples per trial."""
    sfreq: float
    """Sampling rate in Hz."""

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def task_path(task: str | Path) -> Path:
    """A task file, or the shipped task of that name (``configs/downstream/<name>.yaml``).

    Parameters
    ----------
    task : str | pathlib.Path
        A YAML path, or a shipped task name such as ``eegmat_arithmetic``.

    Returns
    -------
    path : pathlib.Path
        The file.
    """
    path = Path(task)
    if path.is_file():
        return path
    folder = Path(str(importlib.resources.files("brainfm.configs") / "downstream"))
    shipped = sorted(p.stem for p in folder.glob("*.yaml"))
    if str(task) in shipped:
        return folder / f"{task}.yaml"
    raise ConfigError(
        f"Task file not found: {task}. Give a task YAML or one of the shipped tasks: {', '.join(shipped)}."
        + suggest(str(task), shipped)
    )


class _Rows(torch.utils.data.Dataset):
    """Trial rows; a batch of rows becomes one :class:`Batch` with its labels."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> int:
        return int(self.rows[i])


class TrialDataModule(L.LightningDataModule):
    """Trials of a decoding task: fitting, validation and test rows of one protocol fold.

    Parameters
    ----------
    task : str
        The task YAML (``configs/downstream/<task>.yaml``) or a shipped task's name.
    store : str | None
        Read the task from this store instead of the task's ``store``.
    fold : int
        Which fold of the task's protocol is held out for testing (0-based).
    seed : int
        Seed of the fold assignment and of the validation split.
    test_subjects : list of str | None
        Hold out these subjects (``"<dataset>/<subject>"``) instead of a protocol fold.
    val_fraction : float | None
        Share of the training units kept for validation (None: the task's ``protocol.val_fraction``).
    batch_size : int
        Trials per step.
    """

    def __init__(self, task: str, store: str | None = None, fold: int = 0, seed: int = 0,
                 test_subjects: list[str] | None = None, val_fraction: float | None = None,
                 batch_size: int = 32) -> None:
        super().__init__()
        self.task_file = str(task_path(task))
        self.store = store
        self.fold = int(fold)
        self.seed = int(seed)
        self.test_subjects = None if test_subjects is None else [str(s) for s in test_subjects]
        self.batch_size = int(batch_size)
        if self.batch_size < 2:
            raise ConfigError(f"data.batch_size must be at least 2, got {batch_size}.")
        self.task: DecodingTask = load_task(self.task_file, store=store)
        if val_fraction is not None:
            if not 0 < val_fraction < 1:
                raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}.")
            self.task.protocol.val_fraction = float(val_fraction)
        self._trials: Trials | None = None
        self._split: dict[str, np.ndarray] | None = None
        self.fold_name = ""

    @property
    def trials(self) -> Trials:
        """Every trial of the task (read on first use)."""
        if self._trials is None:
            self._trials = load_trials(self.task)
        return self._trials

    @property
    def trial_facts(self) -> TrialFacts:
        """Classes, channels, samples and sampling rate (linked into the model)."""
        n_chans, n_times = self.trials.batch.signal.shape[1:]
        return TrialFacts(classes=list(self.trials.classes), n_chans=int(n_chans), n_times=int(n_times),
                          sfreq=float(self.trials.sfreq))

    def rows(self, part: str) -> np.ndarray:
        """Trial rows of ``"fit"``, ``"val"`` or ``"test"`` (made once, never overlapping)."""
        if self._split is None:
            self._split = self._make_split()
        return self._split[part]

    def _make_split(self) -> dict[str, np.ndarray]:
        trials = self.trials
        if self.test_subjects is not None:
            known = sorted(set(trials.subject.tolist()))
            unknown = [s for s in self.test_subjects if s not in known]
            if unknown or not self.test_subjects:
                raise ConfigError(
                    f"data.test_subjects {self.test_subjects}: {unknown or 'empty'} not among the task's subjects "
                    f"{known}." + (suggest(unknown[0], known) if unknown else "")
                )
            test_mask = np.isin(trials.subject, self.test_subjects)
            train, test = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
            self.fold_name = "subjects " + ", ".join(self.test_subjects)
            if len(np.unique(trials.y[train])) < 2:
                raise ConfigError(f"Holding out {self.test_subjects} leaves training trials of one class only.")
        else:
            folds = make_folds(trials, self.task.protocol, self.seed)
            if not 0 <= self.fold < len(folds):
                raise ConfigError(
                    f"data.fold {self.fold} does not exist: the task's {self.task.protocol.name} protocol makes "
                    f"{len(folds)} folds (0 to {len(folds) - 1}) on these trials."
                )
            chosen = folds[self.fold]
            train, test = chosen.train, chosen.test
            self.fold_name = chosen.name
        if self.test_subjects is None:
            fit, val = fit_and_validation(trials, chosen, self.task.protocol, self.seed)
        else:
            fit, val = validation_split(trials, train, self.task.protocol, self.seed)
        if len(fit) < 2 or not len(val):
            raise ConfigError(f"The training part of {self.fold_name} is too small to split off validation trials "
                              f"({len(train)} trials).")
        return {"fit": fit, "val": val, "test": test}

    def _loader(self, part: str, shuffle: bool) -> torch.utils.data.DataLoader:
        trials = self.trials
        labels = torch.as_tensor(trials.y, dtype=torch.long)

        def collate(rows: list[int]) -> Batch:
            batch = trials.take(np.asarray(rows))
            batch.labels = labels[torch.as_tensor(rows)]
            return batch

        generator = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(_Rows(self.rows(part)), batch_size=self.batch_size, shuffle=shuffle,
                                           collate_fn=collate, generator=generator if shuffle else None,
                                           drop_last=shuffle and len(self.rows(part)) > self.batch_size)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Fitting trials, shuffled (seeded)."""
        return self._loader("fit", shuffle=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """Validation trials (early stopping and learning-rate choice)."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        """Test trials (``brainfm finetune test`` only)."""
        return self._loader("test", shuffle=False)

    def split_record(self) -> dict[str, object]:
        """The split as plain values (saved in the fine-tuned checkpoint)."""
        trials = self.trials

        def subjects(part: str) -> list[str]:
            return sorted(set(trials.subject[self.rows(part)].tolist()))

        def recordings(part: str) -> list[str]:
            return sorted(set(trials.recording[self.rows(part)].tolist()))

        return {"fold": self.fold, "fold_name": self.fold_name, "seed": self.seed, "protocol": self.task.protocol.name,
                "n_fit": int(len(self.rows("fit"))), "n_val": int(len(self.rows("val"))),
                "n_test": int(len(self.rows("test"))),
                "fit_subjects": subjects("fit"), "val_subjects": subjects("val"), "test_subjects": subjects("test"),
                "train_recordings": sorted(set(recordings("fit")) | set(recordings("val"))),
                "test_recordings": recordings("test")}
