"""Decoding metrics from predictions: balanced accuracy, Cohen's kappa, macro-F1, AUROC (binary).

Computed from the confusion matrix (and, for AUROC, the rank statistic), so that a fold's
scores do not depend on which labels happen to be present; they equal scikit-learn's
``balanced_accuracy_score``, ``cohen_kappa_score``, ``f1_score(average="macro")`` and
``roc_auc_score`` on the same predictions (``tests/downstream/decoding/test_metrics.py``).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["METRICS", "auroc", "confusion", "score_predictions"]

#: Metric names, in table order.
METRICS = ("balanced_accuracy", "kappa", "macro_f1", "auroc")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows true class, columns predicted class, shape (n_classes, n_classes)."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary task (Mann-Whitney U / (n_pos n_neg), ties count half).

    Parameters
    ----------
    y_true : numpy.ndarray of int, shape (n,)
        0 or 1.
    score : numpy.ndarray of float, shape (n,)
        Score of class 1.

    Returns
    -------
    auroc : float
        NaN when one class is absent.
    """
    y_true = np.asarray(y_true)
    n_pos = int(np.count_nonzero(y_true == 1))
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int) -> dict[str, float]:
    """Every metric of one fold.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray of int, shape (n,)
        True and predicted labels.
    proba : numpy.ndarray of float, shape (n, n_classes) | None
        Class probabilities (AUROC of binary tasks); None gives AUROC NaN.
    n_classes : int
        Number of classes of the task.

    Returns
    -------
    scores : dict of str to float
        ``balanced_accuracy`` (mean recall over the classes present), ``kappa``, ``macro_f1``
        (over the classes present in truth or prediction), ``auroc`` (binary tasks; NaN otherwise).
    """
    matrix = confusion(y_true, y_pred, n_classes).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    diagonal = np.diag(matrix)
    present = support > 0
    recall = np.divide(diagonal, support, out=np.zeros_like(diagonal), where=present)
    precision = np.divide(diagonal, predicted, out=np.zeros_like(diagonal), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(diagonal), where=denominator > 0)
    used = present | (predicted > 0)
    total = matrix.sum()
    observed = diagonal.sum() / total
    expected = float(support @ predicted) / total**2
    kappa = (observed - expected) / (1 - expected) if expected < 1 else (1.0 if observed == 1 else 0.0)
    scores = {
        "balanced_accuracy": float(recall[present].mean()),
        "kappa": float(kappa),
        "macro_f1": float(f1[used].mean()),
        "auroc": float("nan"),
    }
    if n_classes == 2 and proba is not None:
        scores["auroc"] = auroc(y_true, np.asarray(proba)[:, 1])
    return scores
