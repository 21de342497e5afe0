"""The 80-lag AR baseline: recovers an AR process, equals scikit-learn's SGD objective, generates reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from brainfm.downstream.generation.ar_baseline import ARBaseline, fit_ar_baseline, generate_ar

AR2 = np.array([1.2, -0.5])  # a stable AR(2): spectral peak, non-trivial dynamics


def _ar2(n_channels=3, n_times=20000, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n_channels, n_times))
    e = noise * rng.standard_normal((n_channels, n_times))
    for t in range(2, n_times):
        x[:, t] = AR2[0] * x[:, t - 1] + AR2[1] * x[:, t - 2] + e[:, t]
    return x


def test_80_lags_on_an_ar2_process_recover_it():
    x = _ar2()
    model = fit_ar_baseline([x[:, :12000], x[:, 12000:]], n_lags=80)
    assert model.n_lags == 80 and model.n_channels == 3 and model.stable.all()
    np.testing.assert_allclose(model.coefficients[:, :2], np.tile(AR2, (3, 1)), atol=0.03)
    assert np.abs(model.coefficients[:, 2:]).max() < 0.05
    np.testing.assert_allclose(model.noise_std, 1.0, atol=0.03)
    np.testing.assert_allclose(model.intercept, 0.0, atol=0.05)
    # its output is again that AR(2) process
    generated = generate_ar(model, 20000, n_recordings=2, seed=1)
    refit = fit_ar_baseline(generated, n_lags=2)
    np.testing.assert_allclose(refit.coefficients, np.tile(AR2, (3, 1)), atol=0.03)
    np.testing.assert_allclose(generated.std(axis=2), x.std(), rtol=0.1)


def test_closed_form_is_the_optimum_sgd_regressor_approaches():
    """The fit minimises SGDRegressor's objective (1/n) sum (y - f)^2 / 2 + alpha |w|^2 / 2: it equals
    sklearn's exact Ridge with penalty n * alpha, and SGD itself ends no lower on that objective."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    x = _ar2(n_channels=1, n_times=6000, seed=3, noise=0.5)
    x = (x - x.mean()) / x.std()
    n_lags, alpha = 10, 1e-2
    model = fit_ar_baseline(x, n_lags=n_lags, alpha=alpha)
    design = np.lib.stride_tricks.sliding_window_view(x[0, :-1], n_lags)[:, ::-1]
    target = x[0, n_lags:]
    ridge = linear_model.Ridge(alpha=alpha * len(target)).fit(design, target)
    np.testing.assert_allclose(model.coefficients[0], ridge.coef_, atol=1e-8)
    assert model.intercept[0] == pytest.approx(ridge.intercept_, abs=1e-8)
    sgd = linear_model.SGDRegressor(alpha=alpha, penalty="l2", max_iter=1000, tol=1e-6, random_state=0)
    sgd.fit(design, target)

    def objective(w, b):
        return np.mean((target - design @ w - b) ** 2) / 2 + alpha * (w @ w) / 2

    ours = objective(model.coefficients[0], model.intercept[0])
    assert ours <= objective(sgd.coef_, sgd.intercept_[0])
    assert ours == pytest.approx(objective(sgd.coef_, sgd.intercept_[0]), rel=0.05)  # SGD gets close


def test_generation_is_seeded_and_prompts_are_checked():
    model = fit_ar_baseline(_ar2(n_times=3000), n_lags=8)
    a = generate_ar(model, 500, n_recordings=2, seed=7)
    np.testing.assert_array_equal(a, generate_ar(model, 500, n_recordings=2, seed=7))
    assert not np.array_equal(a, generate_ar(model, 500, n_recordings=2, seed=8))
    assert a.shape == (2, 3, 500) and a.dtype == np.float32
    assert not np.array_equal(a[0], a[1])  # independent streams
    prompted = generate_ar(model, 10, prompt=np.ones((3, 20)))
    assert prompted.shape == (1, 3, 10)
    with pytest.raises(ValueError, match=r"prompt must be \(3, >= 8\)"):
        generate_ar(model, 10, prompt=np.ones((3, 4)))


def test_round_trip_through_json_form():
    model = fit_ar_baseline(_ar2(n_times=2000), n_lags=4)
    again = ARBaseline.from_dict(model.to_dict())
    np.testing.assert_array_equal(again.coefficients, model.coefficients)
    np.testing.assert_array_equal(again.stable, model.stable)


def test_bad_input_is_refused_and_unstable_fits_warned():
    with pytest.raises(ValueError, match="shorter than n_lags"):
        fit_ar_baseline(np.zeros((2, 50)), n_lags=80)
    with pytest.raises(ValueError, match="recording 1 has shape"):
        fit_ar_baseline([np.zeros((2, 500)), np.zeros((3, 500))], n_lags=4)
    with pytest.raises(ValueError, match="non-finite"):
        fit_ar_baseline(np.full((1, 500), np.nan), n_lags=4)
    explosive = np.exp(0.01 * np.arange(3000))[None]  # x_t = 1.01 x_{t-1}
    with pytest.warns(RuntimeWarning, match="unstable on 1 of 1 channels"):
        model = fit_ar_baseline(explosive, n_lags=1, alpha=0.0)
    assert not model.stable[0]
