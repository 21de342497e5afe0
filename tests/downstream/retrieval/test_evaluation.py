"""k-way evaluator: chance levels, determinism, perfect features, sampling protocol (spec §6, §8.8)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy import stats

from brainfm.downstream.retrieval import k_way_accuracy


def _random(n_items: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_items, n_features)), rng.standard_normal((n_items, n_features))


def _within_three_se(value: float, p: float, n: int) -> bool:
    return abs(value - p) <= 3 * np.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def random_features():
    # One trial per item over many independent items, so 10,000 trials are 10,000 independent
    # outcomes and the binomial standard error applies.
    return _random(10_000, 16, seed=0)


@pytest.mark.parametrize("k", [2, 4, 10, 50, 200])
def test_random_features_score_chance(random_features, k):
    brain, concepts = random_features
    result = k_way_accuracy(brain, concepts, k=k, n_trials=10_000, seed=42)
    assert _within_three_se(result["top1"], 1 / k, 10_000), result
    if k >= 5:
        assert _within_three_se(result["top5"], 5 / k, 10_000), result
    else:
        assert result["top5"] is None


def test_random_features_top5_at_200_way_is_two_and_a_half_percent(random_features):
    brain, concepts = random_features
    result = k_way_accuracy(brain, concepts, k=200, n_trials=10_000, seed=42)
    assert _within_three_se(result["top5"], 0.025, 10_000), result


def test_whole_gallery_on_random_features_scores_chance():
    # k == n_items: no sampling, every other item is a distractor.
    brain, concepts = _random(2000, 16, seed=1)
    result = k_way_accuracy(brain, concepts, k=2000, seed=42)
    assert _within_three_se(result["top5"], 5 / 2000, 2000), result


@pytest.mark.parametrize("k", [2, 10, 200])
def test_identical_features_are_perfect(k):
    features = np.random.default_rng(3).standard_normal((200, 32))
    result = k_way_accuracy(features, features, k=k, n_trials=10_000, seed=42, metric="cosine")
    assert result["top1"] == 1.0
    # with the dot product, identical unit-norm features are perfect too
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    assert k_way_accuracy(unit, unit, k=k, n_trials=1000)["top1"] == 1.0
    if k >= 5:
        assert result["top5"] == 1.0


def test_dot_product_ranks_by_magnitude_cosine_does_not():
    # A long concept vector wins every dot-product trial it appears in; cosine ignores the norm.
    rng = np.random.default_rng(4)
    unit = np.abs(rng.standard_normal((50, 64)))  # positive: every dot product is positive
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    concepts = unit.copy()
    concepts[0] *= 1000.0
    dot = k_way_accuracy(unit, concepts, k=50)
    assert dot["top1"] == pytest.approx(1 / 50)  # only item 0 itself is right
    assert k_way_accuracy(unit, concepts, k=50, metric="cosine")["top1"] == 1.0


def test_same_seed_same_result_other_seed_other_draw():
    brain, concepts = _random(300, 8, seed=5)
    first = k_way_accuracy(brain, concepts, k=10, n_trials=10_000, seed=42)
    again = k_way_accuracy(brain, concepts, k=10, n_trials=10_000, seed=42)
    other = k_way_accuracy(brain, concepts, k=10, n_trials=10_000, seed=7)
    assert first == again
    assert first != other


@pytest.mark.parametrize("k", [6, 30])  # small draws by skipping repeats, large by random keys
def test_partially_informative_features_match_the_exact_expectation(k):
    # With g_i other concepts scoring above item i's own, a trial of item i is a top-m hit when
    # fewer than m of its k - 1 distractors (drawn without replacement from the n - 1 others)
    # are among those g_i: a hypergeometric probability.
    rng = np.random.default_rng(6)
    n_items = 40
    concepts = rng.standard_normal((n_items, 8))
    brain = concepts + 3.0 * rng.standard_normal((n_items, 8))
    scores = brain @ concepts.T
    better = (scores > np.diagonal(scores)[:, None]).sum(axis=1)
    draws = stats.hypergeom(M=n_items - 1, n=better, N=k - 1)
    expected = {"top1": draws.cdf(0).mean(), "top5": draws.cdf(4).mean()}
    n_trials = 100 * n_items
    result = k_way_accuracy(brain, concepts, k=k, n_trials=n_trials, seed=11)
    for key, p in expected.items():
        assert 0.05 < p < 0.99  # informative but imperfect, so the check has teeth
        assert abs(result[key] - p) < 4 * np.sqrt(p * (1 - p) / n_trials), (key, result[key], p)


def test_distractors_are_drawn_without_replacement_and_exclude_the_truth():
    # A single concept that beats the truth: the top-1 miss rate is the chance that it is drawn,
    # (k - 1) / (n_items - 1) without replacement and never when it is the query itself.
    n_items, k = 20, 5
    brain = np.eye(n_items)
    concepts = np.eye(n_items)
    concepts[0, :] = 2.0  # concept 0 scores 2 against every query; the true score is 1
    result = k_way_accuracy(brain, concepts, k=k, n_trials=200_000, seed=0)
    p_drawn = (k - 1) / (n_items - 1)
    expected = (1 / n_items) * 1.0 + (n_items - 1) / n_items * (1 - p_drawn)
    assert result["top1"] == pytest.approx(expected, abs=0.005)


def test_ties_count_at_chance_not_as_hits():
    constant = np.ones((100, 4))
    result = k_way_accuracy(constant, constant, k=10, n_trials=1000)
    assert result["top1"] == pytest.approx(0.1)
    assert result["top5"] == pytest.approx(0.5)


def test_torch_tensors_are_accepted():
    features = torch.eye(12)
    assert k_way_accuracy(features, features, k=12)["top1"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 1}, ValueError, "k must be between 2"),
        ({"k": 31}, ValueError, r"number of items \(30\)"),
        ({"k": True}, TypeError, "k must be an int"),
        ({"k": 2, "n_trials": 0}, ValueError, "n_trials must be positive"),
        ({"k": 2, "metric": "cos"}, ValueError, "'metric' parameter"),
    ],
)
def test_invalid_arguments_name_the_parameter(kwargs, error, match):
    brain, concepts = _random(30, 4, seed=0)
    with pytest.raises(error, match=match):
        k_way_accuracy(brain, concepts, **kwargs)


def test_mismatched_or_non_finite_features_are_refused():
    brain, concepts = _random(30, 4, seed=0)
    with pytest.raises(ValueError, match="same shape"):
        k_way_accuracy(brain, concepts[:, :3], k=2)
    brain[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        k_way_accuracy(brain, concepts, k=2)


@pytest.mark.slow
def test_200_way_over_10000_trials_is_fast():
    brain, concepts = _random(200, 1024, seed=0)
    start = time.perf_counter()
    k_way_accuracy(brain, concepts, k=200, n_trials=10_000)
    k_way_accuracy(brain, concepts, k=50, n_trials=10_000)
    assert time.perf_counter() - start < 10.0
