"""Discovery: the format registry's grouping rules, identities, duplicates, ignored files."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainfm.data.recording import path_recording_id
from brainfm.errors import ConfigError, DuplicateRecordingError
from brainfm.preprocessing.discover import DEFAULT_PATTERN, discover, identity_from_path
from brainfm.preprocessing.formats import FORMATS, fif_kind, get_format, read_function, scan_folder

# Every recording of ../shared/data/README.md, relative to the data folder, with its format.
SHARED_RECORDINGS = {
    "bids/ieeg-ecog/sub-ecog01/ses-postimp/ieeg/sub-ecog01_ses-postimp_task-seizure_run-1_ieeg.vhdr": "brainvision",
    "bids/tiny-eeg/sub-01/ses-eeg/eeg/sub-01_ses-eeg_task-rest_eeg.vhdr": "brainvision",
    "corrupt/not_really.edf": "edf",
    "corrupt/orphan_header.vhdr": "brainvision",
    "corrupt/truncated_S001R05.edf": "edf",
    "eeg/bdf/multiple_annotation_chans.bdf": "bdf",
    "eeg/brainvision/bv_dig_test.vhdr": "brainvision",
    "eeg/cnt/test_CNT_events_mne_JWoess_clipped.cnt": "cnt",
    "eeg/edf/test_reduced.edf": "edf",
    "eeg/eeglab/test_raw_chanloc.set": "eeglab",
    **{f"eeg/eegmat/Subject{n:02d}_{k}.edf": "edf" for n in range(8) for k in (1, 2)},
    **{f"eeg/eegmmidb/S001R{r:02d}.edf": "edf" for r in range(3, 7)},
    "eeg/fif/data_resting_EO_200Hz_raw.fif": "fif",
    **{f"eeg/ssvep-exo/subject{s}/record-[{d}]_raw.fif": "fif" for s, d in [
        ("01", "2012.07.06-19.02.16"), ("01", "2012.07.06-19.06.14"), ("02", "2012.07.19-17.36.23"),
        ("02", "2012.07.19-17.41.14"), ("03", "2012.07.11-15.25.23"), ("03", "2012.07.11-15.33.08"),
        ("04", "2012.07.18-17.52.30"), ("04", "2012.07.18-17.56.53")]},
    "ieeg/fif/sample_ecog_ieeg.fif": "fif",
    "ieeg/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay": "persyst",
    "meg/ctf/testdata_ctf_short_discontinuous.ds": "ctf",
    "meg/fif/test_move_anon_erm_raw.fif": "fif",
    "meg/kit/test.sqd": "kit",
}


@pytest.fixture(scope="module")
def shared_discovery(shared_data):
    return discover(shared_data)


def _by_path(discovery, root):
    return {s.path.relative_to(root).as_posix(): s for s in discovery.sources}


def test_every_shared_recording_found_once(shared_discovery, shared_data):
    found = _by_path(shared_discovery, shared_data)
    assert len(shared_discovery.sources) == len(SHARED_RECORDINGS) == 44
    assert {k: s.format for k, s in found.items()} == SHARED_RECORDINGS
    assert len({s.recording_id for s in shared_discovery.sources}) == 44
    assert shared_discovery.problems == []


def test_shared_ignored_files(shared_discovery):
    assert shared_discovery.ignored == {
        "": ["eeg/eegmmidb/SHA256SUMS", "eeg/ssvep-exo/LICENSE"],
        ".csv": ["eeg/eegmat/subject-info.csv"],
        ".md": ["README.md"],
    }
    assert shared_discovery.n_ignored == 4


def test_members_and_companions(shared_discovery, shared_data):
    found = _by_path(shared_discovery, shared_data)
    names = lambda paths: sorted(p.name for p in paths)  # noqa: E731
    assert names(found["eeg/eeglab/test_raw_chanloc.set"].files) == ["test_raw_chanloc.fdt", "test_raw_chanloc.set"]
    bv = found["eeg/brainvision/bv_dig_test.vhdr"]
    assert names(bv.files) == ["bv_dig_test.eeg", "bv_dig_test.vhdr", "bv_dig_test.vmrk", "captrak_coords.bvct"]
    assert bv.companions["montage"].name == "captrak_coords.bvct"
    kit = found["meg/kit/test.sqd"]
    assert {k: v.name for k, v in kit.companions.items()} == {
        "mrk": "test_mrk.sqd", "elp": "test_elp.txt", "hsp": "test_hsp.txt"}
    ssvep = found["eeg/ssvep-exo/subject01/record-[2012.07.06-19.02.16]_raw.fif"]
    assert ssvep.companions["events"].name == "record-[2012.07.06-19.02.16]-eve.fif"
    persyst = found["ieeg/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay"]
    assert names(persyst.files)[0].endswith("_clip2.dat")
    ctf = found["meg/ctf/testdata_ctf_short_discontinuous.ds"]
    assert "testdata_ctf_short_discontinuous.meg4" in names(ctf.files) and len(ctf.files) == 11
    assert ctf.size == sum(p.stat().st_size for p in ctf.path.iterdir())


def test_nested_bids_roots_are_their_own_datasets(shared_discovery, shared_data):
    found = _by_path(shared_discovery, shared_data)
    tiny = found["bids/tiny-eeg/sub-01/ses-eeg/eeg/sub-01_ses-eeg_task-rest_eeg.vhdr"]
    assert tiny.dataset == "tiny-eeg" and tiny.bids_root == shared_data / "bids" / "tiny-eeg"
    assert tiny.relpath == "sub-01/ses-eeg/eeg/sub-01_ses-eeg_task-rest_eeg.vhdr"
    assert tiny.recording_id == "tiny-eeg_sub-01_ses-eeg_task-rest"
    assert tiny.identity.to_dict() == {"dataset": "tiny-eeg", "subject": "01", "session": "eeg",
                                       "task": "rest", "acquisition": None, "run": None}
    ecog = found["bids/ieeg-ecog/sub-ecog01/ses-postimp/ieeg/sub-ecog01_ses-postimp_task-seizure_run-1_ieeg.vhdr"]
    assert ecog.recording_id == "ieeg-ecog_sub-ecog01_ses-postimp_task-seizure_run-1"
    assert ecog.identity.run == "1"


def test_plain_identities(shared_discovery, shared_data):
    found = _by_path(shared_discovery, shared_data)
    persyst = found["ieeg/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay"]
    assert persyst.identity.to_dict() == {"dataset": "data", "subject": "pt1", "session": "02",
                                          "task": "monitor", "acquisition": "ecog", "run": "01"}
    assert persyst.recording_id == "data_sub-pt1_ses-02_task-monitor_acq-ecog_run-01"
    edf = found["eeg/eegmmidb/S001R03.edf"]
    assert edf.identity.subject is None
    assert edf.recording_id == path_recording_id("data", "eeg/eegmmidb/S001R03.edf")  # no subject: from the path
    assert edf.relpath == "eeg/eegmmidb/S001R03.edf"


def test_pattern_on_eegmmidb(shared_data):
    found = discover(shared_data / "eeg" / "eegmmidb", pattern=r"S(?P<subject>\d+)R(?P<run>\d+)")
    assert [s.recording_id for s in found.sources] == [f"eegmmidb_sub-001_run-{r:02d}" for r in range(3, 7)]
    first = found.sources[0].identity
    assert (first.dataset, first.subject, first.run, first.session) == ("eegmmidb", "001", "03", None)
    assert found.ignored == {"": ["SHA256SUMS"]}


def test_dataset_name_option(shared_data):
    found = discover(shared_data / "eeg" / "eegmat", dataset="mental-arithmetic",
                     pattern=r"Subject(?P<subject>\d+)_(?P<task>\d)")
    assert found.sources[0].recording_id == "mental-arithmetic_sub-00_task-1"
    assert len(found.sources) == 16 and found.problems == []


def test_default_pattern():
    ident = identity_from_path("d", "x/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay")
    assert (ident.subject, ident.session, ident.task, ident.acquisition, ident.run) == ("pt1", "02", "monitor", "ecog", "01")
    ident = identity_from_path("d", "sub-01_ses-a_task-rest_rec-x_run-2_eeg.edf")  # other entities in between
    assert (ident.subject, ident.task, ident.run) == ("01", "rest", "2")
    assert identity_from_path("d", "S001R03.edf").subject is None
    assert "(?P<subject>" in DEFAULT_PATTERN


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"S(?P<subject>\d+", "is not a regular expression"),
        (r"S(?P<patient>\d+)", r"named groups must be among \['subject', 'session', 'task', 'acquisition', 'run'\]"),
        (r"S\d+", "has no named group"),
    ],
)
def test_bad_pattern(tmp_path, pattern, message):
    with pytest.raises(ConfigError, match=message):
        discover(tmp_path, pattern=pattern)


def test_missing_input_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover(tmp_path / "nope")


def _touch(root: Path, *names: str, content: bytes = b"") -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_duplicate_ids(tmp_path):
    _touch(tmp_path, "site-a/sub-01_task-rest_eeg.edf", "site-b/sub-01_task-rest_eeg.edf", "site-b/sub-02_task-rest_eeg.edf")
    found = discover(tmp_path, dataset="multi")
    assert [s.relpath for s in found.sources] == ["site-a/sub-01_task-rest_eeg.edf", "site-b/sub-02_task-rest_eeg.edf"]
    assert len(found.problems) == 1
    path, error = found.problems[0]
    assert path == str(tmp_path / "site-b" / "sub-01_task-rest_eeg.edf")
    assert isinstance(error, DuplicateRecordingError)
    with pytest.raises(DuplicateRecordingError, match=r"maps to the recording id 'multi_sub-01_task-rest', which "
                       r".*site-a/sub-01_task-rest_eeg\.edf already has\. Give a --pattern"):
        raise error
    fixed = discover(tmp_path, dataset="multi", pattern=r"site-(?P<session>\w)/sub-(?P<subject>\d+)")
    assert [s.recording_id for s in fixed.sources] == ["multi_sub-01_ses-a", "multi_sub-01_ses-b", "multi_sub-02_ses-b"]
    assert fixed.problems == []


def test_unknown_files_ignored_and_counted(tmp_path):
    _touch(tmp_path, "README", "notes.txt", "a/table.csv", "a/meta.json", "a/b/figure.PNG", "rec.edf",
           ".hidden/x.edf", ".DS_Store", "derivatives/y.edf", "sub/sourcedata/z.edf")
    found = discover(tmp_path)
    assert [s.relpath for s in found.sources] == ["rec.edf"]
    assert found.ignored == {"": ["README"], ".csv": ["a/table.csv"], ".json": ["a/meta.json"],
                             ".png": ["a/b/figure.PNG"], ".txt": ["notes.txt"]}


def _scan(folder: Path):
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    dirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    scan = scan_folder(folder, files, dirs)
    entries = {e.path.name: (e.format, sorted(m.name for m in e.members),
                             {k: v.name for k, v in e.companions.items()}) for e in scan.entries}
    return entries, sorted(p.name for p in scan.ignored), scan.recording_dirs


def test_registry_placeholders(tmp_path):
    _touch(tmp_path, "a.gdf", "b.nedf", "c.nxe", "d.raw", "e.rec", "f.ns5", "g.EDF", "h.bdf", "i.fif.gz")
    _touch(tmp_path, "n.data", "n.head", "p.cdt", "p.cdt.dpa", "p.cdt.ceo", "q.dap", "q.dat", "q.rs3")
    _touch(tmp_path, "s.set", "s.fdt", "r.lay", "r.dat", "orphan.fdt", "orphan.vmrk")
    (tmp_path / "x.ds").mkdir()
    _touch(tmp_path, "x.ds/x.meg4", "x.ds/x.res4", "y.mff/signal1.bin", "y.mff/info.xml")
    entries, ignored, dirs = _scan(tmp_path)
    assert entries == {
        "a.gdf": ("gdf", [], {}), "b.nedf": ("nedf", [], {}), "c.nxe": ("eximia", [], {}),
        "d.raw": ("egi_raw", [], {}), "e.rec": ("edf", [], {}), "f.ns5": ("nsx", [], {}),
        "g.EDF": ("edf", [], {}), "h.bdf": ("bdf", [], {}), "i.fif.gz": ("fif", [], {}),
        "n.data": ("nicolet", ["n.head"], {}), "p.cdt": ("curry", ["p.cdt.ceo", "p.cdt.dpa"], {}),
        "q.dap": ("curry", ["q.dat", "q.rs3"], {}), "s.set": ("eeglab", ["s.fdt"], {}),
        "r.lay": ("persyst", ["r.dat"], {}),
        "x.ds": ("ctf", [], {}), "y.mff": ("egi_mff", [], {}),
    }
    assert ignored == ["orphan.fdt", "orphan.vmrk"]
    assert dirs == ["x.ds", "y.mff"]
    found = discover(tmp_path)
    assert sorted(s.relpath for s in found.sources if s.format in ("ctf", "egi_mff")) == ["x.ds", "y.mff"]
    assert not any("x.ds/" in s.relpath or "y.mff/" in s.relpath for s in found.sources)


def test_registry_brainvision_and_nihon_kohden(tmp_path):
    header = "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=DATA.EEG\nMarkerFile=marks.vmrk\n"
    (tmp_path / "rec.vhdr").write_text(header)
    _touch(tmp_path, "DATA.EEG", "marks.vmrk", "NK1.EEG", "NK1.PNT", "NK1.LOG", "NK1.21E", "plain.eeg")
    _touch(tmp_path, "nk2.eeg", content=b"EEG-1200A V01.00" + b"\0" * 32)
    entries, ignored, _ = _scan(tmp_path)
    assert entries == {
        "rec.vhdr": ("brainvision", ["DATA.EEG", "marks.vmrk"], {"data": "DATA.EEG", "markers": "marks.vmrk"}),
        "NK1.EEG": ("nihon_kohden", ["NK1.21E", "NK1.LOG", "NK1.PNT"], {}),
        "nk2.eeg": ("nihon_kohden", [], {}),
    }
    assert ignored == ["plain.eeg"]  # a lower-case .eeg nobody names and without NK signature


def test_brainvision_header_naming_a_missing_file(tmp_path):
    # The header's names are kept as companions even when missing (validation names them
    # without parsing the header again), but a missing file is not one of the recording's files.
    header = "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=gone.eeg\n"
    (tmp_path / "rec.vhdr").write_text(header)
    _touch(tmp_path, "rec.vmrk", "not_a_header.vhdr")
    (other, source) = discover(tmp_path).sources  # in path order
    assert source.companions == {"data": tmp_path / "gone.eeg", "markers": tmp_path / "rec.vmrk"}
    assert sorted(p.name for p in source.files) == ["rec.vhdr", "rec.vmrk"]
    assert other.path.name == "not_a_header.vhdr" and other.companions == {}


def test_registry_cnt_flavours(tmp_path):
    _touch(tmp_path, "ant.cnt", content=b"RIFF" + b"\0" * 60)
    _touch(tmp_path, "ant64.cnt", content=b"RF64" + b"\0" * 60)
    _touch(tmp_path, "neuroscan.cnt", content=b"Version 3.0\0" + b"\0" * 60)
    entries, _, _ = _scan(tmp_path)
    assert {k: v[0] for k, v in entries.items()} == {"ant.cnt": "ant", "ant64.cnt": "ant", "neuroscan.cnt": "cnt"}


def test_registry_kit_companions(tmp_path):
    _touch(tmp_path, "run1.con", "run1_mrk_pre.mrk", "run1_mrk_post.mrk", "points.elp", "head.hsp", "other.txt")
    entries, ignored, _ = _scan(tmp_path)
    assert entries == {"run1.con": ("kit", [], {"mrk": "run1_mrk_post.mrk", "mrk2": "run1_mrk_pre.mrk",
                                                 "elp": "points.elp", "hsp": "head.hsp"})}
    assert ignored == ["other.txt"]


def test_registry_bti_folder(tmp_path):
    _touch(tmp_path, "c,rfDC", "config", "hs_file", "e,rfhp1.0Hz,COH")
    entries, ignored, _ = _scan(tmp_path)
    assert entries == {
        "c,rfDC": ("bti", [], {"config": "config", "head_shape": "hs_file"}),
        "e,rfhp1.0Hz,COH": ("bti", [], {"config": "config", "head_shape": "hs_file"}),
    }
    assert ignored == []


def test_registry_fif_rules(tmp_path):
    _touch(tmp_path, "a_raw.fif", "a_raw-1.fif", "a_raw-2.fif", "a-eve.fif",
           "sub-01_task-x_split-01_meg.fif", "sub-01_task-x_split-02_meg.fif",
           "b-epo.fif", "b-ave.fif", "b-cov.fif", "b-fwd.fif", "b-inv.fif", "b-trans.fif",
           "b_ica.fif", "lonely-eve.fif")
    entries, ignored, _ = _scan(tmp_path)
    assert entries == {
        "a_raw.fif": ("fif", ["a_raw-1.fif", "a_raw-2.fif"], {"events": "a-eve.fif"}),
        "sub-01_task-x_split-01_meg.fif": ("fif", ["sub-01_task-x_split-02_meg.fif"], {}),
    }
    assert ignored == ["b-ave.fif", "b-cov.fif", "b-epo.fif", "b-fwd.fif", "b-inv.fif", "b-trans.fif",
                       "b_ica.fif", "lonely-eve.fif"]
    assert fif_kind("x_raw_sss.fif") == "raw" and fif_kind("x_eve.fif") == "events"


def test_registry_montage_companions(tmp_path):
    _touch(tmp_path, "s1.vhdr", "s1.elc", "s2.edf", "cap.bvct")
    entries, ignored, _ = _scan(tmp_path)
    assert entries["s1.vhdr"][2] == {"montage": "s1.elc"}  # same stem wins
    assert entries["s2.edf"][2] == {}  # two montage files and none with its stem: ambiguous
    assert ignored == ["cap.bvct"]
    meg = tmp_path / "meg"
    _touch(meg, "r.sqd", "cap.elc")
    entries, ignored, _ = _scan(meg)
    assert entries["r.sqd"][2] == {} and ignored == ["cap.elc"]  # MEG formats take no EEG montage


def test_every_format_has_an_mne_reader():
    for key, spec in FORMATS.items():
        assert get_format(key) is spec
        assert callable(read_function(key)), key
    with pytest.raises(ValueError, match=r"Invalid value for the 'format' parameter.*'edff'.*Did you mean 'edf'"):
        get_format("edff")
