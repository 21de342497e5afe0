"""Batches: exact window values, normalisation, padding and bad-channel masks, geometry, vocabulary."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from brainfm.data import empty_channel_table
from brainfm.loading import (
    PAD_SENSOR_TYPE,
    Vocabulary,
    WindowDataset,
    build_window_index,
    channel_key,
    collate_batches,
    sensor_geometry,
    sensortype_normalize_,
)


def _expected(channel: np.ndarray, start: int, n_times: int) -> np.ndarray:
    return (channel[:, None] * 10000 + np.arange(start, start + n_times)[None, :]).astype(np.float32)


def test_windows_match_the_signal_across_chunk_boundaries(make_recording, make_store):
    # 4 channels, chunks of 256 samples; windows of 150 with stride 70 often straddle chunks
    store = make_store([make_recording(n_times=1300)])
    index = build_window_index(store, window_s=1.5, stride_s=0.7)
    assert index.layouts[0].chunk_times == 256
    dataset = WindowDataset(index, store, normalization="none")
    order = np.random.default_rng(0).permutation(len(index))
    batch = dataset.__getitems__(order.tolist())
    assert batch.signal.shape == (len(index), 4, 150) and batch.signal.dtype == torch.float32
    assert batch.start.tolist() == sorted(index.start.tolist())  # sorted by recording, then start
    for row, start in enumerate(batch.start.tolist()):
        np.testing.assert_array_equal(batch.signal[row].numpy(), _expected(np.arange(4), start, 150))
    assert dataset.reader.n_decoded == 5  # every chunk a window touches (1120 + 150 < 5 * 256), once
    single = dataset[3]
    assert len(single) == 1 and single.start.item() == index.start[3]


def test_zscore_and_robust_use_stored_statistics(make_recording, make_store):
    store = make_store([make_recording(n_times=1000)])
    index = build_window_index(store, window_s=1.0)
    stats = index.layouts[0].stats  # mean, std, median, iqr of c * 10000 + t, t < 1000
    np.testing.assert_allclose(stats[:, 0], np.arange(4) * 10000 + 499.5)
    np.testing.assert_allclose(stats[:, 1], np.arange(1000).std(), rtol=1e-6)
    np.testing.assert_allclose(stats[:, 3], 499.5)
    raw = WindowDataset(index, store, "none").__getitems__(list(range(len(index)))).signal
    for mode, center, spread in (("zscore", stats[:, 0], stats[:, 1]), ("robust", stats[:, 2], stats[:, 3])):
        batch = WindowDataset(index, store, mode).__getitems__(list(range(len(index))))
        expected = (raw - torch.tensor(center, dtype=torch.float32)[:, None]) / torch.tensor(spread, dtype=torch.float32)[:, None]
        torch.testing.assert_close(batch.signal, expected, rtol=1e-5, atol=1e-5)
    zscored = WindowDataset(index, store, "zscore").__getitems__(list(range(len(index)))).signal
    pooled = zscored.permute(1, 0, 2).reshape(4, -1)
    torch.testing.assert_close(pooled.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled.std(1, unbiased=False), torch.ones(4), atol=1e-5, rtol=0)


def test_sensortype_scaling_per_window_and_type():
    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(3, 6, 50, generator=generator) * torch.tensor([1e-5, 2e-5, 1e-5, 3e-12, 1e-12, 1e-11])[None, :, None]
    types = np.array([0, 0, 0, 1, 1, 2])
    good = np.array([True, True, False, True, True, True])
    signal[:, 2] = 0.0
    eps = {"eeg": 1e-12, "mag": 1e-20, "grad": 1e-20}
    out = sensortype_normalize_(signal.clone(), types, good, eps)
    for rows in ([0, 1], [3, 4], [5]):
        part = out[:, rows]
        torch.testing.assert_close(part.mean(dim=1), torch.zeros(3, 50), atol=1e-5, rtol=0)
        if len(rows) > 1:
            torch.testing.assert_close(part.std(dim=(1, 2), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    assert (out[:, 2] == 0).all()  # bad channel untouched (zero)


def test_padding_bad_channels_and_metadata(make_recording, make_store):
    recordings = [
        make_recording(subject="01", n_channels=3, names=["Fp1", "T3", "Cz"], bad=[1]),
        make_recording(subject="02", n_channels=5, types=["mag", "grad", "grad", "seeg", "ecog"],
                       names=["MEG0111", "MEG0112", "MEG0113", "LA1", "G1"]),
    ]
    store = make_store(recordings)
    index = build_window_index(store, window_s=1.0)
    dataset = WindowDataset(index, store, "zscore")
    first = int(np.flatnonzero(index.recording == 0)[0])
    second = int(np.flatnonzero(index.recording == 1)[0])
    batch = dataset.__getitems__([second, first])
    assert batch.signal.shape == (2, 5, 100)
    assert batch.recording_ids.tolist() == [0, 1] and batch.subject_ids.tolist() == [0, 1]
    assert batch.channel_mask.tolist() == [[True, False, True, False, False], [True] * 5]
    assert (batch.signal[0, 1] == 0).all() and (batch.signal[0, 3:] == 0).all()  # bad and padding zeroed
    assert batch.sensor_type.tolist() == [[0, 0, 0, PAD_SENSOR_TYPE, PAD_SENSOR_TYPE], [1, 2, 2, 3, 4]]
    vocab = index.channel_vocabulary
    assert batch.channel_ids[0, :3].tolist() == [vocab.id("Fp1"), vocab.id("T7"), vocab.id("Cz")]  # T3 -> T7
    assert batch.channel_ids[0, 3:].tolist() == [0, 0]
    assert batch.channel_ids[1].tolist() == [vocab.id(k) for k in ("mag:MEG0111", "grad:MEG0112", "grad:MEG0113", "seeg:LA1", "ecog:G1")]
    assert min(batch.channel_ids[1].tolist()) > 1 and batch.region_ids.eq(0).all()
    assert batch.labels is None
    # a plain DataLoader over single windows with the custom collate pads the same way
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_batches, sampler=[second, first])
    collated = next(iter(loader))
    assert collated.signal.shape == (2, 5, 100) and collated.channel_mask.tolist() == batch.channel_mask.tolist()
    pinned_or_same = collated.to("cpu")
    assert pinned_or_same.signal.shape == collated.signal.shape
    assert "Batch | 2 windows x 5 channels" in repr(collated)
    clone = pickle.loads(pickle.dumps(dataset))  # workers receive a pickled dataset
    assert clone._reader is None and torch.equal(clone.__getitems__([second]).signal, dataset[second].signal)


def test_sensor_geometry_orientation_convention():
    table = empty_channel_table(["E", "M", "P", "A", "S"], ["eeg", "mag", "grad", "grad", "seeg"])
    table[["x", "y", "z"]] = np.arange(15, dtype=float).reshape(5, 3)
    table[["ox", "oy", "oz"]] = [[0, 0, 1]] * 5
    table.loc[2, ["gx", "gy", "gz"]] = [1.0, 0.0, 0.0]
    table.loc[2, "coil_type"] = "FIFFV_COIL_VV_PLANAR_T1"
    table.loc[3, "coil_type"] = "FIFFV_COIL_CTF_GRAD"
    pos = sensor_geometry(table)
    assert pos.shape == (5, 6) and pos.dtype == np.float32
    assert pos[:, 3:].tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert pos[4, :3].tolist() == [12, 13, 14]


def test_vocabulary_is_deterministic_append_only_and_saved(tmp_path):
    base = Vocabulary.base_channels()
    assert base.tokens[:2] == ["<pad>", "<unk>"] and "Cz" in base and "T3" not in base
    assert channel_key("T3", "eeg") == "T7" and channel_key("Fc5.", "eeg") == "FC5"
    assert channel_key("MEG0111", "mag") == "mag:MEG0111"
    a = Vocabulary.base_channels().extend(["seeg:LA2", "seeg:LA1"])
    b = Vocabulary.base_channels().extend(["seeg:LA1", "seeg:LA2", "seeg:LA1"])
    assert a == b and a.tokens[-2:] == ["seeg:LA1", "seeg:LA2"]
    cz = a.id("Cz")
    a.extend(["mag:MEG0111"])
    assert a.id("Cz") == cz and a.id("mag:MEG0111") == len(a) - 1 and a.id("nope") == 1 and a.id(None) == 0
    path = a.save(tmp_path / "vocab.json")
    assert Vocabulary.load(path, kind="channel") == a
    with pytest.raises(ValueError, match="region"):
        Vocabulary.load(path, kind="region")


def _placed(recording, rows_frames):
    """Give rows of a synthetic recording a position (metres) in a frame."""
    for row, frame in rows_frames.items():
        recording.channels.loc[row, ["x", "y", "z"]] = [0.01 * (row + 1), 0.02, 0.03]
        recording.channels.loc[row, ["frame", "pos_source"]] = [frame, "measured"]
    return recording


def test_position_mask_and_frame_ids(make_recording, make_store):
    """Unknown positions, positions in unknown spaces and padding are masked, never (0, 0, 0)
    posing as a position; frames of different kinds are told apart (issue 6, item 9)."""
    from brainfm.data.channels import FRAME_IDS
    from brainfm.loading import PAD_FRAME_ID

    eeg = _placed(make_recording(subject="01", n_channels=3, names=["Fp1", "T3", "Cz"]), {0: "head", 2: "head"})
    mixed = _placed(
        make_recording(subject="02", n_channels=5, types=["mag", "seeg", "ecog", "seeg", "ecog"],
                       names=["MEG0111", "LA1", "G1", "LA2", "G2"]),
        {0: "device", 1: "fsaverage", 2: "MNI152NLin2009cAsym", 3: "Other"},  # G2: position, no frame
    )
    mixed.channels.loc[4, ["x", "y", "z"]] = [0.01, 0.01, 0.01]
    store = make_store([eeg, mixed])
    index = build_window_index(store, window_s=1.0)
    dataset = WindowDataset(index, store, "zscore")
    first = int(np.flatnonzero(index.recording == 0)[0])
    second = int(np.flatnonzero(index.recording == 1)[0])
    batch = dataset.__getitems__([first, second])
    assert batch.pos_mask.dtype == torch.bool and batch.frame_ids.dtype == torch.int64
    assert batch.pos_mask.tolist() == [[True, False, True, False, False], [True, True, True, False, False]]
    head, device, mni = FRAME_IDS["head"], FRAME_IDS["device"], FRAME_IDS["mni_tal"]
    assert batch.frame_ids.tolist() == [[head, -1, head, PAD_FRAME_ID, PAD_FRAME_ID], [device, mni, mni, -1, -1]]
    assert (batch.sensor_pos[~batch.pos_mask] == 0).all()  # masked: zeros, whatever the store holds
    assert batch.sensor_pos[1, 1, :3].tolist() == pytest.approx([0.02, 0.02, 0.03])
    # collate pads the two fields like the others
    collated = collate_batches([dataset.__getitems__([first]), dataset.__getitems__([second])])
    assert torch.equal(collated.pos_mask, batch.pos_mask) and torch.equal(collated.frame_ids, batch.frame_ids)


def test_real_store_frames_are_not_mixed(real_store):
    """EEG (template and file positions) and ECoG are in the head frame; the empty-room MEG
    recording has no device-to-head transform, so its sensors say so (device frame)."""
    from brainfm.data.channels import FRAME_IDS

    index = build_window_index(real_store, window_s=0.5)
    frames = {}
    for layout in index.layouts:
        assert layout.pos_mask.dtype == bool and layout.frame_ids.dtype == np.int64
        for kind, frame, known in zip(layout.types, layout.frame_ids.tolist(), layout.pos_mask.tolist(), strict=True):
            frames.setdefault(kind, set()).add(frame if known else None)
    assert frames["eeg"] == frames["ecog"] == frames["seeg"] == {FRAME_IDS["head"]}
    assert frames["mag"] == frames["grad"] == {FRAME_IDS["device"]}
    batch = WindowDataset(index, real_store, "zscore").__getitems__(list(range(0, len(index), max(1, len(index) // 8))))
    assert torch.equal(batch.frame_ids >= 0, batch.pos_mask)
