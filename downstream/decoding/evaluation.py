"""``brainfm evaluate``: a task's protocol end to end, every model on the same folds and seeds.

For each seed, the protocol's folds (:mod:`brainfm.downstream.decoding.protocols`) are
made once and every model, classical baseline or brainfm model, is fitted on the training
trials and scored on the test trials of each fold. Deep models take a validation split from
the training trials only. Results: per fold and seed, and mean +- sd over them.

The results document (:meth:`EvaluationResult.to_json`) holds only what the data, the task and
the seeds determine, so two identical runs give identical JSON; wall times, which the machine
decides, are kept apart (:meth:`EvaluationResult.timings`, ``timings.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from brainfm._logging import logger
from brainfm.downstream.decoding.alignment import align_signal
from brainfm.downstream.decoding.baselines import make_baseline
from brainfm.downstream.decoding.metrics import METRICS, confusion, score_predictions
from brainfm.downstream.decoding.protocols import fit_and_validation, make_folds
from brainfm.downstream.decoding.task import DecodingTask
from brainfm.downstream.decoding.trials import Trials

__all__ = ["EvaluationResult", "ModelResult", "evaluate_task"]


@dataclass
class ModelResult:
    """Scores of one model over every fold and seed.

    Attributes
    ----------
    kind : "baseline" | "brainfm"
        A classical or from-scratch baseline, or a model built on a brainfm checkpoint.
    folds : list of dict
        ``{"seed", "fold", "n_train", "n_test", <metric>: value}`` per fold and seed.
    confusion : numpy.ndarray of int64, shape (n_classes, n_classes)
        Summed over folds and seeds.
    seconds : list of float
        Wall time of each fit and prediction, in the order of ``folds``.
    """

    kind: Literal["baseline", "brainfm"]
    folds: list[dict[str, Any]] = field(default_factory=list)
    confusion: np.ndarray | None = None
    seconds: list[float] = field(default_factory=list)

    def summary(self, metric: str) -> dict[str, float]:
        """Mean and sd (ddof 0) of a metric over folds and seeds, NaN folds left out."""
        values = np.array([f[metric] for f in self.folds], dtype=np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            return {"mean": float("nan"), "sd": float("nan")}
        return {"mean": float(values.mean()), "sd": float(values.std())}


@dataclass
class EvaluationResult:
    """Everything ``brainfm evaluate`` reports.

    Attributes
    ----------
    task : str
        Task name.
    protocol : str
        Protocol name.
    classes : list of str
        Class names.
    models : dict of str to ModelResult
        By model name, in run order (baselines first).
    n_trials, n_subjects : int
        Size of the data.
    seconds : float
        Wall time of the evaluation (loading excluded).
    prepare_seconds : float
        Wall time of loading the trials and preparing the models (frozen features), when measured.
    """

    task: str
    protocol: str
    classes: list[str]
    models: dict[str, ModelResult]
    n_trials: int
    n_subjects: int
    seconds: float = 0.0
    prepare_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: ``task``, ``protocol``, ``models`` -> ``{name: {kind, metric: {mean, sd}, folds}}``.

        Deterministic: the same task, data and seeds give the same document (wall times are in
        :meth:`timings`).
        """
        models = {}
        for name, result in self.models.items():
            entry: dict[str, Any] = {"kind": result.kind}
            for metric in METRICS:
                entry[metric] = result.summary(metric)
            entry["folds"] = result.folds
            models[name] = entry
        return {"task": self.task, "protocol": self.protocol, "classes": self.classes, "n_trials": self.n_trials,
                "n_subjects": self.n_subjects, "models": models}

    def timings(self) -> dict[str, Any]:
        """Wall times: ``seconds`` (evaluation), ``prepare_seconds`` (trials and frozen features) and, per
        model, ``total`` and ``per_fit`` (seconds per fold and seed, in the order of its ``folds``)."""
        return {"seconds": round(self.seconds, 2), "prepare_seconds": round(self.prepare_seconds, 2),
                "models": {name: {"total": round(sum(r.seconds), 2), "per_fit": r.seconds}
                           for name, r in self.models.items()}}


