"""StoredRecording.to_raw gives back MNE's view of a real MEG recording: the same sensor
geometry in head coordinates, the same coil types, data and bad channels."""

from __future__ import annotations

import contextlib
from pathlib import Path

import mne
import numpy as np
import pytest

from brainfm.preprocessing.run import preprocess
from brainfm.store import open_store

PLAIN_RECIPE = """\
name: plain
description: EEG and MEG as read, nothing changed.
pick:
  types: [eeg, mag, grad]
steps: []
"""


def _geometry(info: mne.Info, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, coil normals and gradient directions of channels, with MEG coils moved to
    the head frame when the recording has a device-to-head transform."""
    trans = info["dev_head_t"]
    matrix = np.eye(4) if trans is None else trans["trans"]
    positions, normals, gradients = [], [], []
    for name in names:
        ch = info["chs"][info["ch_names"].index(name)]
        loc = ch["loc"]
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_MEG_CH:
            positions.append(matrix[:3, :3] @ loc[:3] + matrix[:3, 3])
            normals.append(matrix[:3, :3] @ loc[9:12])
            gradients.append(matrix[:3, :3] @ loc[3:6])
        else:
            positions.append(loc[:3])
            normals.append(np.zeros(3))
            gradients.append(np.zeros(3))
    return np.array(positions), np.array(normals), np.array(gradients)


@pytest.mark.parametrize(
    ("relpath", "reader", "dev_head"),
    [
        ("meg/fif/test_move_anon_erm_raw.fif", lambda p: mne.io.read_raw_fif(p, allow_maxshield=True), False),
        ("meg/ctf/testdata_ctf_short_discontinuous.ds", mne.io.read_raw_ctf, True),
    ],
)
def test_to_raw_keeps_meg_geometry_coil_types_and_data(shared_data: Path, tmp_path: Path, relpath, reader, dev_head):
    import shutil

    source = shared_data / relpath
    folder = tmp_path / "in"
    folder.mkdir()
    (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / source.name)
    (tmp_path / "plain.yaml").write_text(PLAIN_RECIPE)
    summary = preprocess(folder, tmp_path / "store", recipe=tmp_path / "plain.yaml", dataset="d")
    assert summary.failed == [] and len(summary.processed) == 1
    recording = open_store(tmp_path / "store")[summary.processed[0]]
    with pytest.warns(RuntimeWarning, match="Internal Active Shielding") if "erm" in relpath else contextlib.nullcontext():
        original = reader(source)
    raw = recording.to_raw()

    table = recording.channels
    assert raw.ch_names == table["name"].tolist()
    assert raw.get_channel_types() == table["type"].tolist()
    assert (raw.info["dev_head_t"] is not None) == dev_head
    orig_names = table["orig_name"].tolist()
    got = _geometry(raw.info, raw.ch_names)
    expected = _geometry(original.info, orig_names)
    meg = table["type"].isin(["mag", "grad"]).to_numpy()
    assert meg.sum() > 100
    np.testing.assert_allclose(got[0], expected[0], atol=1e-6)  # positions, metres, head frame when known
    np.testing.assert_allclose(got[1][meg], expected[1][meg], atol=2e-4)  # coil normals (rescaled to unit length)
    grad = (table["type"] == "grad").to_numpy()
    # gradient directions, made orthogonal to the normal (FIF stores both as float32: ~1e-4 apart)
    np.testing.assert_allclose(got[2][grad], expected[2][grad], atol=2e-4)
    coil = {ch["ch_name"]: ch["coil_type"] for ch in original.info["chs"]}
    assert [ch["coil_type"] for ch in raw.info["chs"]] == [coil[n] for n in orig_names]
    # An MEG function that reads the geometry works on the round-tripped info.
    assert len(mne.pick_types(raw.info, meg=True)) == meg.sum()
    data = original.get_data(picks=orig_names)
    np.testing.assert_allclose(raw.get_data(), data, rtol=1e-6, atol=1e-6 * np.abs(data).max())

