"""Train/validation/test splits of a window index, by subject, recording or window, seeded.

Units (subjects, recordings or single windows) are sorted by name, permuted with a
generator seeded by ``seed`` and cut by the fractions, so a split depends only on the
data's names, the fractions and the seed, never on the order recordings were stored.
Splitting by ``subject`` keeps every window of a subject in one part (brainfm's default;
BrainOmni's reference splits by ``window``, so test windows can come from training subjects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from brainfm._check import check_option
from brainfm.loading.windows import WindowIndex

__all__ = ["SPLIT_UNITS", "split_index"]

SPLIT_UNITS: tuple[str, ...] = ("subject", "recording", "window")


def split_index(
    index: WindowIndex,
    fractions: Mapping[str, float],
    *,
    unit: Literal["subject", "recording", "window"] = "subject",
    seed: int = 0,
) -> dict[str, WindowIndex]:
    """Split windows into named parts.

    Parameters
    ----------
    index : WindowIndex
        The windows.
    fractions : mapping of str to float
        Part name -> fraction of the units, e.g. ``{"train": 0.8, "val": 0.1, "test": 0.1}``;
        fractions are normalised by their sum. Every part with a positive fraction gets at
        least one unit when there are enough units.
    unit : "subject" | "recording" | "window"
        What is kept together.
    seed : int
        Seed of the permutation.

    Returns
    -------
    parts : dict of str to WindowIndex
        One index per part, in the order of ``fractions``.
    """
    check_option("unit", unit, SPLIT_UNITS)
    names = list(fractions)
    weights = np.array([float(fractions[n]) for n in names])
    if not len(names) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {dict(fractions)}.")
    if unit == "window":
        keys = np.arange(len(index))
        units = keys
    else:
        field = "subject" if unit == "subject" else "recording_id"
        keys = index.recording_field(field)
        units = np.array(sorted(set(keys.tolist())), dtype=object)
    rng = np.random.default_rng([int(seed), 0x73706C])
    permuted = units[rng.permutation(len(units))]
    exact = weights / weights.sum() * len(units)
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: len(units) - int(counts.sum())]:
        counts[i] += 1  # largest remainders first
    for i in np.flatnonzero((counts == 0) & (weights > 0)):
        largest = int(np.argmax(counts))
        if counts[largest] > 1:  # a positive part never ends up empty while units can be spared
            counts[largest] -= 1
            counts[i] += 1
    bounds = np.concatenate([[0], np.cumsum(counts)])
    parts = {}
    for i, name in enumerate(names):
        chosen = permuted[bounds[i] : bounds[i + 1]]
        if unit == "window":
            mask = np.zeros(len(index), dtype=bool)
            mask[chosen.astype(np.int64)] = True
        else:
            mask = np.isin(keys, chosen)
        parts[name] = index.subset(mask)
    return parts
