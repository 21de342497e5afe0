"""The reference's THINGS-MEG train/test split (spec §3.2).

BrainFLORA does not use THINGS-MEG's own split. Events whose image was shown exactly 12
times (the original repeated test images) are dropped; of the remaining categories 200 are
drawn at random (seed 42) as test categories, the others train; each category keeps at most
12 events. The test trials of a category are averaged in evaluation and the gallery image is
the category's first image.

The draw uses numpy's ``default_rng(seed)``, so the categories are not the reference's exact
ones (its random generator is not part of its public code); the procedure is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["ThingsMegSplit", "things_meg_split"]


@dataclasses.dataclass
class ThingsMegSplit:
    """Event indices of each side of the split, and the test gallery."""

    train: np.ndarray
    """Indices (into the events) of the training events."""
    test: np.ndarray
    """Indices of the test events."""
    test_categories: list[str]
    """The held-out categories, sorted."""
    gallery: dict[str, str]
    """Test category -> its first image (in event order), the retrieval target."""


def things_meg_split(
    image_ids: Sequence[str],
    categories: Sequence[str],
    n_test_categories: int = 200,
    seed: int = 42,
    max_per_category: int = 12,
    repeated_shows: int = 12,
) -> ThingsMegSplit:
    """Split THINGS-MEG events the way the BrainFLORA reference does.

    Parameters
    ----------
    image_ids : sequence of str
        The image shown at each event (all sessions of a subject).
    categories : sequence of str
        The category (concept) of each event's image.
    n_test_categories : int
        Categories held out (200).
    seed : int
        Seed of the category draw (42).
    max_per_category : int
        Events kept per category, in event order (12).
    repeated_shows : int
        Images shown exactly this often are the original test images and are dropped (12).

    Returns
    -------
    split : ThingsMegSplit
    """
    images = np.asarray(image_ids, dtype=object)
    cats = np.asarray(categories, dtype=object)
    if images.shape != cats.shape:
        raise ValueError(f"image_ids and categories differ in length: {images.size} and {cats.size}.")
    unique, inverse, counts = np.unique(images.astype(str), return_inverse=True, return_counts=True)
    kept = counts[inverse] != repeated_shows
    pool = np.unique(cats[kept].astype(str))
    if n_test_categories >= pool.size:
        raise ValueError(
            f"n_test_categories={n_test_categories} leaves no training category: only {pool.size} "
            f"categories remain after dropping the images shown {repeated_shows} times."
        )
    test_categories = sorted(np.random.default_rng(seed).choice(pool, n_test_categories, replace=False).tolist())
    is_test = np.isin(cats.astype(str), test_categories)
    taken: dict[str, int] = {}
    train, test = [], []
    gallery: dict[str, str] = {}
    for index in np.flatnonzero(kept):
        category = str(cats[index])
        if taken.get(category, 0) >= max_per_category:
            continue
        taken[category] = taken.get(category, 0) + 1
        if is_test[index]:
            test.append(index)
            gallery.setdefault(category, str(images[index]))
        else:
            train.append(index)
    return ThingsMegSplit(np.array(train, dtype=np.int64), np.array(test, dtype=np.int64), test_categories, gallery)
