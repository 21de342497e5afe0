"""WindowDataModule over real EEG, MEG and iEEG recordings, with DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from brainfm.data.channels import SENSOR_TYPE_IDS
from brainfm.loading import Batch, Vocabulary, WindowDataModule


@pytest.mark.slow
def test_data_module_feeds_eeg_meg_and_ieeg_with_two_workers(real_store, tmp_path):
    vocabulary = tmp_path / "vocabulary.json"
    data = WindowDataModule(
        real_store, window_s=0.5, batch_size=16, num_workers=2, val_fraction=0.0, split_unit="recording",
        shuffle="uniform", persistent_workers=True, vocabulary=vocabulary,
    )
    assert data.sfreq == 160.0 and data.n_times == 80 and data.n_recordings == 3
    layouts = {layout.dataset: layout for layout in data.index.layouts}
    assert data.n_channels == max(layout.n_channels for layout in layouts.values())
    assert layouts["eegmmidb"].n_channels == 64
    erm_types = layouts["erm"].types
    assert (erm_types.count("mag"), erm_types.count("grad"), erm_types.count("eeg")) == (102, 204, 60)
    assert data.vocabulary_size == len(Vocabulary.load(vocabulary)) > 400
    data.setup("fit")
    loader = data.train_dataloader()
    pickle.loads(pickle.dumps(loader.dataset))  # what a spawned worker receives
    seen_types: set[int] = set()
    n_windows = 0
    for epoch in range(2):  # persistent workers serve a second epoch
        for batch in loader:
            assert isinstance(batch, Batch)
            assert batch.signal.shape[1:] == (batch.channel_mask.shape[1], 80)
            assert torch.isfinite(batch.signal).all()
            real = batch.sensor_type >= 0
            assert (batch.channel_mask <= real).all()  # padding is never unmasked
            assert (batch.signal[~batch.channel_mask] == 0).all()
            seen_types |= set(batch.sensor_type[real].unique().tolist())
            n_windows += len(batch) if epoch == 0 else 0
    assert n_windows == len(data.index)
    assert {SENSOR_TYPE_IDS[t] for t in ("eeg", "mag", "grad", "ecog", "seeg")} <= seen_types
    # MEG geometry: planar gradiometers carry their gradient direction, magnetometers their normal
    meg = layouts["erm"]
    planar = meg.sensor_type == SENSOR_TYPE_IDS["grad"]
    magnetometer = meg.sensor_type == SENSOR_TYPE_IDS["mag"]
    assert np.allclose(np.linalg.norm(meg.sensor_pos[planar | magnetometer, 3:], axis=1), 1.0, atol=1e-3)
    assert not np.allclose(meg.sensor_pos[planar, 3:][:2], meg.sensor_pos[magnetometer, 3:][:1])
    assert (meg.sensor_pos[meg.sensor_type == SENSOR_TYPE_IDS["eeg"], 3:] == 0).all()
    eeg = layouts["eegmmidb"]
    assert (eeg.sensor_pos[:, 3:] == 0).all() and data.index.channel_vocabulary.id("FC5") in eeg.channel_ids


@pytest.mark.slow
def test_bucketing_and_sensortype_on_real_data(real_store):
    data = WindowDataModule(real_store, window_s=0.5, batch_size=8, channel_batching="bucket",
                            normalization="sensortype", val_fraction=0.0, split_unit="recording")
    data.setup()
    for batch in data.train_dataloader():
        assert batch.channel_mask.all()  # one channel count per batch: no padding
        eeg = batch.sensor_type[0] == 0
        if eeg.all() and batch.channel_mask[0].all():
            assert torch.allclose(batch.signal[:, eeg].mean(dim=1), torch.zeros(1), atol=1e-4)


def test_state_dict_restores_the_vocabulary(make_recording, make_store):
    store = make_store([make_recording(names=["Cz", "Pz", "LA1", "LA2"], types=["eeg", "eeg", "seeg", "seeg"])])
    data = WindowDataModule(store, window_s=1.0, batch_size=4, val_fraction=0.0, split_unit="window")
    state = data.state_dict()
    assert state == {}  # nothing indexed yet
    _ = data.n_channels
    state = data.state_dict()
    other = WindowDataModule(store, window_s=1.0, batch_size=4, val_fraction=0.0, split_unit="window")
    other.load_state_dict(state)
    assert other.index.channel_vocabulary == data.index.channel_vocabulary
    assert other.n_subjects == 1 and other.n_classes == 0 and other.recording_names == ["syn_sub-01"]
