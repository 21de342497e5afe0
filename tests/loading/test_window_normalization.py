"""BaRISTA's per-segment z-score (normalization="window"): every channel of every window."""

from __future__ import annotations

import numpy as np
import torch

from brainfm.loading import WindowDataset, build_window_index
from brainfm.loading.normalization import window_normalize_


def test_every_channel_of_every_window_has_mean_zero_std_one(make_recording, make_store):
    recording = make_recording(n_channels=4, n_times=1000, types=["seeg"] * 4, names=["LA1", "LA2", "LA3", "LA4"],
                               bad=[2])
    rng = np.random.default_rng(0)
    recording.signal[:] = (rng.standard_normal((4, 1000)) * [[1e-5], [3e-4], [1e-5], [2e-6]] + 1e-3).astype(np.float32)
    store = make_store([recording])
    index = build_window_index(store, window_s=1.0, stride_s=0.3)
    dataset = WindowDataset(index, store, "window")
    batch = dataset.__getitems__(np.arange(len(index)))
    good = [0, 1, 3]
    signal = batch.signal.double()
    torch.testing.assert_close(signal[:, good].mean(-1), torch.zeros(len(index), 3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(signal[:, good].std(-1, unbiased=False), torch.ones(len(index), 3, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert (batch.signal[:, 2] == 0).all() and batch.channel_mask[:, 2].logical_not().all()


def test_flat_window_stays_finite_and_other_channels_are_untouched():
    signal = torch.zeros(2, 3, 50)
    signal[:, 1] = torch.linspace(0, 1, 50)
    signal[:, 2] = 7.0
    out = window_normalize_(signal, np.array([True, True, False]))
    assert torch.isfinite(out).all() and (out[:, 0] == 0).all()
    assert (out[:, 2] == 7.0).all()  # not a good channel: left as it is
    torch.testing.assert_close(out[:, 1].std(-1, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
