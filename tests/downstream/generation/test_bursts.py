"""Burst statistics: planted beta bursts are found with their lifetimes, intervals and occupancy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal.windows import tukey

from brainfm.downstream.generation.bursts import amplitude_envelope, burst_statistics, state_runs

SFREQ = 250.0


def _planted_bursts(rng, n_channels, seconds, lifetime_s, interval_s, amplitude=4.0):
    """1/f-ish noise plus 20 Hz bursts of fixed duration at jittered intervals; returns the truth mask too."""
    n_times = int(seconds * SFREQ)
    t = np.arange(n_times) / SFREQ
    signal = np.cumsum(rng.standard_normal((n_channels, n_times)), axis=1) * 0.05 + rng.standard_normal((n_channels, n_times))
    signal -= signal.mean(axis=1, keepdims=True)
    truth = np.zeros((n_channels, n_times), dtype=bool)
    for c in range(n_channels):
        start = rng.uniform(0.2, 1.0)
        while start + lifetime_s[c] < seconds - 0.2:
            first, stop = int(start * SFREQ), int((start + lifetime_s[c]) * SFREQ)
            truth[c, first:stop] = True
            ramp = tukey(stop - first, 0.1)  # 5 % tapers at each edge, flat middle
            signal[c, first:stop] += amplitude * ramp * np.sin(2 * np.pi * 20 * t[first:stop] + rng.uniform(0, 6.28))
            start += lifetime_s[c] + interval_s[c] * rng.uniform(0.8, 1.2)
    return signal, truth


def test_state_runs_marks_censored_edges():
    values, lengths, censored, starts = state_runs(np.array([1, 1, 0, 0, 0, 1, 0, 0]))
    assert values.tolist() == [1, 0, 1, 0]
    assert lengths.tolist() == [2, 3, 1, 2]
    assert censored.tolist() == [True, False, False, True]
    assert starts.tolist() == [0, 2, 5, 6]


def test_planted_bursts_are_found_with_their_lifetimes_intervals_and_occupancy():
    rng = np.random.default_rng(0)
    lifetimes, intervals = np.array([0.2, 0.4, 0.3]), np.array([0.8, 1.2, 2.0])
    signal, truth = _planted_bursts(rng, 3, 60.0, lifetimes, intervals)
    stats = burst_statistics(signal, SFREQ)
    np.testing.assert_allclose(stats.lifetime_ms, lifetimes * 1000, rtol=0.15)
    np.testing.assert_allclose(stats.interval_ms, intervals * 1000, rtol=0.15)
    np.testing.assert_allclose(stats.occupancy, truth.mean(axis=1), atol=0.05)
    expected = [int(np.sum(np.diff(np.concatenate(([0], row.astype(int)))) == 1)) for row in truth]
    np.testing.assert_allclose(stats.n_bursts, expected, rtol=0.1)


def test_bursts_outside_the_band_are_not_counted():
    """Bursts at 6 Hz are invisible to the 13-30 Hz envelope: the statistics stay those of the noise alone."""
    rng = np.random.default_rng(1)
    n_times = int(60 * SFREQ)
    t = np.arange(n_times) / SFREQ
    noise = rng.standard_normal((1, n_times))
    theta = noise + 4 * np.sin(2 * np.pi * 6 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0.6)  # 0.6 s bursts
    with_theta, alone = burst_statistics(theta, SFREQ), burst_statistics(noise, SFREQ)
    assert with_theta.lifetime_ms[0] < 250
    assert with_theta.lifetime_ms[0] == pytest.approx(alone.lifetime_ms[0], rel=0.1)
    assert with_theta.occupancy[0] == pytest.approx(alone.occupancy[0], abs=0.03)


def test_envelope_of_a_pure_beta_sine_is_its_amplitude():
    t = np.arange(int(10 * SFREQ)) / SFREQ
    envelope = amplitude_envelope(3.0 * np.sin(2 * np.pi * 20 * t)[None], SFREQ)
    np.testing.assert_allclose(envelope[0, 250:-250], 3.0, rtol=0.02)
    with pytest.raises(ValueError, match="sfreq / 2"):
        amplitude_envelope(np.zeros((1, 100)), 50.0, (13.0, 30.0))
