"""Rank sweep with random restarts, and the rank selection rule: error elbow plus stability.

For each rank, several random restarts are fitted. The best restart (lowest error) is the
rank's model; its **stability** is the mean factor congruence (after best matching) between it
and every other restart. A rank is stable when that mean is at least ``min_stability``
(0.9 by default, Williams et al. 2018). The **elbow** is the last rank whose error reduction
over the rank before (rank 0 has relative error 1) is at least ``elbow_fraction`` of the total
reduction seen in the sweep; the chosen rank is the largest stable rank not above the elbow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from brainfm._check import check_range
from brainfm._logging import logger
from brainfm.downstream.connectome.ntf import NTFResult, factor_congruence, ntf_hals

__all__ = ["RankSweep", "rank_sweep", "select_rank"]


@dataclass
class RankSweep:
    """What a rank sweep found.

    Attributes
    ----------
    ranks : list of int
        The ranks tried, ascending.
    errors : list of list of float
        Final relative error of every restart, per rank.
    stability : list of float
        Mean best-match congruence of the restarts with the best one, per rank (1.0 with a
        single restart).
    best : dict of int to NTFResult
        The lowest-error restart of each rank.
    seconds : float
        Wall time of the sweep.
    chosen_rank : int
        The rank the selection rule picked.
    """

    ranks: list[int]
    errors: list[list[float]] = field(default_factory=list)
    stability: list[float] = field(default_factory=list)
    best: dict[int, NTFResult] = field(default_factory=dict)
    seconds: float = 0.0
    chosen_rank: int = 0

    @property
    def best_errors(self) -> list[float]:
        """The lowest error of each rank."""
        return [min(e) for e in self.errors]


def select_rank(
    ranks: Sequence[int],
    best_errors: Sequence[float],
    stability: Sequence[float],
    *,
    min_stability: float = 0.9,
    elbow_fraction: float = 0.05,
) -> int:
    """Apply the selection rule (see the module docstring) to a finished sweep.

    Parameters
    ----------
    ranks : sequence of int
        Ranks, ascending.
    best_errors : sequence of float
        Lowest relative error per rank.
    stability : sequence of float
        Restart stability per rank.
    min_stability : float
        Smallest mean congruence for a rank to count as stable.
    elbow_fraction : float
        A rank improves enough when its error reduction is at least this fraction of the
        sweep's total reduction.

    Returns
    -------
    rank : int
        The chosen rank; the smallest rank when none is stable (a warning is logged).
    """
    check_range("elbow_fraction", elbow_fraction, 0.0, 1.0)
    errors = np.asarray(best_errors, dtype=float)
    previous = np.concatenate([[1.0], errors[:-1]])
    # A gap in the ranks (2, 4, 8) spreads the reduction over the skipped ranks.
    steps = np.diff(np.concatenate([[0], np.asarray(ranks)]))
    gains = (previous - errors) / steps
    total = 1.0 - errors.min()
    improving = np.flatnonzero(gains >= elbow_fraction * total) if total > 0 else np.array([0])
    elbow = int(improving.max()) if improving.size else 0
    stable = [i for i in range(elbow + 1) if stability[i] >= min_stability]
    if not stable:
        logger.warning(
            "No rank up to the elbow (%d) is stable (congruence >= %.2f across restarts); taking rank %d.",
            ranks[elbow], min_stability, ranks[0],
        )
        return int(ranks[0])
    return int(ranks[max(stable)])


def rank_sweep(
    tensor: torch.Tensor | np.ndarray,
    ranks: Sequence[int],
    *,
    n_restarts: int = 10,
    mask: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
    n_iter_max: int = 500,
    tol: float = 1e-6,
    min_stability: float = 0.9,
    elbow_fraction: float = 0.05,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> RankSweep:
    """Fit every rank with several random restarts and choose one.

    Parameters
    ----------
    tensor : torch.Tensor | numpy.ndarray
        Non-negative ``(T, W, P)`` tensor.
    ranks : sequence of int
        Ranks to try (sorted ascending).
    n_restarts : int
        Random restarts per rank; restart ``i`` of every rank uses seed ``seed + i``.
    mask, n_iter_max, tol, device
        As for :func:`~brainfm.downstream.connectome.ntf.ntf_hals`.
    seed : int
        Seed of the first restart.
    min_stability, elbow_fraction : float
        The selection rule's thresholds (:func:`select_rank`).
    progress : bool
        Show a progress bar over the fits.

    Returns
    -------
    sweep : RankSweep
        Errors and stability per rank, the best model of each rank and the chosen rank.
    """
    import time

    ranks = sorted(int(r) for r in ranks)
    if not ranks or ranks[0] < 1:
        raise ValueError(f"ranks must be positive integers, got {ranks!r}.")
    check_range("n_restarts", n_restarts, low=1)
    x = torch.as_tensor(tensor, dtype=torch.float32)
    if device is not None:
        x = x.to(device)
    sweep = RankSweep(ranks=ranks)
    start = time.perf_counter()
    bar = tqdm(total=len(ranks) * n_restarts, desc="NTF rank sweep", unit="fit", disable=not progress)
    for rank in ranks:
        fits = []
        for restart in range(n_restarts):
            fits.append(ntf_hals(x, rank, mask=mask, seed=seed + restart, n_iter_max=n_iter_max, tol=tol))
            bar.update()
        best = min(fits, key=lambda f: f.error)
        others = [f for f in fits if f is not best]
        stability = float(np.mean([factor_congruence(best.factors, f.factors)[0] for f in others])) if others else 1.0
        sweep.errors.append([f.error for f in fits])
        sweep.stability.append(stability)
        sweep.best[rank] = best
        logger.info("rank %d: best error %.4f, stability %.3f", rank, best.error, stability)
    bar.close()
    sweep.seconds = time.perf_counter() - start
    sweep.chosen_rank = select_rank(
        ranks, sweep.best_errors, sweep.stability, min_stability=min_stability, elbow_fraction=elbow_fraction
    )
    return sweep
