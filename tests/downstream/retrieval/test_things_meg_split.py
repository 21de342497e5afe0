"""The reference's THINGS-MEG split (spec §3.2, §8.10)."""

from __future__ import annotations

import numpy as np
import pytest

from brainfm.downstream.retrieval.things_meg_split import things_meg_split


def _events(seed: int = 0) -> tuple[list[str], list[str]]:
    # 400 categories, 12 images each shown once, plus 100 categories whose first image is one
    # of the original test images, shown 12 times; shuffled as over sessions.
    images, categories = [], []
    for c in range(400):
        for i in range(12):
            images.append(f"c{c}_{i:02d}.jpg")
            categories.append(f"c{c}")
    for c in range(100):
        images += [f"c{c}_test.jpg"] * 12
        categories += [f"c{c}"] * 12
    order = np.random.default_rng(seed).permutation(len(images))
    return [images[i] for i in order], [categories[i] for i in order]


def test_200_test_categories_disjoint_from_training_without_the_repeated_images():
    images, categories = _events()
    split = things_meg_split(images, categories)
    cats, imgs = np.array(categories), np.array(images)
    assert len(split.test_categories) == 200
    train_cats, test_cats = set(cats[split.train]), set(cats[split.test])
    assert test_cats == set(split.test_categories) and not train_cats & test_cats
    assert len(train_cats) == 200  # every other category trains
    assert not any(name.endswith("_test.jpg") for name in imgs[np.concatenate([split.train, split.test])])
    counts = np.unique(cats[np.concatenate([split.train, split.test])], return_counts=True)[1]
    assert counts.max() <= 12
    assert len(set(split.train) | set(split.test)) == split.train.size + split.test.size
    # the gallery holds one image per test category: the first one shown
    for category, image in split.gallery.items():
        first = next(i for i, c in zip(imgs, cats, strict=True) if c == category and not i.endswith("_test.jpg"))
        assert image == first


def test_split_is_seeded():
    images, categories = _events()
    assert things_meg_split(images, categories).test_categories == things_meg_split(images, categories).test_categories
    assert things_meg_split(images, categories, seed=1).test_categories != things_meg_split(images, categories).test_categories


def test_too_few_categories_is_refused():
    images, categories = _events()
    with pytest.raises(ValueError, match="leaves no training category"):
        things_meg_split(images, categories, n_test_categories=400)
