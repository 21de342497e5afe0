"""The decoding metrics equal scikit-learn's on fixed predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

from brainfm.downstream.decoding.metrics import score_predictions


@pytest.mark.parametrize("n_classes", [2, 4])
def test_metrics_match_scikit_learn(n_classes):
    rng = np.random.default_rng(n_classes)
    y_true = rng.integers(0, n_classes, 60)
    proba = rng.dirichlet(np.ones(n_classes), 60)
    proba[np.arange(30), y_true[:30]] += 0.5  # better than chance, with ties and errors
    proba /= proba.sum(1, keepdims=True)
    y_pred = proba.argmax(1)
    scores = score_predictions(y_true, y_pred, proba, n_classes)
    assert scores["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert scores["kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred))
    assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    if n_classes == 2:
        assert scores["auroc"] == pytest.approx(roc_auc_score(y_true, proba[:, 1]))
    else:
        assert np.isnan(scores["auroc"])


def test_metrics_with_a_class_missing_from_the_fold_match_scikit_learn():
    y_true = np.array([0, 0, 1, 1, 1, 0])
    y_pred = np.array([0, 2, 1, 1, 0, 0])  # class 2 predicted, never true
    scores = score_predictions(y_true, y_pred, None, 3)
    with pytest.warns(UserWarning):  # scikit-learn warns that y_pred has classes y_true lacks
        expected = balanced_accuracy_score(y_true, y_pred)
    assert scores["balanced_accuracy"] == pytest.approx(expected)
    assert scores["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert scores["kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred))


def test_auroc_of_tied_scores_counts_ties_half():
    y_true = np.array([0, 1, 0, 1])
    proba = np.array([[0.5, 0.5]] * 4)
    assert score_predictions(y_true, np.zeros(4, int), proba, 2)["auroc"] == pytest.approx(0.5)
