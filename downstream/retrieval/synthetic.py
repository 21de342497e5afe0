"""Synthetic paired data for the retrieval learning check (spec §8.9; issue 12 goals).

"Neural" trials are generated from concept embeddings by one fixed random mixing, plus
realistic background noise:

    signal[c, t] = sum_k target[k] * spatial[k, c] * waveform[k, t]
    trial        = signal + noise,   noise: independent 1/f^exponent ("pink") per channel

``spatial`` holds random sensor patterns and ``waveform`` smooth evoked-like bumps (a Gaussian
envelope times a low-frequency sinusoid, latencies spread over the epoch), so the mixing is a
fixed linear map of the targets, as the spec asks, shaped like stimulus-locked responses. The
SNR is the ratio of mean signal power to mean noise power over all trials, in decibels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["SyntheticRetrievalData", "make_synthetic_retrieval", "pink_noise"]


def pink_noise(shape: tuple[int, ...], rng: np.random.Generator, exponent: float = 1.0) -> np.ndarray:
    """Noise with a 1/f^exponent power spectrum along the last axis, unit variance per series.

    Parameters
    ----------
    shape : tuple of int
        Output shape; the last axis is time.
    rng : numpy.random.Generator
        Random generator.
    exponent : float
        Spectral exponent (1 for pink noise, 0 for white, 2 for brown).

    Returns
    -------
    noise : ndarray of float32
    """
    n_times = shape[-1]
    spectrum = rng.standard_normal((*shape[:-1], n_times // 2 + 1)) + 1j * rng.standard_normal(
        (*shape[:-1], n_times // 2 + 1)
    )
    frequency = np.arange(n_times // 2 + 1, dtype=np.float64)
    frequency[0] = 1.0  # no infinite power at DC
    noise = np.fft.irfft(spectrum * frequency ** (-exponent / 2.0), n=n_times, axis=-1)
    noise -= noise.mean(axis=-1, keepdims=True)
    noise /= noise.std(axis=-1, keepdims=True)
    return noise.astype(np.float32)


@dataclasses.dataclass
class SyntheticRetrievalData:
    """Trials, their concept ids and the concept embeddings."""

    signals: np.ndarray
    """(n_trials, n_chans, n_times) float32."""
    concept_ids: np.ndarray
    """(n_trials,) int64, the row of ``targets`` each trial shows."""
    targets: np.ndarray
    """(n_concepts, target_dim) float32 concept embeddings."""
    snr_db: float
    """Signal-to-noise ratio the noise was scaled to."""


def make_synthetic_retrieval(
    n_concepts: int = 250,
    n_repeats: int = 4,
    n_chans: int = 8,
    n_times: int = 64,
    target_dim: int = 64,
    snr_db: float = 0.0,
    noise_exponent: float = 1.0,
    seed: int = 0,
    mixing_seed: int | None = None,
) -> SyntheticRetrievalData:
    """Generate ``n_repeats`` noisy trials of each of ``n_concepts`` random concept embeddings.

    Parameters
    ----------
    n_concepts : int
        Number of concepts (rows of ``targets``).
    n_repeats : int
        Trials per concept, each with fresh noise.
    n_chans, n_times : int
        Trial shape.
    target_dim : int
        Width of the concept embeddings.
    snr_db : float
        Mean signal power over mean noise power, in dB.
    noise_exponent : float
        Spectral exponent of the noise (1: 1/f).
    seed : int
        Seed of the targets and the noise.
    mixing_seed : int | None
        Seed of the fixed mixing; ``None`` uses ``seed``. Keep it fixed to generate more data
        (other targets, other noise) from the same "brain".

    Returns
    -------
    data : SyntheticRetrievalData
    """
    mixing_rng = np.random.default_rng(seed if mixing_seed is None else mixing_seed)
    spatial = mixing_rng.standard_normal((target_dim, n_chans)) / np.sqrt(n_chans)
    t = np.arange(n_times) / n_times
    latency = mixing_rng.uniform(0.15, 0.85, (target_dim, 1))
    width = mixing_rng.uniform(0.05, 0.2, (target_dim, 1))
    cycles = mixing_rng.uniform(0.5, 4.0, (target_dim, 1))
    phase = mixing_rng.uniform(0, 2 * np.pi, (target_dim, 1))
    waveform = np.exp(-0.5 * ((t - latency) / width) ** 2) * np.cos(2 * np.pi * cycles * t + phase)

    rng = np.random.default_rng(seed)
    targets = rng.standard_normal((n_concepts, target_dim)).astype(np.float32)
    concept_ids = np.repeat(np.arange(n_concepts), n_repeats)
    # (trials, C, L) = sum_k target[k] * spatial[k, c] * waveform[k, t]
    signals = np.einsum("nk,kc,kt->nct", targets[concept_ids], spatial, waveform)
    noise = pink_noise(signals.shape, rng, noise_exponent)
    scale = np.sqrt(np.mean(signals**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    trials = (signals + scale * noise).astype(np.float32)
    return SyntheticRetrievalData(trials, concept_ids.astype(np.int64), targets, float(snr_db))
