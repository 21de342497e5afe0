"""The regions step: atlas labels kept, shaft-and-coordinate regions for the others."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from brainfm import open_store
from brainfm.data.channels import empty_channel_table
from brainfm.errors import ConfigError
from brainfm.preprocessing.run import preprocess
from brainfm.preprocessing.steps import SignalState, build_step


def _state(names, types, xyz=None, regions=None):
    channels = empty_channel_table(names, types)
    if xyz is not None:
        channels[["x", "y", "z"]] = np.asarray(xyz, dtype=float) / 1000.0
    if regions is not None:
        channels["region"] = regions
    data = np.zeros((len(names), 10), dtype=np.float32)
    return SignalState(data=data, sfreq=100.0, channels=channels, events=pd.DataFrame(
        {"onset_s": [], "duration_s": [], "description": []}))


def test_atlas_labels_are_kept_and_shafts_are_cut_by_distance():
    names = ["LA1", "LA2", "LA3", "LA4", "LA5", "RH1", "RH2", "Fz"]
    xyz = [[0, 0, 0], [0, 0, 5], [0, 0, 10], [0, 0, 16], [0, 0, 20], [40, 0, 0], [40, 0, 5], [0, 50, 50]]
    regions = ["", "", "", "", "", "Right-Hippocampus", "", ""]
    state = _state(names, ["seeg"] * 7 + ["eeg"], xyz, regions)
    effect = build_step("regions", {"segment_mm": 15.0}).apply(state)
    got = dict(zip(state.channels["name"], state.channels["region"], strict=True))
    assert [got[f"LA{i}"] for i in range(1, 6)] == ["shaft:LA/0"] * 3 + ["shaft:LA/1"] * 2
    assert got["RH1"] == "Right-Hippocampus" and got["RH2"] == "shaft:RH/0"
    assert got["Fz"] == ""  # EEG is not iEEG
    assert effect == {"atlas": 1, "derived": 6, "shafts": 2}


def test_without_positions_whole_shafts_and_none_leaves_them_empty():
    state = _state(["LA1", "LA2", "B'1"], ["seeg"] * 3)
    build_step("regions", {}).apply(state)
    assert state.channels["region"].tolist() == ["shaft:LA", "shaft:LA", "shaft:B"]
    state = _state(["LA1", "LA2"], ["seeg"] * 2)
    build_step("regions", {"fallback": "none"}).apply(state)
    assert state.channels["region"].tolist() == ["", ""]
    with pytest.raises(ConfigError, match="'fallback'"):
        build_step("regions", {"fallback": "lobes"})


def test_barista_recipe_groups_the_bids_ecog_grid(shared_data, tmp_path):
    """Real BIDS iEEG without atlas labels: every contact gets a region of nearby contacts."""
    folder = tmp_path / "ieeg"
    shutil.copytree(shared_data / "bids" / "ieeg-ecog", folder)
    summary = preprocess(folder, tmp_path / "s.zarr", recipe="barista")
    assert summary.failed == [], summary.failed
    rec = open_store(tmp_path / "s.zarr")[summary.processed[0]]
    channels = rec.channels
    assert (channels["type"] == "ecog").all() and len(channels) == 78
    assert channels["region"].str.startswith("shaft:").all()
    regions = channels.groupby("region")
    assert 2 <= regions.ngroups < len(channels)
    for name, members in regions:
        xyz = members[["x", "y", "z"]].to_numpy(float) * 1000.0
        if not np.isfinite(xyz).all():  # strips without positions (BTM, BTP) stay whole
            assert "/" not in name and np.isnan(xyz).all()
            continue
        spread = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1).max()
        assert spread <= 30.0 + 1e-6  # within 15 mm of the segment's first contact
