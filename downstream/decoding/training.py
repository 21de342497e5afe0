"""Training a classifier with early stopping and learning-rate choice on a validation split, never on test.

For each learning rate, a freshly seeded network is trained with AdamW and class-weighted
cross-entropy (optionally with its head at another learning rate, ``head_lr``, and a per-epoch
``schedule``); after every epoch its selected metric (``select_on``: balanced accuracy, or
AUROC) and its class-weighted cross-entropy on the validation trials are measured, the best
epoch's weights are kept, and training stops after ``patience`` epochs without a higher
validation metric. The learning rate whose best validation score is highest wins; the test
trials are touched only afterwards, by the caller.

"Best" is :meth:`ValidationScore.better_than`: the higher selected metric, and on a tie the
lower validation loss. Balanced accuracy moves in steps of one validation trial (AUROC in steps
of one pair of trials), so on small validation splits ties are common (a head that predicts one
class scores exactly chance at every epoch); without the loss as a tie-break the first epoch,
nearly untrained, would be kept.

Everything random in a fit (initialisation, batch order, dropout) draws from generators
seeded by ``seed`` (:func:`seeded_rng`), so two runs with the same seed give the same result.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from brainfm._logging import logger
from brainfm.downstream.decoding.metrics import score_predictions
from brainfm.downstream.decoding.optim import parameter_groups, schedule_lambda

__all__ = ["TrainedClassifier", "ValidationScore", "fit_classifier", "seeded", "seeded_rng", "selection_metric"]


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU generator seeded by ``seed``; the global state is restored afterwards.

    Parameters
    ----------
    seed : int
        Seed of everything the block draws from torch (initialisation, dropout, noise).
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(seed)
        yield


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with a seeded initialisation, leaving the global torch RNG as it was."""
    with seeded_rng(seed):
        return factory()


@dataclass(frozen=True)
class ValidationScore:
    """What model selection compares: the selected validation metric, then the validation loss.

    Attributes
    ----------
    value : float
        The selected metric (``select_on``: balanced accuracy or AUROC) on the validation trials;
        higher is better.
    loss : float
        Class-weighted cross-entropy on the validation trials (NaN when unknown).
    """

    value: float
    loss: float = math.nan

    def better_than(self, other: ValidationScore | None) -> bool:
        """Whether this score beats ``other``: a higher metric, or an equal one and a lower loss.

        Parameters
        ----------
        other : ValidationScore | None
            The best so far (None: anything beats it).

        Returns
        -------
        better : bool
        """
        if other is None:
            return True
        if self.value != other.value:
            return self.value > other.value
        if math.isnan(self.loss) or math.isnan(other.loss):
            return False  # a tie that the loss cannot break keeps the earlier one
        return self.loss < other.loss


def selection_metric(scores: dict[str, float], select_on: str) -> float:
    """The metric that selects an epoch and a learning rate; an undefined one (NaN) counts as 0.

    Parameters
    ----------
    scores : dict
        Validation scores by name (:func:`~brainfm.downstream.decoding.metrics.score_predictions`).
    select_on : str
        ``balanced_accuracy`` or ``auroc`` (NaN with one class in the validation trials).

    Returns
    -------
    value : float
    """
    value = float(scores[select_on])
    return 0.0 if math.isnan(value) else value


@dataclass
class TrainedClassifier:
    """The selected network, its learning rate, epochs and best validation score (``select_on``, then loss)."""

    net: nn.Module
    lr: float
    epochs: int
    val_score: float
    val_loss: float = math.nan
    select_on: str = "balanced_accuracy"

    @property
    def score(self) -> ValidationScore:
        """The validation score it was selected on."""
        return ValidationScore(self.val_score, self.val_loss)


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
        Seed of the initialisation, the dropout and the batch order.
    head_lr : float | None
        Learning rate of the network's ``head`` (None: the same as the rest,
        :func:`~brainfm.downstream.decoding.optim.parameter_groups`).
    schedule : "constant" | "ramp_decay"
        Per-epoch learning-rate factor (:func:`~brainfm.downstream.decoding.optim.epoch_factor`).
    select_on : "balanced_accuracy" | "auroc"
        Validation metric that picks the learning rate and the epoch (on a tie, the lower validation
        loss) and whose lack of progress stops training (an undefined AUROC, one class in the
        validation rows, counts as 0).

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
        with seeded_rng(seed):  # initialisation and dropout; the batch order has its own generator
            trained = _fit_one(make_net(), forward, targets, loss_fn, fit_rows, val_rows, lr=float(lr),
                               max_epochs=max_epochs, patience=patience, batch_size=batch_size,
                               weight_decay=weight_decay, head_lr=head_lr, schedule=schedule, select_on=select_on,
                               rng=np.random.default_rng([seed, 0x747261]))
        logger.info("lr %g: best validation %s %.3f (loss %.4f) at epoch %d", lr, select_on, trained.val_score,
                    trained.val_loss, trained.epochs)
        if best is None or trained.score.better_than(best.score):
            best = trained
    assert best is not None
    return best


def _fit_one(net: nn.Module, forward: Callable[[nn.Module, np.ndarray], torch.Tensor], targets: torch.Tensor,
             loss_fn: nn.Module, fit_rows: np.ndarray, val_rows: np.ndarray, *, lr: float, max_epochs: int,
             patience: int, batch_size: int, weight_decay: float, head_lr: float | None,
             schedule: Literal["constant", "ramp_decay"], select_on: Literal["balanced_accuracy", "auroc"],
             rng: np.random.Generator) -> TrainedClassifier:
    """Train one network at one learning rate; keep its best epoch on validation."""
    optimizer = torch.optim.AdamW(parameter_groups(net, lr, head_lr), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_lambda(schedule))
    n_classes = len(loss_fn.weight) if loss_fn.weight is not None else int(targets.max()) + 1
    val_targets = targets[val_rows]
    best: ValidationScore | None = None
    best_state, best_epoch, stale = None, 0, 0
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
        scores = score_predictions(val_targets.numpy(), proba.argmax(1), proba, n_classes)
        val_loss = float(loss_fn(torch.log(torch.as_tensor(proba).clamp_min(1e-12)), val_targets))
        score = ValidationScore(selection_metric(scores, select_on), val_loss)
        stale = 0 if best is None or score.value > best.value else stale + 1
        if score.better_than(best):
            best, best_state, best_epoch = score, copy.deepcopy(net.state_dict()), epoch
        if stale >= patience:
            break
    assert best is not None and best_state is not None
    net.load_state_dict(best_state)
    return TrainedClassifier(net, lr, best_epoch, best.value, best.loss, select_on)
