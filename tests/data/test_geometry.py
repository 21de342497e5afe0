"""Sensor geometry from an mne.Info: MEG frames and orientations, EEG measured and template positions."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from mne.io.constants import FIFF
from mne.transforms import Transform

from brainfm.data.channels import empty_channel_table
from brainfm.data.geometry import (
    MAX_RADIUS_M,
    best_template_montage,
    coil_type_name,
    fill_geometry,
    frame_name,
    montage_positions,
    template_positions,
    valid_position,
)

# A rotation of 90 degrees about z and a 4 cm shift up.
ROT_Z = np.array([[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.04], [0.0, 0.0, 0.0, 1.0]])


def _table(info):
    table = empty_channel_table(info["ch_names"], info.get_channel_types())
    return table


def _meg_info(dev_head_t):
    info = mne.create_info(["MEG0111", "MEG0112"], 1000.0, ["mag", "grad"])
    loc_mag = np.r_[0.01, 0.02, 0.10, 1, 0, 0, 0, 1, 0, 0, 0, 1.0]
    loc_grad = np.r_[0.03, 0.00, 0.09, 1, 0, 0, 0, 1, 0, 0, 0, 1.0]
    with info._unlock():  # test set-up only: give the synthetic channels device-frame locations
        info["chs"][0]["loc"][:] = loc_mag
        info["chs"][0]["coil_type"] = FIFF.FIFFV_COIL_VV_MAG_T3
        info["chs"][1]["loc"][:] = loc_grad
        info["chs"][1]["coil_type"] = FIFF.FIFFV_COIL_VV_PLANAR_T1
        for ch in info["chs"]:
            ch["coord_frame"] = FIFF.FIFFV_COORD_DEVICE
        info["dev_head_t"] = dev_head_t
    return info


def test_coil_type_name():
    assert coil_type_name(FIFF.FIFFV_COIL_VV_PLANAR_T1) == "FIFFV_COIL_VV_PLANAR_T1"
    assert coil_type_name(5001) == "FIFFV_COIL_CTF_GRAD"  # plain int, as CTF files give
    assert coil_type_name(6001) == "FIFFV_COIL_KIT_GRAD"
    assert coil_type_name(4614) == "4614"  # unknown to MNE: the number
    # CTF files at compensation grade 3: MNE puts the grade in the upper 16 bits
    assert coil_type_name(3 << 16 | 5001) == "FIFFV_COIL_CTF_GRAD"


def test_frame_name():
    assert frame_name(FIFF.FIFFV_COORD_HEAD) == "head"
    assert frame_name(FIFF.FIFFV_COORD_DEVICE) == "device"
    assert frame_name(FIFF.FIFFV_COORD_MRI) == "mri"
    assert frame_name(FIFF.FIFFV_COORD_UNKNOWN) == ""


@pytest.mark.parametrize(
    ("xyz", "valid"),
    [
        ([0.01, 0.02, 0.09], True),
        ([0.0, 0.0, 0.0], False),
        ([np.nan, 0.0, 0.1], False),
        ([np.inf, 0.0, 0.1], False),
        ([0.0, -114.9, 14.6], False),  # millimetres (the ssvep FIF files)
        ([0.3966, 0.0577, 0.9162], False),  # a unit sphere (the Neuroscan CNT file)
        ([0.0, 0.0, MAX_RADIUS_M], True),
    ],
)
def test_valid_position(xyz, valid):
    assert valid_position(xyz) is valid


def test_meg_head_frame_rotates_positions_and_orientations():
    info = _meg_info(Transform("meg", "head", ROT_Z))
    table = _table(info)
    report = fill_geometry(table, info)
    assert report.meg_frame == "head"
    mag, grad = table.iloc[0], table.iloc[1]
    # (x, y, z) -> (-y, x, z + 0.04)
    assert [mag.x, mag.y, mag.z] == pytest.approx([-0.02, 0.01, 0.14])
    assert [grad.x, grad.y, grad.z] == pytest.approx([0.0, 0.03, 0.13])
    assert [mag.ox, mag.oy, mag.oz] == pytest.approx([0, 0, 1])  # ez about z: unchanged
    assert [grad.gx, grad.gy, grad.gz] == pytest.approx([0, 1, 0])  # ex rotated, not shifted
    assert [mag.gx, mag.gy, mag.gz] == [0, 0, 0]  # magnetometers have no gradient direction
    assert list(table.frame) == ["head", "head"]
    assert list(table.pos_source) == ["measured", "measured"]
    assert list(table.coil_type) == ["FIFFV_COIL_VV_MAG_T3", "FIFFV_COIL_VV_PLANAR_T1"]


@pytest.mark.parametrize("trans", [None, Transform("meg", "head", np.eye(4))])
def test_meg_without_real_transform_stays_in_device_frame(trans):
    info = _meg_info(trans)
    table = _table(info)
    assert fill_geometry(table, info).meg_frame == "device"
    assert [table.x[1], table.y[1], table.z[1]] == pytest.approx([0.03, 0.0, 0.09])
    assert [table.gx[1], table.gy[1], table.gz[1]] == pytest.approx([1, 0, 0])
    assert list(table.frame) == ["device", "device"]


def test_meg_channel_without_location_has_no_position():
    info = _meg_info(None)
    with info._unlock():
        info["chs"][0]["loc"][:] = 0.0
    table = _table(info)
    fill_geometry(table, info)
    assert np.isnan(table.x[0]) and table.pos_source[0] == "none" and table.frame[0] == ""
    assert table.coil_type[0] == "FIFFV_COIL_VV_MAG_T3"


def _standard_head_positions(kind, names):
    info = mne.create_info(names, 100.0, "eeg")
    info.set_montage(mne.channels.make_standard_montage(kind))
    return {ch["ch_name"]: ch["loc"][:3] for ch in info["chs"]}


def test_eeg_template_positions_after_name_normalisation():
    info = mne.create_info(["Fc5.", "Cz..", "Oz..", "Status", "A2-A1"], 160.0, "eeg")
    table = _table(info)
    table["name"] = ["FC5", "Cz", "Oz", "Status", "A2-A1"]
    report = fill_geometry(table, info)
    assert report.template_montage == "colin27_1005"
    expected = _standard_head_positions("colin27_1005", ["FC5", "Cz", "Oz"])
    for row, name in enumerate(["FC5", "Cz", "Oz"]):
        assert [table.x[row], table.y[row], table.z[row]] == pytest.approx(expected[name])
        assert 0.05 < np.linalg.norm(expected[name]) < 0.15  # metres, on a head
    assert list(table.pos_source) == ["template"] * 3 + ["none"] * 2
    assert list(table.frame) == ["head"] * 3 + [""] * 2
    assert any("colin27_1005" in w for w in report.warnings)
    assert any("['Status', 'A2-A1']" in w for w in report.warnings)


def test_eeg_measured_positions_win_over_file_and_template():
    info = mne.create_info(["Fp1", "Fp2", "Cz"], 100.0, "eeg")
    info.set_montage(mne.channels.make_dig_montage(
        ch_pos={"Fp1": [-0.03, 0.1, 0.05], "Fp2": [0.03, 0.1, 0.05]}, coord_frame="head"), on_missing="ignore")
    table = _table(info)
    fill_geometry(table, info, measured={"Fp1": np.array([-0.04, 0.09, 0.06])})
    assert [table.x[0], table.y[0], table.z[0]] == pytest.approx([-0.04, 0.09, 0.06])  # given
    assert [table.x[1], table.y[1], table.z[1]] == pytest.approx([0.03, 0.1, 0.05])  # file
    assert list(table.pos_source) == ["measured", "measured", "template"]  # Cz: template


def test_eeg_positions_in_millimetres_are_not_used():
    info = mne.create_info(["O1", "O2"], 100.0, "eeg")
    with info._unlock():
        info["chs"][0]["loc"][:3] = [-29.4, -112.4, 8.8]
        info["chs"][1]["loc"][:3] = [29.8, -112.2, 8.8]
    table = _table(info)
    report = fill_geometry(table, info)
    assert list(table.pos_source) == ["template", "template"]
    assert np.all(np.abs(table[["x", "y", "z"]].to_numpy()) < 0.2)
    assert any("not plausible" in w and "'O1'" in w for w in report.warnings)


def test_ieeg_positions_keep_their_frame():
    info = mne.create_info(["LA1", "LA2", "G1"], 1000.0, ["seeg", "seeg", "ecog"])
    with info._unlock():
        for ch, xyz in zip(info["chs"], ([0.01, 0.02, 0.03], [0.012, 0.02, 0.03], [0.0, 0.0, 0.0]), strict=True):
            ch["loc"][:3] = xyz
            ch["coord_frame"] = FIFF.FIFFV_COORD_MRI
    table = _table(info)
    fill_geometry(table, info)
    assert list(table.frame) == ["mri", "mri", ""]
    assert list(table.pos_source) == ["measured", "measured", "none"]
    table = _table(info)
    fill_geometry(table, info, measured={"G1": [0.05, 0.0, 0.02]}, measured_frame="fsaverage")
    assert list(table.frame) == ["mri", "mri", "fsaverage"]


def test_eeg_positions_outside_the_head_frame_are_not_used():
    """EEG is stored in the head frame only: measured or file positions in another frame fall back."""
    info = mne.create_info(["Fp1", "Fp2", "Cz", "SEEG1"], 100.0, ["eeg", "eeg", "eeg", "seeg"])
    with info._unlock():
        for ch, xyz in zip(info["chs"], ([-0.03, 0.1, 0.05], [0.03, 0.1, 0.05], [0.0, 0.0, 0.0], [0.01, 0.0, 0.0]),
                           strict=True):
            ch["loc"][:3] = xyz
        info["chs"][1]["coord_frame"] = FIFF.FIFFV_COORD_UNKNOWN
        info["chs"][3]["coord_frame"] = FIFF.FIFFV_COORD_UNKNOWN
    table = _table(info)
    measured = {"Fp1": [0.1, -0.03, 0.05], "Cz": [0.0, 0.0, 0.1], "SEEG1": [0.02, 0.0, 0.0]}
    report = fill_geometry(table, info, measured=measured, measured_frame="EEGLAB")
    # Fp1: the file's head-frame position; Fp2: file in the unknown frame, so a template; Cz: template
    assert list(table.pos_source) == ["measured", "template", "template", "measured"]
    assert list(table.frame) == ["head", "head", "head", "EEGLAB"]  # iEEG keeps its declared space
    assert [table.x[0], table.y[0], table.z[0]] == pytest.approx([-0.03, 0.1, 0.05])
    assert any("2 EEG channels are in the 'EEGLAB' space, not the head frame" in w for w in report.warnings)
    assert any("1 EEG channels in the file are in the 'unknown' frame" in w and "'Fp2'" in w
               for w in report.warnings)


def test_best_template_montage():
    assert best_template_montage(["Fp1", "Fp2", "Cz"]) == ("colin27_1005", 3)
    assert best_template_montage([f"E{i}" for i in range(1, 129)]) == ("GSN-HydroCel-128", 128)
    assert best_template_montage([f"E{i}" for i in range(1, 129)] + ["Cz"]) == ("GSN-HydroCel-129", 129)
    assert best_template_montage([f"{c}{i}" for c in "ABCD" for i in range(1, 33)]) == ("biosemi128", 128)
    assert best_template_montage(["1", "2", "3"]) == (None, 0)  # numbered caps are never guessed
    kind, positions = template_positions(["fc5", "xx"])
    assert kind == "colin27_1005" and list(positions) == ["fc5"]


def test_montage_positions_moves_digitisation_to_head_frame():
    nas, lpa, rpa = [0.0, 0.1, 0.0], [-0.08, 0.0, 0.0], [0.08, 0.0, 0.0]
    shift = np.array([0.0, 0.0, 0.02])  # the digitiser's origin sits 2 cm below the head frame's
    montage = mne.channels.make_dig_montage(
        ch_pos={"Fp1": np.array([-0.03, 0.1, 0.05]) - shift, "CZ": np.array([0.0, 0.0, 0.1]) - shift},
        nasion=np.array(nas) - shift, lpa=np.array(lpa) - shift, rpa=np.array(rpa) - shift,
        coord_frame="unknown",
    )
    positions, _ = montage_positions(montage, ["Fp1", "Cz", "Oz"])
    assert set(positions) == {"Fp1", "Cz"}  # "Cz" found case-insensitively
    assert positions["Cz"] == pytest.approx([0.0, 0.0, 0.1])
    assert positions["Fp1"] == pytest.approx([-0.03, 0.1, 0.05])


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("head", "head"), ("CapTrak", "head"), ("ElektaNeuromag", "head"), ("device", "device"), ("mri", "mri"),
        ("mni_tal", "mni_tal"), ("fsaverage", "mni_tal"), ("MNI305", "mni_tal"), ("MNI152NLin2009cAsym", "mni_tal"),
        ("mni152lin", "mni_tal"), ("Talairach", "mni_tal"), ("fs_tal", "fs_tal"), ("ACPC", "ras"), ("ScanRAS", "ras"),
        ("ras", "ras"), ("Other", None), ("Pixels", None), ("", None), ("mri_voxel", None), ("isotrak", None),
    ],
)
def test_frame_ids_of_declared_spaces(frame, expected):
    """BIDS spaces map onto MNE frames as mne-bids maps them; unknown spaces have no id."""
    from mne_bids.config import BIDS_TO_MNE_FRAMES

    from brainfm.data.channels import FRAME_IDS, frame_id

    assert frame_id(frame) == (-1 if expected is None else FRAME_IDS[expected])
    if frame in BIDS_TO_MNE_FRAMES and expected is not None:
        assert expected == BIDS_TO_MNE_FRAMES[frame]


def test_every_bids_space_mne_bids_knows_has_its_frame_id():
    from mne_bids.config import BIDS_TO_MNE_FRAMES

    from brainfm.data.channels import FRAME_IDS, frame_id

    for space, mne_frame in BIDS_TO_MNE_FRAMES.items():
        assert frame_id(space) == FRAME_IDS.get(mne_frame, -1), space  # ctf_head: EEG not stored so, -1


def test_positions_in_an_unknown_space_are_kept_with_a_warning():
    info = mne.create_info(["LA1", "LA2"], 1000.0, "seeg")
    table = empty_channel_table(["LA1", "LA2"], ["seeg", "seeg"])
    report = fill_geometry(table, info, measured={"LA1": [0.01, 0.02, 0.03]}, measured_frame="Other")
    assert table["frame"].tolist() == ["Other", ""] and np.isfinite(table.loc[0, ["x", "y", "z"]].to_numpy(float)).all()
    assert any("'Other' frame" in w and "pos_mask False" in w and "LA1" in w for w in report.warnings)
