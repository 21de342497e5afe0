"""Training a classifier with early stopping and learning-rate choice on a validation split, never on test.

For each learning rate, a freshly seeded network is trained with AdamW and cross-entropy
(optionally with its head at another learning rate and a per-epoch schedule); after every
epoch its balanced accuracy (or AUROC) on the validation trials is measured, the best
epoch's weights are kept, and training stops after ``patience`` epochs without improvement.
The learning rate whose best validation score is highest wins; the test trials
are touched only afterwards, by the caller.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from brainfm._logging import logger
from brainfm.downstream.decoding.metrics import score_predictions
from brainfm.downstream.decoding.optim import parameter_groups, schedule_lambda

__all__ = ["TrainedClassifier", "fit_classifier", "seeded"]


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with a seeded initialisation, leaving the global torch RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(seed)
        return factory()


@dataclass
class TrainedClassifier:
    """The selected network, its learning rate, epochs and best validation score (``select_on``)."""

    net: nn.Module
    lr: float
    epochs: int
    val_score: float
    select_on: str = "balanced_accuracy"


def predict(net: nn.Module, forward: Callable[[nn.Module, np.ndarray], torch.Tensor], rows: np.ndarray,
            batch_size: int) -> np.ndarray:
    """Class probabilities (n, n_classes) of some rows, in evaluation mode, without gradients."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            out.append(torch.softmax(forward(net, rows[i : i + batch_size]), dim=-1))
    return torch.cat(out).numpy()


def fit_classifier(
    make_net: Callable[[], nn.Module],
    forward: Callable[[nn.Module, np.ndarray], torch.Tensor],
    y: np.ndarray,
    fit_rows: np.ndarray,
    val_rows: np.ndarray,
    *,
    lrs: Sequence[float],
    max_epochs: int,
    patience: int,
    batch_size: int,
    weight_decay: float,
    seed: int,
    head_lr: float | None = None,
    schedule: Literal["constant", "ramp_decay"] = "constant",
    select_on: Literal["balanced_accuracy", "auroc"] = "balanced_accuracy",
) -> TrainedClassifier:
    """Train, choosing the learning rate and the stopping epoch on the validation rows.

    Parameters
    ----------
    make_net : callable
        Builds a fresh network (seeded here).
    forward : callable
        ``forward(net, rows) -> logits (len(rows), n_classes)``.
    y : numpy.ndarray of int64
        Labels of every row.
    fit_rows, val_rows : numpy.ndarray of int64
        Training and validation rows (disjoint; test rows never come here).
    lrs : sequence of float
        Learning rates tried.
    max_epochs, patience, batch_size : int
        Training length, early-stopping patience, rows per step.
    weight_decay : float
        AdamW weight decay.
    seed : int
        Seed of the initialisation and of the batch order.
    head_lr : float | None
        Learning rate of the network's ``head`` (None: the same as the rest,
        :func:`~brainfm.downstream.decoding.optim.parameter_groups`).
    schedule : "constant" | "ramp_decay"
        Per-epoch learning-rate factor (:func:`~brainfm.downstream.decoding.optim.epoch_factor`).
    select_on : "balanced_accuracy" | "auroc"
        Validation metric that picks the learning rate and the epoch (an undefined AUROC, one
        class in the validation rows, counts as 0).

    Returns
    -------
    trained : TrainedClassifier
    """
    n_classes = int(y.max()) + 1
    targets = torch.as_tensor(y, dtype=torch.long)
    counts = np.bincount(y[fit_rows], minlength=n_classes).astype(np.float64)
    weights = torch.as_tensor(counts.sum() / np.maximum(counts, 1) / n_classes, dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights)  # balanced: the metric is balanced accuracy
    best: TrainedClassifier | None = None
    for lr in lrs:
        net = seeded(make_net, seed)
        optimizer = torch.optim.AdamW(parameter_groups(net, lr, head_lr), lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_lambda(schedule))
        rng = np.random.default_rng([seed, 0x747261])
        best_score, best_state, best_epoch, stale = -1.0, None, 0, 0
        for epoch in range(1, max_epochs + 1):
            net.train()
            order = fit_rows[rng.permutation(len(fit_rows))]
            for i in range(0, len(order), batch_size):
                rows = order[i : i + batch_size]
                if len(rows) < 2:
                    continue  # batch norm needs two rows
                loss = loss_fn(forward(net, rows), targets[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()  # per epoch
            proba = predict(net, forward, val_rows, batch_size)
            score = score_predictions(y[val_rows], proba.argmax(1), proba, n_classes)[select_on]
            score = 0.0 if np.isnan(score) else score  # AUROC with one class in the validation rows
            if score > best_score:
                best_score, best_state, best_epoch, stale = score, copy.deepcopy(net.state_dict()), epoch, 0
            else:
                stale += 1
                if stale >= patience:
                    break
        assert best_state is not None
        net.load_state_dict(best_state)
        logger.info("lr %g: best validation %s %.3f at epoch %d", lr, select_on, best_score, best_epoch)
        if best is None or best_score > best.val_score:
            best = TrainedClassifier(net, float(lr), best_epoch, float(best_score), select_on)
    assert best is not None
    return best