#: ``fit_predict(trials, fit_rows, val_rows, test_rows, seed) -> (y_pred, proba)``.
FitPredict = Callable[[Trials, np.ndarray, np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _baseline_runner(name: str, task: DecodingTask, trials: Trials, X: np.ndarray) -> FitPredict:  # noqa: N803
    freqs = [task.stimulus_freqs[c] for c in task.classes if c in (task.stimulus_freqs or {})]

    def fit_predict(trials: Trials, fit_rows: np.ndarray, val_rows: np.ndarray, test_rows: np.ndarray,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
        train = np.concatenate([fit_rows, val_rows])  # classical models need no validation split
        from mne.utils import use_log_level

        pipeline = make_baseline(name, trials.sfreq, X.shape[1], seed, freqs)
        with use_log_level("error"):  # mne.decoding.CSP logs every rank estimate
            pipeline.fit(X[train], trials.y[train])
            proba = pipeline.predict_proba(X[test_rows])
        full = np.zeros((len(test_rows), len(trials.classes)))
        full[:, pipeline.classes_] = proba
        return full.argmax(axis=1), full

    return fit_predict


def evaluate_task(
    task: DecodingTask,
    trials: Trials,
    *,
    model_runners: dict[str, tuple[Literal["baseline", "brainfm"], FitPredict]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Run the task's protocol: every baseline and model on every fold of every seed.

    Parameters
    ----------
    task : DecodingTask
        The task.
    trials : Trials
        Its trials (:func:`~brainfm.downstream.decoding.trials.load_trials`).
    model_runners : dict | None
        Extra models by name: ``(kind, fit_predict)``; brainfm models are built by
        :func:`~brainfm.downstream.decoding.models.model_runners`.
    progress : callable | None
        Called with a short description after each model and fold.

    Returns
    -------
    result : EvaluationResult
        Scores per fold and seed, and summed confusion matrices.
    """
    started = time.perf_counter()
    X = trials.X  # noqa: N806
    aligned = align_signal(trials, "signal").X if any(n.endswith("_ea") for n in task.baselines) else None
    runners: dict[str, tuple[Literal["baseline", "brainfm"], FitPredict]] = {
        name: ("baseline", _baseline_runner(name.removesuffix("_ea"), task, trials,
                                            X if not name.endswith("_ea") else aligned))  # type: ignore[arg-type]
        for name in task.baselines
    }
    runners.update(model_runners or {})
    n_classes = len(trials.classes)
    results = {name: ModelResult(kind=kind, confusion=np.zeros((n_classes, n_classes), dtype=np.int64))
               for name, (kind, _) in runners.items()}
    for seed in task.protocol.seeds:
        folds = make_folds(trials, task.protocol, seed)
        logger.info("seed %d: %d folds (%s)", seed, len(folds), task.protocol.name)
        for fold in folds:
            fit_rows, val_rows = fit_and_validation(trials, fold, task.protocol, seed)
            for name, (_kind, fit_predict) in runners.items():
                t0 = time.perf_counter()
                y_pred, proba = fit_predict(trials, fit_rows, val_rows, fold.test, seed)
                y_true = trials.y[fold.test]
                scores = score_predictions(y_true, y_pred, proba, n_classes)
                results[name].confusion += confusion(y_true, y_pred, n_classes)  # type: ignore[operator]
                results[name].folds.append({"seed": int(seed), "fold": fold.name, "n_train": int(len(fold.train)),
                                            "n_test": int(len(fold.test)), **scores})
                results[name].seconds.append(round(time.perf_counter() - t0, 3))
                if progress is not None:
                    progress(f"{name} seed {seed} {fold.name}")
    return EvaluationResult(task=task.name, protocol=task.protocol.name, classes=list(trials.classes), models=results,
                            n_trials=len(trials), n_subjects=len(set(trials.subject.tolist())),
                            seconds=time.perf_counter() - started)


def count_steps(task: DecodingTask, trials: Trials, n_models: int) -> int:
    """Fits the evaluation will make (for a progress bar)."""
    return sum(len(make_folds(trials, task.protocol, seed)) for seed in task.protocol.seeds) * n_models
