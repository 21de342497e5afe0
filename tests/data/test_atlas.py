"""Atlas labels -> lobes: the shipped table covers FreeSurfer's Destrieux and Desikan-Killiany parcels."""

from __future__ import annotations

import re
from pathlib import Path

import mne
import pytest

from brainfm.data.atlas import (
    LOBES,
    N_LOBE_IDS,
    is_atlas_region,
    lobe_id,
    lobe_ids,
    lobe_name,
    lobe_table,
    parse_label,
)


def _lut_parcels(prefix: str) -> set[str]:
    """Hemisphere-free cortical parcel names of FreeSurfer's colour table (shipped with MNE)."""
    text = (Path(mne.__file__).parent / "data" / "FreeSurferColorLUT.txt").read_text()
    names = re.findall(rf"^\s*\d+\s+{re.escape(prefix)}(\S+)", text, flags=re.MULTILINE)
    return {n for n in names if n not in ("unknown", "Unknown", "Medial_wall", "corpuscallosum")}


@pytest.mark.parametrize(("prefix", "count"), [("ctx_lh_", 74), ("ctx-lh-", 34)])
def test_table_covers_every_freesurfer_parcel(prefix, count):
    parcels = _lut_parcels(prefix)
    assert len(parcels) >= count
    table = lobe_table()
    missing = [p for p in parcels if p.upper().replace("-", "_") not in table]
    # the DK colour table also lists a few parcels absent from the aparc atlas itself
    assert len(missing) <= len(parcels) - count, missing
    assert set(table.values()) <= set(LOBES)


def test_lobe_ids_follow_the_spec_order():
    assert N_LOBE_IDS == 21
    assert lobe_id("Left-Amygdala") == 1 and lobe_id("Right-Amygdala") == 2
    assert lobe_id("Left-Hippocampus") == 3 and lobe_id("Right-Hippocampus") == 4
    assert lobe_id("ctx_lh_G_front_middle") == 5 and lobe_id("ctx_rh_G_front_middle") == 6
    assert lobe_id("ctx-lh-superiorparietal") == 7
    assert lobe_id("ctx_rh_G_temporal_middle") == 10
    assert lobe_id("ctx_lh_Pole_occipital") == 11
    assert lobe_id("ctx-rh-posteriorcingulate") == 14
    assert lobe_id("ctx_lh_S_circular_insula_sup") == 15
    assert lobe_id("Right-Putamen") == 18 and lobe_id("Left-Inf-Lat-Vent") == 19
    # BaRISTA's enum spelling (upper case, '_' for '-') and white-matter labels map the same way
    assert lobe_id("CTX_LH_G_OC_TEMP_MED_PARAHIP") == lobe_id("ctx_lh_G_oc-temp_med-Parahip") == 9
    assert lobe_id("wm_rh_G_precentral") == 6
    assert lobe_name("ctx_rh_G_temporal_middle") == "right temporal"


@pytest.mark.parametrize("label", ["", "<pad>", "Unknown", "ctx_lh_Medial_wall", "Left-Cerebral-White-Matter",
                                   "shaft:LA/0", "ctx_xx_G_front_middle"])
def test_unknown_labels_get_lobe_zero(label):
    assert lobe_id(label) == 0


def test_parse_and_atlas_regions():
    assert parse_label("ctx-rh-insula") == ("right", "insula")
    assert parse_label("Left-Inf-Lat-Vent") == ("left", "Inf-Lat-Vent")
    assert parse_label("LA3") is None
    assert lobe_ids(["<pad>", "<unk>", "Right-Amygdala"]) == [0, 0, 2]
    assert is_atlas_region("Left-Hippocampus") and not is_atlas_region("shaft:LA") and not is_atlas_region(" ")
