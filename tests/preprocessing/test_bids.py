"""BIDS: discovery, sidecars (channels, electrodes + coordsystem, events), broken sidecars."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainfm.errors import DuplicateRecordingError, SidecarError
from brainfm.preprocessing.bids import (
    check_sidecars,
    electrode_positions,
    parse_bids_name,
    read_json_sidecar,
    read_tsv_sidecar,
    recording_sidecars,
)
from brainfm.preprocessing.discover import discover
from brainfm.preprocessing.readers import read_source

TINY = "sub-01/ses-eeg/eeg/sub-01_ses-eeg_task-rest"
ECOG = "sub-ecog01/ses-postimp/ieeg/sub-ecog01_ses-postimp"


def _copy(src: Path, dst: Path) -> Path:
    """Copy a read-only BIDS folder into a writable one."""
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(dst):
        os.chmod(folder, 0o755)
    return dst


@pytest.fixture(scope="module")
def tiny(shared_data):
    found = discover(shared_data / "bids" / "tiny-eeg")
    return found, read_source(found.sources[0])


@pytest.fixture(scope="module")
def ecog(shared_data):
    found = discover(shared_data / "bids" / "ieeg-ecog")
    return found, read_source(found.sources[0])


def test_tiny_eeg_discovery(tiny, shared_data):
    found, _ = tiny
    root = shared_data / "bids" / "tiny-eeg"
    assert len(found.sources) == 1 and found.ignored == {} and found.problems == []
    source = found.sources[0]
    assert source.relpath == f"{TINY}_eeg.vhdr" and source.format == "brainvision" and source.bids_root == root
    assert source.recording_id == "tiny-eeg_sub-01_ses-eeg_task-rest"
    names = sorted(p.name for p in source.files)
    assert names == sorted([
        "sub-01_ses-eeg_task-rest_eeg.vhdr", "sub-01_ses-eeg_task-rest_eeg.eeg", "sub-01_ses-eeg_task-rest_eeg.vmrk",
        "sub-01_ses-eeg_task-rest_eeg.json", "sub-01_ses-eeg_task-rest_channels.tsv",
        "sub-01_ses-eeg_task-rest_events.tsv", "sub-01_ses-eeg_task-rest_events.json",
        "sub-01_ses-eeg_electrodes.tsv", "sub-01_ses-eeg_space-CapTrak_electrodes.tsv",
        "sub-01_ses-eeg_coordsystem.json", "sub-01_ses-eeg_space-CapTrak_coordsystem.json",
    ])  # not the session's scans.tsv: it is shared by every run of the session
    assert source.companions["channels"].name == "sub-01_ses-eeg_task-rest_channels.tsv"
    assert source.companions["sidecar"].name == "sub-01_ses-eeg_task-rest_eeg.json"
    assert source.companions["scans"].name == "sub-01_ses-eeg_scans.tsv"
    assert discover(root, dataset="tiny").sources[0].recording_id == "tiny_sub-01_ses-eeg_task-rest"


def test_tiny_eeg_reading(tiny, shared_data):
    _, result = tiny
    ch = result.channels
    assert dict(Counter(ch["type"])) == {"eeg": 64, "ecg": 1, "eog": 2}  # GSR and TEMP are not stored
    assert "GSR" not in ch["orig_name"].tolist() and "Temperature" not in ch["orig_name"].tolist()
    eeg = ch[ch["type"] == "eeg"]
    assert set(eeg["pos_source"]) == {"measured"} and set(eeg["frame"]) == {"head"}  # CapTrak = head
    electrodes = pd.read_csv(shared_data / "bids" / "tiny-eeg" / "sub-01/ses-eeg/eeg/sub-01_ses-eeg_space-CapTrak_electrodes.tsv",
                             sep="\t", encoding="utf-8-sig").set_index("name")
    expected = electrodes.loc[eeg["orig_name"], ["x", "y", "z"]].to_numpy(float)
    assert np.allclose(eeg[["x", "y", "z"]].to_numpy(float), expected)
    assert set(ch.loc[ch["type"] != "eeg", "pos_source"]) == {"none"}  # n/a rows
    assert result.info["electrodes"] == "sub-01_ses-eeg_space-CapTrak_electrodes.tsv"
    assert result.info["space"] == "CapTrak"
    bad = ch[ch["status"] == "bad"]
    assert bad["name"].tolist() == ["PO10"] and bad["status_reason"].tolist() == ["metadata: continuously flat"]
    assert result.events["description"].tolist() == ["start_experiment", "show_stimulus"]
    assert result.events["onset_s"].tolist() == pytest.approx([0.0, 0.2])
    assert result.line_freq == 60.0
    assert result.meas_date == "2000-01-01T12:00:00+00:00"
    assert any("HED annotations" in w for w in result.warnings)  # captured, not raised


def test_ieeg_ecog(ecog):
    found, result = ecog
    source = found.sources[0]
    assert source.identity.to_dict() == {"dataset": "ieeg-ecog", "subject": "ecog01", "session": "postimp",
                                         "task": "seizure", "acquisition": None, "run": "1"}
    ch = result.channels
    assert dict(Counter(ch["type"])) == {"ecog": 78}
    assert result.raw.info["sfreq"] == pytest.approx(999.4121105232217)
    placed = ch[ch["pos_source"] == "measured"]
    assert len(placed) == 64 and set(placed["frame"]) == {"fsaverage"}
    assert placed.iloc[0][["name", "x", "y", "z"]].tolist() == ["C1", -0.0132, -0.0654, 0.0702]
    assert np.all(np.abs(placed[["x", "y", "z"]].to_numpy(float)) < 0.15)  # metres
    assert ch.loc[ch["pos_source"] == "none", "name"].tolist() == [
        *(f"BTM{i}" for i in range(1, 7)), *(f"BTP{i}" for i in range(1, 7)), "EKGL", "EKGR"]
    assert dict(Counter(ch["group"])) == {"C": 64, "BTM": 6, "BTP": 6, "EKGL": 1, "EKGR": 1}
    assert result.info["space"] == "fsaverage" and result.info["electrodes_unit"] == "m"
    assert result.events["description"].tolist() == ["eeg sz start"]
    assert result.events["onset_s"].tolist() == pytest.approx([10.229013529411764])
    assert result.line_freq == 60.0
    assert any("without locations (n/a)" in w for w in result.warnings)


def test_parse_bids_name():
    assert parse_bids_name("sub-01_ses-eeg_space-CapTrak_electrodes.tsv") == (
        {"sub": "01", "ses": "eeg", "space": "CapTrak"}, "electrodes", ".tsv")
    assert parse_bids_name("sub-01_task-a_split-02_meg.fif") == ({"sub": "01", "task": "a", "split": "02"}, "meg", ".fif")
    assert parse_bids_name("dataset_description.json")[1] == "description"
    # entities mne-bids does not know are kept; the order in the name does not matter
    assert parse_bids_name("sub-01_hemi-L_space-fsaverage_electrodes.tsv")[0] == {
        "sub": "01", "hemi": "L", "space": "fsaverage"}
    assert parse_bids_name("sub-01_run-1_task-a_eeg.vhdr")[0] == {"sub": "01", "task": "a", "run": "1"}


def test_recording_sidecars(shared_data):
    root = shared_data / "bids" / "ieeg-ecog"
    sidecars = recording_sidecars(root, root / f"{ECOG}_task-seizure_run-1_ieeg.vhdr")
    assert {k: [p.name for p in v] for k, v in sidecars.items()} == {
        "coordsystem": ["sub-ecog01_ses-postimp_space-fsaverage_coordsystem.json"],
        "electrodes_json": ["sub-ecog01_ses-postimp_space-fsaverage_electrodes.json"],
        "electrodes": ["sub-ecog01_ses-postimp_space-fsaverage_electrodes.tsv"],
        "channels": ["sub-ecog01_ses-postimp_task-seizure_run-1_channels.tsv"],
        "events_json": ["sub-ecog01_ses-postimp_task-seizure_run-1_events.json"],
        "events_tsv": ["sub-ecog01_ses-postimp_task-seizure_run-1_events.tsv"],
        "sidecar": ["sub-ecog01_ses-postimp_task-seizure_run-1_ieeg.json"],
        "scans": ["sub-ecog01_ses-postimp_scans.tsv"],
    }


@pytest.mark.parametrize(("unit", "scale"), [("mm", 1000.0), ("cm", 100.0), ("m", 1.0)])
def test_electrode_units_converted_to_metres(tmp_path, shared_data, unit, scale):
    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    eeg_dir = root / "sub-01" / "ses-eeg" / "eeg"
    for stem in ("sub-01_ses-eeg", "sub-01_ses-eeg_space-CapTrak"):
        tsv = eeg_dir / f"{stem}_electrodes.tsv"
        table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        for col in "xyz":
            table[col] = [v if v == "n/a" else repr(float(v) * scale) for v in table[col]]
        table.to_csv(tsv, sep="\t", index=False)
        coords = eeg_dir / f"{stem}_coordsystem.json"
        content = json.loads(coords.read_text(encoding="utf-8-sig"))
        content["EEGCoordinateUnits"] = unit
        coords.write_text(json.dumps(content))
    source = discover(root).sources[0]
    found, notes = electrode_positions(source)
    assert notes == [] and found.unit == unit and found.frame == "head"
    assert len(found.positions) == 64
    assert found.positions["Fp1"] == pytest.approx([-0.03741270038437644, 0.11102138145885607, 0.04987088609474466])


def test_electrodes_with_unknown_unit_or_no_coordsystem(tmp_path, shared_data):
    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    eeg_dir = root / "sub-01" / "ses-eeg" / "eeg"
    (eeg_dir / "sub-01_ses-eeg_coordsystem.json").unlink()
    coords = eeg_dir / "sub-01_ses-eeg_space-CapTrak_coordsystem.json"
    coords.write_text(json.dumps({"EEGCoordinateSystem": "CapTrak", "EEGCoordinateUnits": "pixels"}))
    found, notes = electrode_positions(discover(root).sources[0])
    assert found is None
    assert notes == [
        "sub-01_ses-eeg_electrodes.tsv has no matching coordsystem.json; its positions are not used.",
        "sub-01_ses-eeg_space-CapTrak_coordsystem.json declares the unit 'pixels', not m, cm or mm; the "
        "positions of sub-01_ses-eeg_space-CapTrak_electrodes.tsv are not used.",
    ]


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        (f"{TINY}_eeg.json", '{"PowerLineFrequency": 60,, }',
         r"sub-01_ses-eeg_task-rest_eeg\.json is not valid JSON: Expecting property name enclosed in double "
         r"quotes at line 1, column 27"),
        (f"{TINY}_eeg.json", "[1, 2]", r"_eeg\.json holds a JSON list, but BIDS sidecars are JSON objects"),
        (f"{TINY}_channels.tsv", "name\ttype\tunits\nFp1\tEEG\tuV\nFp2\tEEG\tuV\textra\tfields\n",
         r"sub-01_ses-eeg_task-rest_channels\.tsv is not a valid tab-separated table: line 3 has 5 fields but the header has 3"),
        (f"{TINY}_events.tsv", "onset duration trial_type\n0.0 0.0 start\n",
         r"_events\.tsv lacks the required columns \['onset', 'duration'\].*separated by tabs"),
        ("sub-01/ses-eeg/eeg/sub-01_ses-eeg_space-CapTrak_coordsystem.json", "",
         r"space-CapTrak_coordsystem\.json is not valid JSON: Expecting value at line 1, column 1"),
    ],
)
def test_broken_sidecar(tmp_path, shared_data, name, content, error):
    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    (root / name).write_text(content)
    source = discover(root).sources[0]
    with pytest.raises(SidecarError, match=error):
        read_source(source)


def test_sidecar_readers(tmp_path):
    good = tmp_path / "a.json"
    good.write_text('\ufeff{"a": 1}', encoding="utf-8")  # BOM tolerated, as in the shared data
    assert read_json_sidecar(good) == {"a": 1}
    tsv = tmp_path / "t.tsv"
    tsv.write_text("name\tx\nA\tn/a\n")
    assert read_tsv_sidecar(tsv, ["name", "x"]).to_dict("records") == [{"name": "A", "x": "n/a"}]


def test_check_sidecars_covers_participants(tmp_path, shared_data):
    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    source = discover(root).sources[0]
    assert len(check_sidecars(source)) == 10  # 9 sidecars of the recording + participants.tsv
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t29\textra\n")
    with pytest.raises(SidecarError, match=r"participants\.tsv is not a valid tab-separated table"):
        check_sidecars(source)


def test_bids_groups_regions_and_ignored_files(tmp_path, shared_data):
    root = _copy(shared_data / "bids" / "ieeg-ecog", tmp_path / "ecog")
    ieeg = root / "sub-ecog01" / "ses-postimp" / "ieeg"
    channels = ieeg / "sub-ecog01_ses-postimp_task-seizure_run-1_channels.tsv"
    table = pd.read_csv(channels, sep="\t", dtype=str, keep_default_na=False)
    table["group"] = ["grid" if n.startswith("C") else "n/a" for n in table["name"]]
    table.to_csv(channels, sep="\t", index=False)
    electrodes = ieeg / "sub-ecog01_ses-postimp_space-fsaverage_electrodes.tsv"
    table = pd.read_csv(electrodes, sep="\t", dtype=str, keep_default_na=False)
    table["anatomy"] = ["ctx-lh-precentral" if n == "C1" else "n/a" for n in table["name"]]
    table.to_csv(electrodes, sep="\t", index=False)
    (root / "code").mkdir()
    (root / "code" / "convert.py").write_text("print(1)\n")
    (root / "derivatives" / "x").mkdir(parents=True)
    (root / "derivatives" / "x" / "sub-ecog01_ieeg.vhdr").write_text("")
    found = discover(root)
    assert found.ignored == {".py": ["code/convert.py"]}
    result = read_source(found.sources[0])
    ch = result.channels.set_index("name")
    assert ch.at["C1", "group"] == "grid" and ch.at["BTM1", "group"] == "BTM"  # n/a: derived from the name
    assert ch.at["C1", "region"] == "ctx-lh-precentral" and ch.at["C2", "region"] == ""


def test_bids_folder_recordings_splits_and_duplicates(tmp_path):
    root = tmp_path / "megds"
    meg = root / "sub-01" / "ses-1" / "meg"
    (meg / "sub-01_ses-1_task-x_run-1_meg.ds").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.7.0"}')
    for name in ("sub-01_ses-1_task-x_run-1_meg.ds/x.meg4", "sub-01_ses-1_task-x_run-1_meg.json",
                 "sub-01_ses-1_task-x_run-2_split-01_meg.fif", "sub-01_ses-1_task-x_run-2_split-02_meg.fif",
                 "sub-01_ses-1_task-x_run-2_meg.json", "sub-01_ses-1_task-x_run-2_proc-sss_meg.fif"):
        (meg / name).write_bytes(b"")
    found = discover(root)
    assert [(s.relpath.rsplit("/", 1)[-1], s.format, s.recording_id) for s in found.sources] == [
        ("sub-01_ses-1_task-x_run-1_meg.ds", "ctf", "megds_sub-01_ses-1_task-x_run-1"),
        ("sub-01_ses-1_task-x_run-2_proc-sss_meg.fif", "fif", "megds_sub-01_ses-1_task-x_run-2"),
    ]
    assert sorted(p.name for p in found.sources[0].files) == ["sub-01_ses-1_task-x_run-1_meg.json", "x.meg4"]
    (path, error), = found.problems
    assert path.endswith("sub-01_ses-1_task-x_run-2_split-01_meg.fif")
    with pytest.raises(DuplicateRecordingError, match=r"run-2_split-01_meg\.fif maps to the recording id "
                       r"'megds_sub-01_ses-1_task-x_run-2', which .*proc-sss_meg\.fif already has\. .*"
                       r"recording ids use no other BIDS entity"):
        raise error
    assert found.ignored == {}


def _single_space(root: Path, space: str) -> Path:
    """Keep only the electrodes file without a space entity and declare ``space`` for it."""
    eeg_dir = root / "sub-01" / "ses-eeg" / "eeg"
    for name in ("sub-01_ses-eeg_space-CapTrak_electrodes.tsv", "sub-01_ses-eeg_space-CapTrak_coordsystem.json"):
        (eeg_dir / name).unlink()
    coords = eeg_dir / "sub-01_ses-eeg_coordsystem.json"
    content = json.loads(coords.read_text(encoding="utf-8-sig"))
    content.update(EEGCoordinateSystem=space, AnatomicalLandmarkCoordinateSystem=space)
    coords.write_text(json.dumps(content))
    return eeg_dir / "sub-01_ses-eeg_electrodes.tsv"


def test_head_spaces_are_those_mne_bids_reads_as_head():
    from mne_bids.config import BIDS_TO_MNE_FRAMES

    from brainfm.preprocessing.bids import HEAD_SPACES

    assert HEAD_SPACES == {k.lower() for k, v in BIDS_TO_MNE_FRAMES.items() if v == "head"}


def test_eeg_electrodes_in_eeglab_space_use_the_head_frame_of_mne_bids(tmp_path, shared_data):
    """EEGLAB (ALS) positions are not head-frame positions: mne-bids' head-frame ones are stored."""
    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    tsv = _single_space(root, "EEGLAB")
    result = read_source(discover(root).sources[0])
    eeg = result.channels[result.channels["type"] == "eeg"]
    assert set(eeg["pos_source"]) == {"measured"} and set(eeg["frame"]) == {"head"}
    xyz = eeg[["x", "y", "z"]].to_numpy(float)
    chs = {ch["ch_name"]: ch["loc"][:3] for ch in result.raw.info["chs"]}
    assert np.allclose(xyz, [chs[n] for n in eeg["orig_name"]])  # what mne-bids put in the head frame
    table = pd.read_csv(tsv, sep="\t", encoding="utf-8-sig").set_index("name")
    assert not np.allclose(xyz, table.loc[eeg["orig_name"], ["x", "y", "z"]].to_numpy(float))  # not the ALS numbers
    assert result.info["space"] == "EEGLAB"
    assert any("'EEGLAB' space" in w and "not the head frame" in w for w in result.warnings)


