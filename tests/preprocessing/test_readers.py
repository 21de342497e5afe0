"""read_source on every real recording, on synthetic files with known content, and on bad input."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import mne
import numpy as np
import pytest

from brainfm.errors import ConfigError, ReadError, TruncatedFileError, UnsupportedFormatError
from brainfm.preprocessing.discover import discover
from brainfm.preprocessing.readers import MAXSHIELD_WARNING, open_raw, read_source
from brainfm.preprocessing.source import Override

ECOG_OVERRIDE = Override("*acq-ecog*", {"*": "ecog"})


@pytest.fixture(scope="module")
def shared_sources(shared_data):
    return {s.relpath: s for s in discover(shared_data).sources}


@pytest.fixture(scope="module")
def read(shared_sources):
    """Read each real recording once per module (with the ECoG override of the recipes)."""
    cache = {}

    def _read(relpath):
        if relpath not in cache:
            cache[relpath] = read_source(shared_sources[relpath], [ECOG_OVERRIDE])
        return cache[relpath]

    return _read


def _types(result):
    return dict(Counter(result.channels["type"]))


def _xyz(table):
    return table[["x", "y", "z"]].to_numpy(dtype=float)


def _norms(table):
    return np.linalg.norm(_xyz(table), axis=1)


# --- MEG ---------------------------------------------------------------------------------------

def test_meg_fif_maxshield(read):
    result = read("meg/fif/test_move_anon_erm_raw.fif")
    ch = result.channels
    assert _types(result) == {"grad": 204, "mag": 102, "eeg": 60, "eog": 2, "ecg": 1, "misc": 12}
    assert not ch["orig_name"].str.startswith("STI").any()  # 11 stim channels left out
    assert result.info["options"] == {"allow_maxshield": True}
    assert [w for w in result.warnings if "Shielding" in w or "MaxFilter" in w] == [MAXSHIELD_WARNING]
    assert result.warnings[0].startswith("Internal Active Shielding data (MaxShield): not MaxFiltered")
    meg = ch[ch["type"].isin(["mag", "grad"])]
    # empty-room recording: no device-to-head transform, so the device frame
    assert set(meg["frame"]) == {"device"} and set(meg["pos_source"]) == {"measured"}
    assert result.info["meg_frame"] == "device"
    assert np.all((_norms(meg) > 0.05) & (_norms(meg) < 0.2))
    assert set(ch.loc[ch["type"] == "mag", "coil_type"]) == {"FIFFV_COIL_VV_MAG_T3"}
    assert set(ch.loc[ch["type"] == "grad", "coil_type"]) == {"FIFFV_COIL_VV_PLANAR_T1"}
    assert np.allclose(np.linalg.norm(meg[["ox", "oy", "oz"]].to_numpy(float), axis=1), 1.0)
    grads = ch[ch["type"] == "grad"]
    assert np.allclose(np.linalg.norm(grads[["gx", "gy", "gz"]].to_numpy(float), axis=1), 1.0)
    assert np.all(ch.loc[ch["type"] == "mag", ["gx", "gy", "gz"]].to_numpy() == 0)
    eeg = ch[ch["type"] == "eeg"]
    assert set(eeg["pos_source"]) == {"measured"} and set(eeg["frame"]) == {"head"}
    assert np.all((_norms(eeg) > 0.05) & (_norms(eeg) < 0.15))
    assert result.line_freq == 60.0
    assert result.meas_date == "2015-04-20T22:28:56.872779+00:00"
    assert result.raw.first_samp == 3600 and result.events.empty


def test_ctf_without_reference_channels(read):
    result = read("meg/ctf/testdata_ctf_short_discontinuous.ds")
    ch = result.channels
    assert _types(result) == {"mag": 273, "eeg": 8, "misc": 44}
    raw_types = Counter(result.raw.get_channel_types())
    assert raw_types["ref_meg"] == 28 and raw_types["stim"] == 3
    mag = ch[ch["type"] == "mag"]
    assert set(mag["coil_type"]) == {"FIFFV_COIL_CTF_GRAD"}  # axial gradiometers, "mag" in MNE
    assert set(mag["frame"]) == {"head"} and result.info["meg_frame"] == "head"
    assert np.all(_norms(mag) < 0.2)
    assert result.info["compensation_grade"] == result.raw.compensation_grade == 0


def test_ctf_pick_by_orig_name_drops_references_safely(read):
    result = read("meg/ctf/testdata_ctf_short_discontinuous.ds")
    raw = result.raw
    mags = result.channels.loc[result.channels["type"] == "mag", "orig_name"].tolist()
    picked = raw.copy().pick(result.channels["orig_name"].tolist(), verbose="error")
    assert "ref_meg" not in picked.get_channel_types()
    assert picked.compensation_grade == raw.compensation_grade
    assert np.array_equal(picked.get_data(picks=mags[:20], stop=200), raw.get_data(picks=mags[:20], stop=200))


def test_kit_head_frame_from_marker_and_digitiser(read):
    result = read("meg/kit/test.sqd")
    ch = result.channels
    assert _types(result) == {"mag": 157, "misc": 32}
    assert set(ch.loc[ch["type"] == "mag", "frame"]) == {"head"}
    assert set(ch.loc[ch["type"] == "mag", "coil_type"]) == {"FIFFV_COIL_KIT_GRAD"}
    assert result.info["options"]["mrk"].endswith("test_mrk.sqd")
    # STI 014, as mne.find_events gives it
    assert result.events["description"].tolist() == ["255", "255"]
    assert result.events["onset_s"].tolist() == pytest.approx([0.281, 1.564])


def test_kit_pick_by_orig_name_drops_references(read):
    result = read("meg/kit/test.sqd")
    assert Counter(result.raw.get_channel_types())["ref_meg"] == 3
    picked = result.raw.copy().pick(result.channels["orig_name"].tolist(), verbose="error")
    assert picked.get_channel_types() == result.channels["type"].tolist()
    assert picked.ch_names == result.channels["orig_name"].tolist()


def test_kit_alone_stays_in_device_frame(tmp_path, shared_data, read):
    shutil.copyfile(shared_data / "meg" / "kit" / "test.sqd", tmp_path / "test.sqd")
    result = read_source(discover(tmp_path).sources[0])
    mag = result.channels[result.channels["type"] == "mag"]
    assert set(mag["frame"]) == {"device"}
    assert any("No KIT marker" in w for w in result.warnings)
    head = read("meg/kit/test.sqd").channels
    assert not np.allclose(_xyz(mag), _xyz(head[head["type"] == "mag"]))


# --- iEEG --------------------------------------------------------------------------------------

def test_persyst_becomes_ecog_with_override(read, shared_sources):
    relpath = "ieeg/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay"
    result = read(relpath)
    assert _types(result) == {"ecog": 83}
    assert result.channels["name"].tolist()[:3] == ["FP1", "FP2", "F3"]  # iEEG names are kept
    assert set(result.raw.get_channel_types()) == {"ecog"}  # the raw agrees with the table
    assert result.events["description"].tolist() == ["seizure", "CLip2", "seizure", "seizure1,2", "Clip1"]
    assert "Unable to process birthdate of None" in result.warnings  # printed by MNE, captured
    plain = read_source(shared_sources[relpath])
    assert _types(plain) == {"eeg": 81, "ecg": 2}  # POL EKG1/2 typed by name
    assert plain.channels["name"].tolist()[:3] == ["Fp1", "Fp2", "F3"]


def test_ieeg_fif_positions_and_groups(read):
    result = read("ieeg/fif/sample_ecog_ieeg.fif")
    ch = result.channels
    assert _types(result) == {"ecog": 320, "seeg": 74}
    assert set(ch["pos_source"]) == {"measured"} and set(ch["frame"]) == {"head"}
    assert np.all(_norms(ch) < 0.2)
    assert dict(Counter(ch["group"])) == {"G": 256, "OFMG": 64, "DC": 20, "AD": 10, "HD": 10, "ID": 10,
                                          "FP": 6, "LT": 6, "TP": 4, "MST": 4, "PST": 4}


# --- EEG ---------------------------------------------------------------------------------------

def test_eegmmidb(read):
    result = read("eeg/eegmmidb/S001R03.edf")
    ch = result.channels
    assert _types(result) == {"eeg": 64}
    assert ch["name"].tolist()[:8] == ["FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "C5"]
    assert ch["orig_name"].tolist()[:2] == ["Fc5.", "Fc3."]
    assert set(ch["pos_source"]) == {"template"} and set(ch["frame"]) == {"head"}
    assert result.info["template_montage"] == "colin27_1005"
    assert np.all((_norms(ch) > 0.05) & (_norms(ch) < 0.15))
    assert dict(Counter(result.events["description"])) == {"T0": 15, "T1": 8, "T2": 7}
    assert result.events["onset_s"].tolist()[:3] == pytest.approx([0.0, 4.2, 8.3])
    assert result.meas_date == "2009-08-12T16:15:00+00:00" and result.line_freq is None


def test_eegmat_names_and_ecg(read):
    result = read("eeg/eegmat/Subject00_1.edf")
    ch = result.channels
    assert _types(result) == {"eeg": 20, "ecg": 1}
    eeg = ch[ch["type"] == "eeg"]["name"].tolist()
    assert eeg == ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "T3", "T4", "C3", "C4", "T5", "T6", "P3", "P4",
                   "O1", "O2", "Fz", "Cz", "Pz", "A2-A1"]
    assert ch.loc[ch["type"] == "ecg", "orig_name"].tolist() == ["ECG ECG"]
    assert Counter(ch["pos_source"]) == {"template": 19, "none": 2}  # A2-A1 and the ECG


def test_ssvep_events_from_eve_file(read):
    result = read("eeg/ssvep-exo/subject01/record-[2012.07.06-19.02.16]_raw.fif")
    assert _types(result) == {"eeg": 8}
    assert dict(Counter(result.events["description"])) == {"1": 8, "2": 8, "3": 8, "4": 8}
    eve = mne.read_events(str(result.raw.filenames[0]).replace("_raw.fif", "-eve.fif"))
    assert result.events["onset_s"].tolist() == pytest.approx(((eve[:, 0] - result.raw.first_samp) / 256.0).tolist())
    assert result.line_freq == 50.0
    # the file stores positions in millimetres: not used, template instead
    assert set(result.channels["pos_source"]) == {"template"}
    assert any("not plausible" in w for w in result.warnings)


def test_brainvision_with_captrak_positions(read):
    result = read("eeg/brainvision/bv_dig_test.vhdr")
    ch = result.channels
    assert _types(result) == {"eeg": 64, "ecg": 1, "eog": 2}
    assert ch.loc[ch["type"] != "eeg", "name"].tolist() == ["ECG", "HEOG", "VEOG"]
    assert result.raw.get_channel_types(picks=["ECG", "HEOG"]) == ["ecg", "eog"]
    eeg = ch[ch["type"] == "eeg"]
    assert set(eeg["pos_source"]) == {"measured"} and set(eeg["frame"]) == {"head"}
    assert eeg.iloc[0][["x", "y", "z"]].tolist() == pytest.approx([-0.0374127, 0.1110214, 0.0498709], abs=1e-6)
    assert any("captrak_coords.bvct" in w for w in result.warnings)
    assert result.events["description"].tolist() == ["Comment/ControlBox is not connected via USB"]


def test_cnt_int32_fallback(read):
    result = read("eeg/cnt/test_CNT_events_mne_JWoess_clipped.cnt")
    ch = result.channels
    assert result.info["options"]["data_format"] == "int32"
    assert any("auto-detection failed" in w and "'int32'" in w for w in result.warnings)
    assert not any("read_raw_ant" in w for w in result.warnings)
    assert ch["name"].tolist() == ["F8", "FCz"] and set(ch["pos_source"]) == {"template"}
    assert ch["status"].tolist() == ["bad", "good"] and ch["status_reason"].tolist() == ["metadata", ""]
    bad = result.events[result.events["description"] == "BAD_0"]
    assert bad["onset_s"].tolist() == pytest.approx([0.0, 52.22]) and bad["duration_s"].tolist() == pytest.approx([47.334, 18.024])
    assert dict(Counter(result.events["description"])) == {"5": 8, "BAD_0": 2, "KeyPad Response 1": 1, "99": 1}


def test_eeglab_positions(read):
    result = read("eeg/eeglab/test_raw_chanloc.set")
    ch = result.channels
    assert _types(result) == {"eeg": 61}
    assert set(ch["pos_source"]) == {"measured"} and set(ch["frame"]) == {"head"}
    assert np.all((_norms(ch) > 0.05) & (_norms(ch) < 0.15))
    assert result.events["description"].tolist() == ["boundary", "S 12"]


def test_edf_with_stim_channel(read):
    result = read("eeg/edf/test_reduced.edf")
    ch = result.channels
    assert _types(result) == {"eeg": 138} and "Status" not in ch["orig_name"].tolist()
    assert result.info["template_montage"] == "biosemi256"
    assert Counter(ch["pos_source"]) == {"template": 128, "none": 10}
    counts = Counter(result.events["description"])
    assert counts == {"type A": 3, "start": 1, "type B": 1, "4096": 7, "4100": 6}  # 5 annotations + 13 triggers


def test_bdf_annotations_and_analogue_trigger(read):
    result = read("eeg/bdf/multiple_annotation_chans.bdf")
    ch = result.channels
    assert _types(result) == {"eeg": 15, "emg": 1, "eog": 1, "ecg": 1}
    assert len(result.events) == 10 and result.events["description"].iloc[0] == "signal_start"
    assert any("analogue signal rather than trigger codes" in w for w in result.warnings)
    assert ch.loc[ch["name"] == "A1", "pos_source"].item() == "template"


def test_fif_eeg_with_first_samp(read):
    result = read("eeg/fif/data_resting_EO_200Hz_raw.fif")
    assert result.channels["name"].tolist() == ["F4", "Cz"]
    assert result.channels["orig_name"].tolist() == ["F4-A1", "CZ-A2"]
    assert result.raw.first_samp == 2000


# --- corrupt files -----------------------------------------------------------------------------

def test_corrupt_files(shared_sources):
    with pytest.raises(TruncatedFileError, match=r"truncated_S001R05\.edf is truncated.*\(125 s\).*\(57 s"):
        read_source(shared_sources["corrupt/truncated_S001R05.edf"])
    with pytest.raises(UnsupportedFormatError, match=r"not_really\.edf is not a valid EDF file.*this is not an EDF file"):
        read_source(shared_sources["corrupt/not_really.edf"])
    with pytest.raises(ReadError, match=r"orphan_header\.vhdr names the data file 'missing_data_file\.eeg'"):
        read_source(shared_sources["corrupt/orphan_header.vhdr"])


# eXimia (.nxe) is headerless: MNE reads any bytes as samples, so it cannot be told from noise.
@pytest.mark.parametrize("name", ["noise.nedf", "noise.cnt", "noise.lay", "noise.raw", "noise.ns5", "noise.EEG", "noise.sqd"])
def test_file_no_reader_can_open(tmp_path, name):
    noise = np.random.default_rng(1).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    (tmp_path / name).write_bytes(noise)
    if name.endswith(".lay"):
        (tmp_path / "noise.dat").write_bytes(noise)
    source = discover(tmp_path).sources[0]
    with pytest.raises(UnsupportedFormatError, match=rf"Could not read .*{name} as .* with mne\.io\.read_raw_"):
        read_source(source)


def test_gdf_signature_without_content(tmp_path):
    (tmp_path / "x.gdf").write_bytes(b"GDF 2.20" + bytes(248))
    with pytest.raises(UnsupportedFormatError, match=r"Could not read .*x\.gdf as GDF with mne\.io\.read_raw_gdf"):
        read_source(discover(tmp_path).sources[0])


def test_bad_override_type(shared_sources):
    source = shared_sources["eeg/fif/data_resting_EO_200Hz_raw.fif"]
    with pytest.raises(ConfigError, match=r"Invalid channel type in the override for '\*': 'F\*' -> 'brain'"):
        read_source(source, [Override("*", {"F*": "brain"})])


# --- synthetic files with known content --------------------------------------------------------

def _write_brainvision(folder: Path, data_uv: np.ndarray, names, sfreq: float, marker_sample: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    channels = "\n".join(f"Ch{i + 1}={n},,1,µV" for i, n in enumerate(names))
    (folder / "syn.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        "DataFile=syn.eeg\nMarkerFile=syn.vmrk\nDataFormat=BINARY\nDataOrientation=MULTIPLEXED\n"
        f"NumberOfChannels={len(names)}\nSamplingInterval={1e6 / sfreq:g}\n[Binary Infos]\n"
        f"BinaryFormat=IEEE_FLOAT_32\n[Channel Infos]\n{channels}\n", encoding="utf-8")
    (folder / "syn.vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        "DataFile=syn.eeg\n[Marker Infos]\nMk1=New Segment,,1,1,0,20200101120000000000\n"
        f"Mk2=Stimulus,S  1,{marker_sample + 1},1,0\n", encoding="utf-8")
    data_uv.T.astype("<f4").tofile(folder / "syn.eeg")
    return folder / "syn.vhdr"


def test_brainvision_round_trip(tmp_path):
    data = np.random.default_rng(2).normal(0, 20, (3, 500))
    _write_brainvision(tmp_path, data, ["Fp1", "EEG Cz", "VEOG"], 250.0, marker_sample=125)
    result = read_source(discover(tmp_path).sources[0], [Override("*", line_freq=50.0)])
    assert result.channels["name"].tolist() == ["Fp1", "Cz", "VEOG"]
    assert result.channels["type"].tolist() == ["eeg", "eeg", "eog"]
    assert result.raw.get_data() == pytest.approx(data.astype(np.float32) * 1e-6, rel=1e-6)
    stim = result.events[result.events["description"] == "Stimulus/S  1"]
    assert stim["onset_s"].tolist() == pytest.approx([0.5])
    assert result.line_freq == 50.0  # the file has none: the override's


def test_fif_first_samp_annotations_eve_and_stim(tmp_path):
    sfreq = 100.0
    info = mne.create_info(["Fz", "Cz", "STI 014"], sfreq, ["eeg", "eeg", "stim"])
    data = np.zeros((3, 1000))
    data[2, 700:705] = 5  # trigger 5 at 7 s after the first sample
    data[2, 300:303] = 3  # trigger 3 at 3 s, same time as an annotation: kept once
    raw = mne.io.RawArray(data, info, first_samp=250, verbose="error")
    raw.set_meas_date(1_600_000_000)
    raw.set_annotations(mne.Annotations([1.0, 3.0], [0.5, 0.0], ["blink", "stim3"]))  # from the first sample
    raw.save(tmp_path / "syn_raw.fif", verbose="error")
    result = read_source(discover(tmp_path).sources[0])
    assert result.events["onset_s"].tolist() == pytest.approx([1.0, 3.0, 7.0])
    assert result.events["description"].tolist() == ["blink", "stim3", "5"]
    assert result.events["duration_s"].tolist() == pytest.approx([0.5, 0.0, 0.0])
    retyped = read_source(discover(tmp_path).sources[0], [Override("*", {"*": "ecog"})])
    assert retyped.channels["type"].tolist() == ["ecog", "ecog"]  # the stim channel is never retyped
    assert retyped.raw.get_channel_types() == ["ecog", "ecog", "stim"]
    mne.write_events(tmp_path / "syn-eve.fif", np.array([[250 + 200, 0, 9], [250 + 450, 0, 4]]), verbose="error")
    result = read_source(discover(tmp_path).sources[0])
    assert result.events["description"].tolist() == ["blink", "9", "stim3", "4"]  # -eve.fif replaces the stim channel
    assert result.events["onset_s"].tolist() == pytest.approx([1.0, 2.0, 3.0, 4.5])


def test_override_order_and_line_freq_conflict(tmp_path):
    info = mne.create_info(["LA1", "LA2", "EKG1", "X"], 100.0, "eeg")
    raw = mne.io.RawArray(np.zeros((4, 200)), info, verbose="error")
    with raw.info._unlock():
        raw.info["line_freq"] = 60.0
    raw.save(tmp_path / "sub-7_task-a_raw.fif", verbose="error")
    overrides = [Override("*", {"*": "seeg"}), Override("sub-7*", {"ekg*": "ecg", "x": "misc"}, line_freq=50.0),
                 Override("other*", {"*": "ecog"})]
    result = read_source(discover(tmp_path).sources[0], overrides)
    assert result.channels["type"].tolist() == ["seeg", "seeg", "ecg", "misc"]
    assert result.channels["group"].tolist() == ["LA", "LA", "", ""]
    assert result.line_freq == 60.0
    assert any("override's 50 Hz is not used" in w for w in result.warnings)


@pytest.mark.parametrize(("module", "fmt", "ext"), [("edfio", "EDF", ".edf"), ("pybv", "BrainVision", ".vhdr"),
                                                  ("eeglabio", "EEGLAB", ".set")])
def test_mne_export_round_trip(tmp_path, module, fmt, ext):
    pytest.importorskip(module, reason=f"{module} (test extra) is needed to export {fmt} with mne.export")
    data = np.random.default_rng(3).normal(0, 2e-5, (3, 512))
    raw = mne.io.RawArray(data, mne.create_info(["Fp1", "Cz", "HEOG"], 128.0, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([1.0], [0.0], ["go"]))
    mne.export.export_raw(tmp_path / f"syn{ext}", raw, fmt=fmt, verbose="error")
    result = read_source(discover(tmp_path).sources[0])
    assert result.channels["type"].tolist() == ["eeg", "eeg", "eog"]
    assert result.raw.get_data().shape == (3, 512)
    assert result.raw.get_data()[:2] == pytest.approx(data[:2], abs=1e-7)
    # BrainVision markers come back with their type: "Comment/go"
    assert [d.rsplit("/", 1)[-1] for d in result.events["description"]] == ["go"]
    assert result.events["onset_s"].tolist() == pytest.approx([1.0])


def test_cnt_fallback_records_only_the_warnings_of_the_read_that_worked(shared_sources, monkeypatch):
    """Each attempt of the CNT fallback warns and prints as MNE readers do; what a failed
    attempt said is dropped with it, and what every attempt says is recorded once."""
    import warnings

    real = mne.io.read_raw_cnt

    def read_raw_cnt(fname, *, data_format, **kwargs):
        warnings.warn("Could not parse meas date from the header.", RuntimeWarning, stacklevel=2)
        print("Setting channel info structure...")
        if data_format == "auto":
            warnings.warn("Guessed 4 bytes per sample.", RuntimeWarning, stacklevel=2)
        return real(fname, data_format=data_format, **kwargs)

    monkeypatch.setattr(mne.io, "read_raw_cnt", read_raw_cnt)
    source = shared_sources["eeg/cnt/test_CNT_events_mne_JWoess_clipped.cnt"]
    _, opened, info = open_raw(source)
    assert info["options"]["data_format"] == "int32"
    assert len(opened) == len(set(opened))
    result = read_source(source)
    assert "Guessed 4 bytes per sample." not in result.warnings
    assert result.warnings.count("Could not parse meas date from the header.") == 1
    assert result.warnings.count("Setting channel info structure...") == 1
    assert "Omitted 6 annotation(s) that were outside data range." in result.warnings


# --- issue 6, item 4: events that cannot be read, Neuroscan CNT sample width ------------------

def _stim_fif(path: Path) -> None:
    info = mne.create_info(["Fz", "Cz", "Pz", "STI 014"], 250.0, ["eeg", "eeg", "eeg", "stim"])
    data = np.random.default_rng(0).standard_normal((4, 2500)) * 1e-5
    data[3] = 0
    data[3, 500:510] = 5
    mne.io.RawArray(data, info, verbose=False).save(path, verbose=False)


def test_a_failing_stim_channel_read_fails_the_recording_unless_the_recipe_says(tmp_path, monkeypatch):
    from brainfm import open_store
    from brainfm.errors import EventReadError
    from brainfm.preprocessing.run import preprocess

    folder = tmp_path / "in"
    folder.mkdir()
    _stim_fif(folder / "stim_raw.fif")
    assert read_source(discover(folder).sources[0]).events["description"].tolist() == ["5"]

    def find_events(*args, **kwargs):
        raise ValueError("stim channel holds negative codes")

    monkeypatch.setattr(mne, "find_events", find_events)
    with pytest.raises(EventReadError, match=r"stim_raw\.fif: the events on the stim channel\(s\) \['STI 014'\] "
                       r"could not be read: ValueError: stim channel holds negative codes.*on_event_error: store_without_events"):
        read_source(discover(folder).sources[0])
    summary = preprocess(folder, tmp_path / "s.zarr")  # used to be stored without its events, exit 0
    assert summary.processed == [] and summary.exit_status == 1 and "EventReadError" == summary.failed[0]["error_type"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("extends: default\non_event_error: store_without_events\n")
    kept = preprocess(folder, tmp_path / "s2.zarr", recipe=recipe)
    assert kept.processed == ["in_stim_raw"]
    rec = open_store(tmp_path / "s2.zarr")["in_stim_raw"]
    assert len(rec.events) == 0
    assert rec.provenance["recipe_config"]["on_event_error"] == "store_without_events"
    assert any(w.startswith("Stored without events: the events on the stim channel(s) ['STI 014'] could not be read")
               for w in rec.provenance["warnings"])


def _cnt_reader(amplitudes: dict[str, float | None]):
    """A read_raw_cnt whose auto-detection fails and whose widths give known amplitudes (None: cannot open)."""
    def read_raw_cnt(fname, *, data_format, preload=False, verbose=None):
        if data_format == "auto" or amplitudes[data_format] is None:
            raise RuntimeError(f"Could not automatically compute number of bytes per sample ({data_format})")
        info = mne.create_info(["Fz", "Cz", "Pz", "Oz"], 250.0, "eeg")
        data = np.random.default_rng(0).standard_normal((4, 5000)) * amplitudes[data_format]
        return mne.io.RawArray(data, info, verbose=False)

    return read_raw_cnt


@pytest.mark.parametrize("amplitudes,chosen", [
    ({"int32": 65536 * 2e-5, "int16": 2e-5}, "int16"),  # an int16 file read as int32: 65536x too large
    ({"int32": 2e-5, "int16": 3e-10}, "int32"),
    ({"int32": None, "int16": 2e-5}, "int16"),
])
def test_cnt_width_is_the_one_with_plausible_amplitudes(tmp_path, monkeypatch, amplitudes, chosen):
    (tmp_path / "rec.cnt").write_bytes(bytes(range(256)) * 8)
    monkeypatch.setattr(mne.io, "read_raw_cnt", _cnt_reader(amplitudes))
    raw, messages, info = open_raw(discover(tmp_path).sources[0])
    assert info["options"]["data_format"] == chosen
    assert np.median(np.std(raw.get_data(), axis=1)) == pytest.approx(amplitudes[chosen], rel=0.1)
    (note,) = [m for m in messages if "auto-detection failed" in m]
    assert f"read with data_format={chosen!r}, the width whose amplitudes are plausible" in note
    assert "int32: " in note and "int16: " in note


def test_cnt_with_no_plausible_width_fails_naming_both(tmp_path, monkeypatch):
    (tmp_path / "rec.cnt").write_bytes(bytes(range(256)) * 8)
    monkeypatch.setattr(mne.io, "read_raw_cnt", _cnt_reader({"int32": 1.0, "int16": 1e-12}))
    with pytest.raises(UnsupportedFormatError, match=r"rec\.cnt as Neuroscan CNT with mne\.io\.read_raw_cnt: MNE could not "
                       r"detect its sample width .*neither width gives amplitudes plausible.*int32: 0 of 4 channels "
                       r"with a plausible amplitude \(median 0\.99.*int16: 0 of 4 channels"):
        open_raw(discover(tmp_path).sources[0])


def test_real_cnt_keeps_int32_over_int16(read):
    result = read("eeg/cnt/test_CNT_events_mne_JWoess_clipped.cnt")
    (note,) = [w for w in result.warnings if "auto-detection failed" in w]
    assert "int32: 2 of 2 channels with a plausible amplitude" in note
    assert "int16: 1 of 2 channels with a plausible amplitude" in note


def _cnt_as_int16(src: Path, dst: Path, shift: int = 7) -> None:
    """Rewrite a Neuroscan CNT file of int32 samples with int16 samples (values / 2**shift, each
    channel's calibration x 2**shift), moving its event table and event offsets to match. The
    event table stays one byte off the data's end, as in the source file, so that MNE's
    automatic width detection still fails."""
    data = bytearray(src.read_bytes())

    def i32(at: int) -> int:
        return int(np.frombuffer(data[at:at + 4], "<i4")[0])

    n_channels = int(np.frombuffer(data[370:372], "<u2")[0])
    n_samples, table_at, start = i32(864), i32(886), 900 + 75 * n_channels
    samples = np.frombuffer(data[start:start + n_samples * n_channels * 4], "<i4")
    header = bytearray(data[:start])
    for ch in range(n_channels):
        at = 900 + 75 * ch
        baseline = int(np.frombuffer(header[at + 47:at + 49], "<i2")[0])
        header[at + 47:at + 49] = np.int16(baseline >> shift).tobytes()
        cal = float(np.frombuffer(header[at + 71:at + 75], "<f4")[0])
        header[at + 71:at + 75] = np.float32(cal * 2**shift).tobytes()
    if i32(894) > 1:  # block size in bytes
        header[894:898] = np.int32(i32(894) // 2).tobytes()
    kind, size = data[table_at], i32(table_at + 1)
    table = bytearray(data[table_at + 9:table_at + 9 + size])
    entry = 8 if kind == 1 else 19
    for at in range(0, size, entry):
        offset = int(np.frombuffer(table[at + 4:at + 8], "<i4")[0])
        if kind != 3:  # byte offsets into the data: samples x channels x width
            offset = start + (offset - start) // 2
        table[at + 4:at + 8] = np.int32(offset).tobytes()
    body = (samples >> shift).astype("<i2").tobytes() + b"\0"
    header[886:890] = np.int32(start + len(body)).tobytes()
    dst.write_bytes(bytes(header) + body + bytes(data[table_at:table_at + 9]) + bytes(table))


def test_real_cnt_written_as_int16_is_read_as_int16(shared_data, tmp_path):
    """The same recording with 2-byte samples: int32 first would read two samples as one, with
    amplitudes ~1e4 times too large; the width with plausible amplitudes is int16."""
    original = shared_data / "eeg" / "cnt" / "test_CNT_events_mne_JWoess_clipped.cnt"
    _cnt_as_int16(original, tmp_path / "rec16.cnt")
    result = read_source(discover(tmp_path).sources[0])
    assert result.info["options"]["data_format"] == "int16"
    (note,) = [w for w in result.warnings if "auto-detection failed" in w]
    assert "int32: 0 of 2 channels" in note and "int16: 2 of 2 channels" in note
    reference = mne.io.read_raw_cnt(original, data_format="int32", verbose="error").get_data()
    got = result.raw.get_data()
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() < 2e-6 < np.std(reference)  # within the 2**7 quantisation
    expected = read_source(discover(original.parent).sources[0]).events
    assert result.events["onset_s"].tolist() == pytest.approx(expected["onset_s"].tolist(), abs=2e-3)
# --- channel types from names (issue 6, item 10) ------------------------------------------------

#: A Sleep-EDF / AASM-like polysomnography montage: every channel typed EEG by the EDF reader.
SLEEP_CHANNELS = [
    "EEG Fpz-Cz", "EEG Pz-Oz", "C3-A2", "EOG horizontal", "LOC", "ROC", "EMG submental", "Chin",
    "ECG", "Resp oro-nasal", "Thor", "Temp rectal", "SpO2", "Pleth", "Photic", "Event marker",
]


def _sleep_edf(folder: Path) -> Path:
    pytest.importorskip("edfio", reason="edfio (test extra) is needed to export EDF with mne.export")
    rng = np.random.default_rng(6)
    data = rng.normal(0, 2e-5, (len(SLEEP_CHANNELS), 100 * 40))
    raw = mne.io.RawArray(data, mne.create_info(SLEEP_CHANNELS, 100.0, "eeg"), verbose="error")
    path = folder / "SC4001E0-PSG.edf"
    mne.export.export_raw(path, raw, fmt="EDF", verbose="error")
    return path


def test_sleep_edf_channels_typed_from_their_names(tmp_path):
    path = _sleep_edf(tmp_path)
    assert set(mne.io.read_raw_edf(path, verbose="error").get_channel_types()) == {"eeg"}  # what the file says
    result = read_source(discover(tmp_path).sources[0])
    types = dict(zip(result.channels["orig_name"], result.channels["type"], strict=True))
    assert types == {
        "EEG Fpz-Cz": "eeg", "EEG Pz-Oz": "eeg", "C3-A2": "eeg", "EOG horizontal": "eog", "LOC": "eog",
        "ROC": "eog", "EMG submental": "emg", "Chin": "emg", "ECG": "ecg",
    }  # respiration, temperature, oximetry and marker channels are not store types: left out
    typed = next(w for w in result.warnings if "typed from their names" in w)
    for expected in ("resp (not a store type: left out): Resp oro-nasal, Thor", "temperature (not a store type: "
                     "left out): Temp rectal", "bio (not a store type: left out): SpO2, Pleth",
                     "stim (not a store type: left out): Photic, Event marker"):
        assert expected in typed
    outside = next(w for w in result.warnings if "outside the 10-05 system" in w)
    assert outside.startswith("2 of 3 EEG channels") and "EEG Fpz-Cz" in outside and "C3-A2" not in outside
    assert result.events.empty  # name-typed stim channels are not read as trigger channels


def test_sleep_edf_keeps_non_eeg_out_of_reference_and_vocabulary(tmp_path):
    from brainfm.loading import build_window_index
    from brainfm.preprocessing.run import preprocess
    from brainfm.store import open_store

    folder = tmp_path / "sleep"
    folder.mkdir()
    _sleep_edf(folder)
    store_path = tmp_path / "store"
    summary = preprocess(folder, store_path)
    assert summary.failed == [] and len(summary.processed) == 1
    store = open_store(store_path)
    recording = store[next(iter(store))]
    table = recording.channels
    assert sorted(set(table["type"])) == ["ecg", "eeg", "emg", "eog"]
    eeg = table.index[table["type"] == "eeg"].to_numpy()
    signal = np.asarray(recording.signal[:], dtype=np.float64)
    # the average reference is taken over the three EEG channels only
    np.testing.assert_allclose(signal[eeg].mean(axis=0), 0.0, atol=1e-9)
    assert np.abs(signal[table.index[table["type"] != "eeg"]].mean(axis=0)).max() > 1e-7
    tokens = build_window_index(store_path, window_s=2.0).channel_vocabulary.tokens
    assert [t for t in tokens if t.startswith("eeg:")] == ["eeg:Fpz-Cz", "eeg:Pz-Oz"]  # C3-A2 is C3
    for name in ("Resp", "Temp", "SpO2", "Pleth", "Photic", "Event", "LOC", "ROC", "Chin", "EMG", "EOG"):
        assert not any(name in t for t in tokens), name


# --- MEG sensor types from the coil (issue 6, item 11) ------------------------------------------

FIFF_REF_MEG = mne.io.constants.FIFF.FIFFV_REF_MEG_CH


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("meg/fif/test_move_anon_erm_raw.fif", {("grad", "FIFFV_COIL_VV_PLANAR_T1", 2): 204,
                                                ("mag", "FIFFV_COIL_VV_MAG_T3", 1): 102}),
        ("meg/ctf/testdata_ctf_short_discontinuous.ds", {("mag", "FIFFV_COIL_CTF_GRAD", 2): 273}),
        ("meg/kit/test.sqd", {("mag", "FIFFV_COIL_KIT_GRAD", 2): 157}),
    ],
)
def test_meg_sensor_types_from_the_coil(read, relpath, expected):
    """Elekta planar -> 2, Elekta magnetometer -> 1, CTF and KIT axial gradiometers -> 2
    (BrainOmni's EEG 0 / MAG 1 / GRAD 2), though MNE types the axial ones "mag"."""
    from brainfm.data.coils import coil_class, sensor_type_ids

    table = read(relpath).channels
    meg = table[table["type"].isin(["mag", "grad"])]
    ids = sensor_type_ids(meg["type"].tolist(), meg["coil_type"].tolist())
    assert dict(Counter(zip(meg["type"], meg["coil_type"], ids.tolist(), strict=True))) == expected
    # reference sensors (CTF: 28, KIT: 3) are left out of the table; their coils are references
    raw = read(relpath).raw
    refs = [ch for ch in raw.info["chs"] if ch["kind"] == FIFF_REF_MEG]
    assert all(coil_class(str(int(ch["coil_type"]))).startswith("reference") for ch in refs)
    assert not set(table["orig_name"]) & {ch["ch_name"] for ch in refs}


def test_ctf_compensation_grade_stored_apart_from_the_coil(shared_data, tmp_path):
    """A CTF recording at third-order gradient compensation (MNE: coil type 3 << 16 | 5001)."""
    from brainfm.data import Identity, Recording
    from brainfm.data.geometry import fill_geometry
    from brainfm.loading import build_window_index
    from brainfm.preprocessing.readers import build_channel_table
    from brainfm.store import StoreWriter, open_store

    raw = mne.io.read_raw_ctf(shared_data / "meg" / "ctf" / "testdata_ctf_short_discontinuous.ds", verbose="error")
    raw.apply_gradient_compensation(3, verbose="error")
    assert {int(ch["coil_type"]) for ch in raw.info["chs"] if ch["kind"] == mne.io.constants.FIFF.FIFFV_MEG_CH} == {201609}
    table = build_channel_table(raw)
    fill_geometry(table, raw.info)
    meg = table["type"] == "mag"
    assert set(table.loc[meg, "coil_type"]) == {"FIFFV_COIL_CTF_GRAD"}
    assert set(table.loc[meg, "compensation_grade"]) == {3} and set(table.loc[~meg, "compensation_grade"]) == {0}
    signal = np.zeros((len(table), 600), dtype=np.float32)
    recording = Recording(signal, 1200.0, Identity("ctf", subject="01"), table, source={"path": "x", "sha256": "0"})
    StoreWriter(tmp_path / "store").write(recording)
    stored = open_store(tmp_path / "store")["ctf_sub-01"].channels
    assert stored["compensation_grade"].dtype == np.int64
    assert stored["compensation_grade"].tolist() == table["compensation_grade"].tolist()
    assert stored["coil_type"].tolist() == table["coil_type"].tolist()
    layout = build_window_index(tmp_path / "store", window_s=0.25).layouts[0]
    assert set(layout.sensor_type[np.array(layout.types) == "mag"].tolist()) == {2}
