"""Synthetic paired data and the learning check (spec §8.9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainfm.downstream.retrieval import k_way_accuracy
from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.synthetic import make_synthetic_retrieval, pink_noise
from brainfm.downstream.retrieval.training import encode, seeded_init, train_contrastive


@pytest.fixture
def one_thread():
    # Two threads on a loaded two-core machine are several times slower than one for this size.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_noise_spectrum_falls_as_one_over_f_to_the_exponent(exponent):
    noise = pink_noise((200, 1024), np.random.default_rng(0), exponent)
    np.testing.assert_allclose(noise.std(axis=-1), 1.0, rtol=1e-4)
    power = (np.abs(np.fft.rfft(noise, axis=-1)) ** 2).mean(0)
    frequency = np.arange(power.size)
    band = slice(4, 400)
    slope = np.polyfit(np.log(frequency[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 10.0])
def test_noise_is_scaled_to_the_requested_snr(snr_db):
    clean = make_synthetic_retrieval(n_concepts=30, snr_db=200.0, seed=1)
    noisy = make_synthetic_retrieval(n_concepts=30, snr_db=snr_db, seed=1)
    np.testing.assert_array_equal(clean.targets, noisy.targets)
    noise = noisy.signals - clean.signals
    measured = 10 * np.log10(np.mean(clean.signals**2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.01)


def test_signals_are_a_fixed_linear_map_of_the_targets():
    data = make_synthetic_retrieval(n_concepts=100, n_repeats=3, snr_db=300.0, seed=2)
    assert data.signals.shape == (300, 8, 64) and data.concept_ids.tolist() == np.repeat(np.arange(100), 3).tolist()
    flat = data.signals.reshape(300, -1).astype(np.float64)
    # one linear map, fitted on these trials, predicts the trials of other targets (same mixing)
    other = make_synthetic_retrieval(n_concepts=20, n_repeats=3, snr_db=300.0, seed=3, mixing_seed=2)
    mixing, *_ = np.linalg.lstsq(data.targets[data.concept_ids].astype(np.float64), flat, rcond=None)
    predicted = other.targets[other.concept_ids] @ mixing
    np.testing.assert_allclose(predicted, other.signals.reshape(60, -1), atol=1e-4)


def test_same_seed_same_data():
    a, b = make_synthetic_retrieval(seed=4, n_concepts=10), make_synthetic_retrieval(seed=4, n_concepts=10)
    np.testing.assert_array_equal(a.signals, b.signals)


@pytest.mark.slow
def test_reduced_adapter_learns_held_out_concepts(one_thread):
    # Spec §8.9: 64-d targets, a width-32 adapter trained 200 steps, 10-way top-1 > 50% on
    # concepts never seen in training (single trials, 1/f noise at 0 dB SNR).
    data = make_synthetic_retrieval(n_concepts=250, n_repeats=4, snr_db=0.0, seed=0)
    train = data.concept_ids < 200
    config = AdapterConfig(
        n_chans=8, n_times=64, d_model=32, n_heads=2, d_ff=32, temporal_kernel=5, pool_kernel=5,
        pool_stride=2, n_filters=8, out_dim=64,
    )
    model = seeded_init(lambda: ModalityAdapter(config), seed=0)
    loss = ContrastiveLoss("standard")
    signals, targets = torch.from_numpy(data.signals), torch.from_numpy(data.targets)
    untrained = encode(model, signals[~train])
    losses = train_contrastive(
        model, loss, signals[train], targets[data.concept_ids[train]], n_steps=200, batch_size=64, lr=1e-3
    )
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    held_out = data.concept_ids[~train]
    trained = k_way_accuracy(encode(model, signals[~train]), data.targets[held_out], k=10, n_trials=10_000)
    chance = k_way_accuracy(untrained, data.targets[held_out], k=10, n_trials=10_000)
    assert trained["top1"] > 0.5, trained
    assert chance["top1"] < 0.2, chance


def test_training_is_reproducible_and_leaves_the_global_generator_alone(one_thread):
    data = make_synthetic_retrieval(n_concepts=12, n_repeats=2, seed=5)
    config = AdapterConfig(n_chans=8, n_times=64, d_model=32, n_heads=2, d_ff=32, temporal_kernel=5, pool_kernel=5, pool_stride=2, n_filters=8, out_dim=64)
    x, y = torch.from_numpy(data.signals), torch.from_numpy(data.targets[data.concept_ids])
    state = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        model = seeded_init(lambda: ModalityAdapter(config), seed=1)
        runs.append(train_contrastive(model, ContrastiveLoss(), x, y, n_steps=3, batch_size=8, seed=2))
    assert runs[0] == runs[1]
    assert torch.equal(torch.random.get_rng_state(), state)
