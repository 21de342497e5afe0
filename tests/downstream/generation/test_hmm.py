"""The vectorised Gaussian HMM: recovers planted chains, matches hmmlearn, Viterbi decodes."""

from __future__ import annotations

import numpy as np
import pytest

from brainfm.downstream.generation.hmm import fit_gaussian_hmm, viterbi


def _chain(rng, n_times, stay=(0.98, 0.95), means=(0.0, 2.0), std=0.5):
    states = np.empty(n_times, dtype=int)
    states[0] = 0
    flips = rng.random(n_times)
    for t in range(1, n_times):
        s = states[t - 1]
        states[t] = s if flips[t] < stay[s] else 1 - s
    return states, np.asarray(means)[states] + std * rng.standard_normal(n_times)


def test_recovers_planted_means_transitions_and_states_for_every_series():
    rng = np.random.default_rng(0)
    chains = [_chain(rng, 6000, stay=(0.98, 0.95 - 0.03 * i), means=(i, i + 2.0)) for i in range(3)]
    x = np.stack([c[1] for c in chains])
    fit = fit_gaussian_hmm(x)
    assert fit.converged
    for i in range(len(chains)):
        np.testing.assert_allclose(fit.means[i], [i, i + 2.0], atol=0.05)
        np.testing.assert_allclose(np.sqrt(fit.variances[i]), [0.5, 0.5], atol=0.05)
        np.testing.assert_allclose(np.diagonal(fit.transitions[i]), [0.98, 0.95 - 0.03 * i], atol=0.015)
    np.testing.assert_allclose(fit.transitions.sum(axis=2), 1.0)
    decoded = viterbi(x, fit)
    truth = np.stack([c[0] for c in chains])
    assert (decoded == truth).mean() > 0.97


def test_states_are_sorted_by_mean_whatever_the_data_order():
    rng = np.random.default_rng(1)
    _, x = _chain(rng, 3000, means=(3.0, -1.0))
    fit = fit_gaussian_hmm(x)
    assert fit.means[0, 0] < fit.means[0, 1]
    np.testing.assert_allclose(fit.means[0], [-1.0, 3.0], atol=0.05)
    # the state that stays 0.98 of the time is now state 1 (mean 3)
    assert fit.transitions[0, 1, 1] == pytest.approx(0.98, abs=0.01)


def test_matches_hmmlearn_log_likelihood_and_parameters():
    hmm = pytest.importorskip("hmmlearn.hmm", reason="hmmlearn (the reference) is not installed")
    rng = np.random.default_rng(2)
    _, x = _chain(rng, 4000)
    ours = fit_gaussian_hmm(x, tol=1e-8, n_iter=200)
    reference = hmm.GaussianHMM(2, n_iter=200, tol=1e-8 * x.size, random_state=0).fit(x[:, None])
    order = np.argsort(reference.means_[:, 0])
    np.testing.assert_allclose(ours.means[0], reference.means_[order, 0], atol=1e-3)
    np.testing.assert_allclose(ours.transitions[0], reference.transmat_[np.ix_(order, order)], atol=1e-3)
    assert ours.log_likelihood[0] == pytest.approx(reference.score(x[:, None]), rel=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="non-finite"):
        fit_gaussian_hmm(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="n_times >= 2"):
        fit_gaussian_hmm(np.zeros((2, 1)))
    fit = fit_gaussian_hmm(np.random.default_rng(0).standard_normal((2, 50)))
    with pytest.raises(ValueError, match="3 series but the fit has 2"):
        viterbi(np.zeros((3, 50)), fit)
