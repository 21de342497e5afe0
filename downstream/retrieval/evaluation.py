"""k-way retrieval accuracy: the BrainFLORA evaluation protocol, vectorised.

For each sampled trial one test item is the query; ``k - 1`` distractor items are drawn
uniformly without replacement from the other items and put next to the true one; the
prediction is the candidate whose concept feature scores highest against the query's brain
feature (``f . g_j``, spec §6). Top-5 counts a hit when the true item ranks among the five best
of the ``k`` candidates.

Trials are evaluated in blocks of a few thousand with array operations: a trial's outcome
depends only on how many of its distractors score above (and level with) the true item, so no
candidate list is ever sorted and there is no Python loop per trial.
"""

from __future__ import annotations

import numpy as np

from brainfm._check import check_option, ensure_int

__all__ = ["k_way_accuracy"]

# Trials are processed in blocks so that the (trials, items) random keys stay small.
_BLOCK_ELEMENTS = 4_000_000


def _as_features(name: str, value: object) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_items, n_features), got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}.")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values; retrieval scores would be undefined.")
    return array


def _query_items(n_items: int, n_trials: int, rng: np.random.Generator) -> np.ndarray:
    """Every item equally often; the remainder of ``n_trials / n_items`` drawn without replacement."""
    full, rest = divmod(n_trials, n_items)
    items = np.tile(np.arange(n_items), full)
    if rest:
        items = np.concatenate([items, rng.choice(n_items, size=rest, replace=False)])
    return items


def _draw_distractors(query: np.ndarray, n_items: int, n_draw: int, rng: np.random.Generator) -> np.ndarray:
    """``n_draw`` items per query, uniform without replacement among the items other than the query.

    Small draws from large galleries keep the first ``n_draw`` distinct values of a longer draw
    with replacement (sequential sampling that skips repeats is uniform without replacement);
    rows that come up short are drawn again. Large draws take the ``n_draw`` smallest of one
    random key per item.
    """
    n_rows = query.size
    if 4 * n_draw > n_items:
        keys = rng.random((n_rows, n_items), dtype=np.float32)
        keys[np.arange(n_rows), query] = np.inf  # the query is never its own distractor
        return np.argpartition(keys, n_draw - 1, axis=1)[:, :n_draw]
    out = np.empty((n_rows, n_draw), dtype=np.int64)
    pending = np.arange(n_rows)
    width = n_draw + 8 + int(2 * n_draw * n_draw / n_items)  # room for the expected repeats
    while pending.size:
        # values in [0, n_items - 1) shifted past the query: uniform over the other items
        draws = rng.integers(0, n_items - 1, size=(pending.size, width))
        draws += draws >= query[pending][:, None]
        order = np.argsort(draws, axis=1, kind="stable")
        ordered = np.take_along_axis(draws, order, axis=1)
        repeat = np.zeros_like(draws, dtype=bool)
        np.put_along_axis(repeat, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
        complete = (~repeat).sum(axis=1) >= n_draw
        for_rows = pending[complete]
        # first n_draw distinct values in draw order: stable sort puts non-repeats first
        firsts = np.argsort(repeat[complete], axis=1, kind="stable")[:, :n_draw]
        out[for_rows] = np.take_along_axis(draws[complete], firsts, axis=1)
        pending = pending[~complete]
    return out


def k_way_accuracy(
    brain: np.ndarray,
    concepts: np.ndarray,
    k: int,
    n_trials: int | None = None,
    seed: int | None = 42,
    *,
    metric: str = "dot",
) -> dict[str, float | None]:
    """Top-1 and top-5 accuracy of k-way retrieval over sampled trials.

    Parameters
    ----------
    brain : array of shape (n_items, n_features)
        Brain features, one row per test item (a torch tensor is accepted too).
    concepts : array of shape (n_items, n_features)
        Concept features; row ``i`` is the concept that matches ``brain[i]``.
    k : int
        Candidates per trial (the true item plus ``k - 1`` distractors), ``2 <= k <= n_items``.
        With ``k == n_items`` every trial uses the whole gallery and nothing is sampled.
    n_trials : int | None
        Number of trials. Each item is the query ``n_trials // n_items`` times, the remaining
        trials go to items drawn without replacement. ``None`` means one trial per item
        (the reference protocol).
    seed : int | None
        Seed of the distractor sampling (spec: 42). The same seed gives identical results.
    metric : {"dot", "cosine"}
        ``"dot"`` scores ``f . g`` as the reference does (a positive logit scale does not change
        the ranking); ``"cosine"`` L2-normalises both sides first.

    Returns
    -------
    accuracy : dict
        ``{"top1": float, "top5": float | None}``, fractions in [0, 1]; ``top5`` is ``None``
        for ``k < 5``. Ties between the true item and distractors count in expectation over a
        random order of the tied candidates, so a constant model scores chance, not 100%.
    """
    brain = _as_features("brain", brain)
    concepts = _as_features("concepts", concepts)
    if brain.shape != concepts.shape:
        raise ValueError(
            f"brain and concepts must have the same shape (one concept row per brain row), "
            f"got {brain.shape} and {concepts.shape}."
        )
    check_option("metric", metric, ("dot", "cosine"))
    n_items = brain.shape[0]
    k = ensure_int("k", k)
    if not 2 <= k <= n_items:
        raise ValueError(f"k must be between 2 and the number of items ({n_items}), got {k}.")
    n_trials = n_items if n_trials is None else ensure_int("n_trials", n_trials)
    if n_trials < 1:
        raise ValueError(f"n_trials must be positive, got {n_trials}.")
    if metric == "cosine":
        brain = brain / np.maximum(np.linalg.norm(brain, axis=1, keepdims=True), 1e-12)
        concepts = concepts / np.maximum(np.linalg.norm(concepts, axis=1, keepdims=True), 1e-12)

    rng = np.random.default_rng(seed)
    items = _query_items(n_items, n_trials, rng)

    above = np.empty(n_trials, dtype=np.int64)
    level = np.empty(n_trials, dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // n_items)
    # Small galleries: one score matrix, rows gathered per trial; large ones: rows per block.
    scores = brain @ concepts.T if n_items * n_items <= _BLOCK_ELEMENTS else None
    for start in range(0, n_trials, block):
        query = items[start : start + block]
        # (trials, n_items): the query against every concept
        row = scores[query] if scores is not None else brain[query] @ concepts.T
        # The true score from the same product, so equal scores compare equal bit for bit.
        truth = row[np.arange(query.size), query][:, None]
        if k < n_items:
            distractors = _draw_distractors(query, n_items, k - 1, rng)
            candidate = np.take_along_axis(row, distractors, axis=1)
        else:
            candidate = row
            candidate[np.arange(query.size), query] = -np.inf  # the true item is no distractor
        above[start : start + block] = (candidate > truth).sum(axis=1)
        level[start : start + block] = (candidate == truth).sum(axis=1)

    # Expected hit rate when the tied candidates (and the true item) are ordered at random.
    def _hit_rate(top: int) -> float:
        places = np.clip(top - above, 0, level + 1)
        return float(np.mean(places / (level + 1)))

    return {"top1": _hit_rate(1), "top5": _hit_rate(5) if k >= 5 else None}