def test_eeg_electrodes_in_other_space_fall_back_to_a_template(tmp_path, shared_data):
    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    _single_space(root, "Other")
    result = read_source(discover(root).sources[0])
    eeg = result.channels[result.channels["type"] == "eeg"]
    assert set(eeg["pos_source"]) == {"template"} and set(eeg["frame"]) == {"head"}
    assert result.info["template_montage"] is not None
    assert any("'Other' space" in w and "not the head frame" in w for w in result.warnings)


def test_new_run_or_subject_leaves_the_other_recordings_unchanged(tmp_path, shared_data):
    """Only the recording's own files are hashed: a new run (a scans.tsv row) or subject changes nothing else."""
    from brainfm.preprocessing.run import hash_files

    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    before = discover(root).sources
    files, sha256 = list(before[0].files), hash_files(before[0].files)
    assert not {"scans.tsv", "participants.tsv", "dataset_description.json"} & {p.name.rsplit("_", 1)[-1] for p in files}
    session = root / "sub-01" / "ses-eeg"
    run2 = "sub-01_ses-eeg_task-rest_run-2_eeg.edf"
    shutil.copyfile(shared_data / "eeg" / "eegmat" / "Subject00_2.edf", session / "eeg" / run2)
    with (session / "sub-01_ses-eeg_scans.tsv").open("a") as fh:
        fh.write(f"eeg/{run2}\t2000-01-01T13:00:00.000000Z\n")
    with (root / "participants.tsv").open("a") as fh:
        fh.write("sub-02" + "\tn/a" * (len((root / "participants.tsv").read_text().splitlines()[0].split("\t")) - 1) + "\n")
    after = discover(root).sources
    assert [s.recording_id for s in after] == [before[0].recording_id, "tiny_sub-01_ses-eeg_task-rest_run-2"]
    assert after[0].files == files and hash_files(after[0].files) == sha256
    assert after[0].companions["scans"] == session / "sub-01_ses-eeg_scans.tsv"  # still parsed before reading


