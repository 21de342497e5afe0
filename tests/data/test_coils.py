"""MEG coils: names without the compensation grade, sensor classes, BrainOmni sensor types."""

from __future__ import annotations

import numpy as np
import pytest
from mne.io.constants import FIFF

from brainfm.data.channels import SENSOR_TYPE_IDS
from brainfm.data.coils import (
    COIL_CLASSES,
    coil_class,
    coil_type_name,
    sensor_type_ids,
    split_coil_type,
)


def test_compensation_grade_is_split_off_the_coil_type():
    ctf_g3 = 3 << 16 | FIFF.FIFFV_COIL_CTF_GRAD  # 201609, as MNE sets it for a G3BR CTF file
    assert ctf_g3 == 201609
    assert split_coil_type(ctf_g3) == (5001, 3)
    assert split_coil_type(FIFF.FIFFV_COIL_VV_PLANAR_T1) == (3012, 0)
    assert coil_type_name(ctf_g3) == "FIFFV_COIL_CTF_GRAD"
    assert coil_class("201609") == coil_class("FIFFV_COIL_CTF_GRAD") == "axial_gradiometer"  # older stores


def test_coil_classes_agree_with_mne_coil_definitions():
    """Every coil MNE's coil_def.dat defines has the class MNE gives it (1 magnetometer,
    2 and 4 axial gradiometers, 3 planar gradiometer); reference coils are named REF."""
    from mne.forward._make_forward import _read_coil_defs  # private, but the source of truth

    expected = {1: ("magnetometer", "reference_magnetometer"), 2: ("axial_gradiometer", "reference_gradiometer"),
                3: ("planar_gradiometer",), 4: ("axial_gradiometer", "reference_gradiometer")}
    defined = {int(c["coil_type"]): int(c["coil_class"]) for c in _read_coil_defs(verbose=False)}
    for number, mne_class in defined.items():
        name = coil_type_name(number)
        assert COIL_CLASSES.get(name) in expected[mne_class], name
        assert COIL_CLASSES[name].startswith("reference") == ("_REF" in name or "_R_" in name), name
    for name in COIL_CLASSES:
        assert hasattr(FIFF, name), name  # a real FIFF constant


def test_sensor_types_follow_the_coil_not_the_channel_kind():
    types = ["eeg", "mag", "grad", "mag", "mag", "mag", "grad", "mag", "seeg", "misc"]
    coils = ["", "FIFFV_COIL_VV_MAG_T3", "FIFFV_COIL_VV_PLANAR_T1", "FIFFV_COIL_CTF_GRAD", "FIFFV_COIL_KIT_GRAD",
             "201609", "", "FIFFV_COIL_MAGNES_GRAD", "", ""]
    ids = sensor_type_ids(types, coils)
    assert ids.dtype == np.int64
    # EEG 0, MAG 1, planar GRAD 2, CTF/KIT/4D axial GRAD 2 although MNE calls them "mag";
    # an unknown coil keeps its channel type
    assert ids.tolist() == [0, 1, 2, 2, 2, 2, 2, 2, SENSOR_TYPE_IDS["seeg"], SENSOR_TYPE_IDS["misc"]]
    with pytest.raises(ValueError, match="coil types"):
        sensor_type_ids(["mag"], [])


def test_coils_unknown_to_the_table_follow_the_reference_name_rule():
    """Spec §3.2 item 4: only coils whose name contains MAG are 1 (MAG), any other MEG coil 2 (GRAD)."""
    types = ["mag", "mag", "grad", "mag", "grad"]
    coils = ["FIFFV_COIL_FUTURE_OPM_MAG", "FIFFV_COIL_FUTURE_AXIAL_GRAD", "FIFFV_COIL_FUTURE_MAG_T9", "65000", ""]
    assert coil_class(coils[0]) is None and coil_class("65000") is None  # not in the table
    # an unknown number (an older store) has no name with MAG: GRAD; no coil at all: the channel kind
    assert sensor_type_ids(types, coils).tolist() == [1, 2, 1, 2, 2]
    assert sensor_type_ids(["mag"], [""]).tolist() == [1]
