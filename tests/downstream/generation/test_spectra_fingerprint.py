"""PSD errors per band and recording fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from brainfm.downstream.generation.fingerprint import (
    fingerprint_accuracy,
    fingerprint_features,
    tde_covariance,
)
from brainfm.downstream.generation.spectra import BANDS, band_power, psd_relative_error, welch_psd

SFREQ = 200.0


def _recordings(n, seed=0, n_channels=3, seconds=20):
    """Recordings that differ from each other: each has its own alpha frequency and per-channel gains."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SFREQ)) / SFREQ
    out = []
    for i in range(n):
        gains = rng.uniform(0.5, 2.0, (n_channels, 1))
        alpha = np.sin(2 * np.pi * (8 + 0.7 * i) * t + rng.uniform(0, 6, (n_channels, 1)))
        out.append(gains * (rng.standard_normal((n_channels, t.size)) + 2 * alpha))
    return out


def test_identical_spectra_have_zero_error_and_scaled_ones_the_exact_error():
    freqs, psd = welch_psd(_recordings(2), SFREQ)
    assert freqs[0] == 1.0 and freqs[-1] == 45.0
    real = psd.mean(axis=0)
    same = psd_relative_error(freqs, real, real.copy())
    assert same["broadband"] == 0.0
    assert all(band["relative_error"] == 0.0 for band in same["bands"].values())
    assert list(same["bands"]) == list(BANDS)
    _, doubled = welch_psd([2 * r for r in _recordings(2)], SFREQ)  # amplitude x2 -> power x4
    error = psd_relative_error(freqs, real, doubled.mean(axis=0))
    for band in error["bands"].values():
        assert band["relative_error"] == pytest.approx(3.0)
        assert len(band["per_channel"]) == 3


def test_band_power_is_the_mean_density_inside_each_band():
    freqs = np.arange(1.0, 46.0)
    psd = np.where(freqs < 4, 10.0, 1.0)[None]  # delta bins 1, 2, 3 hold 10
    power = band_power(freqs, psd)
    np.testing.assert_allclose(power[0], [10.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="band 'x'.*holds no frequency bin"):
        band_power(freqs, psd, {"x": (50.0, 60.0)})


def test_welch_refuses_a_range_above_nyquist():
    with pytest.raises(ValueError, match="sfreq / 2 = 50"):
        welch_psd([np.zeros((1, 400))], 100.0, fmax=60.0)


def test_tde_covariance_holds_lagged_covariances():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5000))
    x[1, 3:] = x[0, :-3]  # channel 1 is channel 0 delayed by 3 samples
    covariance = tde_covariance(x, n_lags=21)
    assert covariance.shape == (42, 42)
    np.testing.assert_allclose(covariance, covariance.T)
    # channel 1 at lag l equals channel 0 at lag l - 3
    assert covariance[0 * 21 + 5, 1 * 21 + 8] == pytest.approx(1.0, abs=0.05)
    assert covariance[0 * 21 + 5, 1 * 21 + 5] == pytest.approx(0.0, abs=0.05)
    with pytest.raises(ValueError, match="2100 dimensions"):
        tde_covariance(np.zeros((100, 500)), n_lags=21)


@pytest.mark.parametrize("kind", ["psd", "spatial", "spatial_spectral", "tde_cov"])
def test_new_segments_of_the_same_recordings_are_identified(kind):
    recordings = _recordings(6, seconds=40)
    half = recordings[0].shape[1] // 2
    first = fingerprint_features([r[:, :half] for r in recordings], SFREQ, kind)
    second = fingerprint_features([r[:, half:] for r in recordings], SFREQ, kind)
    accuracy = fingerprint_accuracy(first, second, top_k=(1, 5))
    assert accuracy["top1"] == 1.0 and accuracy["top5"] == 1.0
    assert accuracy["chance_top1"] == pytest.approx(1 / 6) and accuracy["chance_top5"] == pytest.approx(5 / 6)


def test_shuffled_recordings_are_not_identified():
    recordings = _recordings(6, seconds=40)
    features = fingerprint_features(recordings, SFREQ, "psd")
    shuffled = features[[1, 2, 3, 4, 5, 0]]
    assert fingerprint_accuracy(features, shuffled, top_k=(1,))["top1"] == 0.0
    with pytest.raises(ValueError, match="pairs generated recording i with real recording i"):
        fingerprint_accuracy(features, features[:3])