def test_sidecars_are_looked_up_once(tmp_path, shared_data, monkeypatch):
    """Discovery finds a recording's sidecars; checking, reading and electrodes reuse them."""
    import brainfm.preprocessing.bids as bids

    root = _copy(shared_data / "bids" / "tiny-eeg", tmp_path / "tiny")
    calls = []
    lookup = bids.recording_sidecars
    monkeypatch.setattr(bids, "recording_sidecars", lambda *a, **k: calls.append(a) or lookup(*a, **k))
    source = discover(root).sources[0]
    assert len(calls) == 1
    sidecars = bids.source_sidecars(source)
    assert {k: [p.name for p in v] for k, v in sidecars.items()} == {
        k: [p.name for p in v] for k, v in lookup(root, source.path).items()}
    result = read_source(source)
    assert len(calls) == 1
    assert result.info["electrodes"] == "sub-01_ses-eeg_space-CapTrak_electrodes.tsv"


def test_maxshield_fif_in_bids_is_read_with_allow_maxshield(tmp_path, shared_data):
    """mne-bids gets allow_maxshield, and MNE's MaxShield warning is recorded once, in brainfm's words."""
    import warnings

    import mne
    import mne_bids

    from brainfm.preprocessing.readers import MAXSHIELD_WARNING

    raw = mne.io.read_raw_fif(shared_data / "meg" / "fif" / "test_move_anon_erm_raw.fif",
                              allow_maxshield=True, verbose="error")
    bids_path = mne_bids.BIDSPath(subject="01", task="noise", datatype="meg", root=tmp_path / "bids")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mne_bids.write_raw_bids(raw, bids_path, verbose="error")
    (source,) = discover(tmp_path / "bids").sources
    with pytest.raises(ValueError, match="Internal Active Shielding"):  # what allow_maxshield avoids
        mne.io.read_raw_fif(source.path, verbose="error")
    result = read_source(source)
    assert result.info["reader"] == "mne_bids.read_raw_bids"
    assert result.info["options"] == {"allow_maxshield": True}
    assert result.warnings.count(MAXSHIELD_WARNING) == 1
    assert [w for w in result.warnings if "Shielding" in w or "MaxFilter" in w] == [MAXSHIELD_WARNING]
