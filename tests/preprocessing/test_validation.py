"""Checks before reading: truncated and fake EDF, orphan BrainVision headers, EEGLAB without .fdt."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from brainfm.data.recording import Identity
from brainfm.errors import (
    DataQualityError,
    ReadError,
    RecordingTooShortError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from brainfm.preprocessing.readers import open_raw
from brainfm.preprocessing.run import preprocess
from brainfm.preprocessing.source import Source
from brainfm.preprocessing.validation import (
    MNE_EDF_SIZE_WARNING,
    check_brainvision,
    check_cnt,
    check_edf,
    check_eeglab,
    check_kit,
    check_sampling_rate,
    describe_bytes,
    validate_source,
)


def write_edf(path: Path, n_records: int, *, n_signals: int = 2, samples: int = 10, declared: int | None = None) -> Path:
    """Write a minimal EDF: ``n_records`` records of 1 s, ``samples`` int16 samples per signal."""
    def field(value, width):
        return str(value).ljust(width)[:width].encode("ascii")

    header = b"".join([
        field(0, 8), field("X X X X", 80), field("Startdate 01-JAN-2020 X X X", 80),
        field("01.01.20", 8), field("00.00.00", 8), field(256 * (n_signals + 1), 8), field("", 44),
        field(n_records if declared is None else declared, 8), field(1, 8), field(n_signals, 4),
    ])
    per_signal = [
        (16, [f"C{i}" for i in range(n_signals)]), (80, [""] * n_signals), (8, ["uV"] * n_signals),
        (8, [-3200] * n_signals), (8, [3200] * n_signals), (8, [-32768] * n_signals),
        (8, [32767] * n_signals), (80, [""] * n_signals), (8, [samples] * n_signals), (32, [""] * n_signals),
    ]
    for width, values in per_signal:
        header += b"".join(field(v, width) for v in values)
    data = np.zeros(n_records * n_signals * samples, dtype="<i2").tobytes()
    path.write_bytes(header + data)
    return path


def _source(path: Path, fmt: str, files=None) -> Source:
    return Source(path=path, relpath=path.name, format=fmt, files=files or [path], dataset="t",
                  identity=Identity("t"), recording_id=f"t_{path.stem}")


def test_truncated_edf_from_the_shared_data(shared_data):
    """MNE warns that the file size disagrees with the header and reads 57 s: brainfm refuses it."""
    path = shared_data / "corrupt" / "truncated_S001R05.edf"
    check_edf(path, bdf=False)  # the header itself is fine
    with pytest.raises(TruncatedFileError, match=r"truncated_S001R05\.edf is truncated: its header declares "
                       r"125 data records of 1 s \(125 s\) but the file holds only 57 complete records \(57 s"):
        open_raw(_source(path, "edf"))


def test_text_file_named_edf(shared_data):
    path = shared_data / "corrupt" / "not_really.edf"
    with pytest.raises(UnsupportedFormatError, match=r"not_really\.edf is not a valid EDF file.*"
                       r"first bytes are text: 'this is not an EDF file'"):
        validate_source(_source(path, "edf"))


def test_orphan_brainvision_header(shared_data):
    path = shared_data / "corrupt" / "orphan_header.vhdr"
    with pytest.raises(ReadError, match=r"orphan_header\.vhdr names the data file 'missing_data_file\.eeg', "
                       r"which does not exist"):
        validate_source(_source(path, "brainvision"))


def test_real_files_pass(shared_data):
    check_edf(shared_data / "eeg" / "eegmmidb" / "S001R03.edf", bdf=False)
    check_edf(shared_data / "eeg" / "bdf" / "multiple_annotation_chans.bdf", bdf=True)
    check_brainvision(shared_data / "eeg" / "brainvision" / "bv_dig_test.vhdr")
    check_eeglab(shared_data / "eeg" / "eeglab" / "test_raw_chanloc.set")


def test_synthetic_edf_truncation(tmp_path):
    open_raw(_source(write_edf(tmp_path / "ok.edf", 5), "edf"))
    path = write_edf(tmp_path / "cut.edf", 3, declared=5)
    check_edf(path)
    with pytest.raises(TruncatedFileError, match=r"declares 5 data records of 1 s \(5 s\) but the file holds only 3"):
        open_raw(_source(path, "edf"))
    # -1: unknown length (the recording was not closed) is read as MNE reads it, with its warning
    raw, messages, _ = open_raw(_source(write_edf(tmp_path / "open.edf", 3, declared=-1), "edf"))
    assert raw.n_times == 30 and any(m.startswith(MNE_EDF_SIZE_WARNING) for m in messages)
    data = (tmp_path / "ok.edf").read_bytes()
    (tmp_path / "short_header.edf").write_bytes(data[:300])
    with pytest.raises(TruncatedFileError, match="truncated inside its header"):
        check_edf(tmp_path / "short_header.edf")


def test_edf_without_samples_is_refused(tmp_path):
    """An EDF with no data record was stored as a 0.0-second recording."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_edf(folder / "none.edf", 0)
    with pytest.raises(RecordingTooShortError, match=r"none\.edf holds no data: its header declares 0 data records"):
        check_edf(folder / "none.edf")
    # -1 (not closed) with no record written: MNE reads 0 samples, the pipeline refuses them
    write_edf(folder / "none.edf", 0, declared=-1)
    summary = preprocess(folder, tmp_path / "s.zarr")
    assert summary.processed == [] and summary.exit_status == 1
    assert "none.edf: the recording lasts 0 s (0 samples at 10 Hz), too few samples" in summary.failed[0]["error"]


def test_edf_and_bdf_headers_are_told_apart(tmp_path, shared_data):
    bdf = shared_data / "eeg" / "bdf" / "multiple_annotation_chans.bdf"
    named_edf = tmp_path / "biosemi.edf"
    shutil.copyfile(bdf, named_edf)
    with pytest.raises(UnsupportedFormatError, match=r"biosemi\.edf is not a valid EDF file.*a BDF header"):
        validate_source(_source(named_edf, "edf"))
    with pytest.raises(UnsupportedFormatError, match=r"not a valid BDF file.*an EDF header"):
        check_edf(write_edf(tmp_path / "x.bdf", 1), bdf=True)


def test_damaged_edf_header_field(tmp_path):
    path = write_edf(tmp_path / "bad.edf", 2)
    data = bytearray(path.read_bytes())
    data[236:244] = b"lots    "
    path.write_bytes(bytes(data))
    with pytest.raises(UnsupportedFormatError, match="damaged EDF header"):
        check_edf(path)


def test_empty_and_random_files(tmp_path):
    empty = tmp_path / "empty.edf"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedFormatError, match=r"empty\.edf is empty \(0 bytes\)"):
        validate_source(_source(empty, "edf"))
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    for name, fmt, message in [
        ("noise.gdf", "gdf", r"noise\.gdf is not a GDF file: its first bytes are binary"),
        ("noise.set", "eeglab", r"noise\.set is not an EEGLAB dataset.*binary"),
        ("noise.fif", "fif", r"noise\.fif is not a FIF file"),
        ("noise.vhdr", "brainvision", r"noise\.vhdr is not a BrainVision header"),
    ]:
        (tmp_path / name).write_bytes(noise)
        with pytest.raises(UnsupportedFormatError, match=message):
            validate_source(_source(tmp_path / name, fmt))


def test_brainvision_missing_marker_file(tmp_path, shared_data):
    src = shared_data / "eeg" / "brainvision"
    for name in ("bv_dig_test.vhdr", "bv_dig_test.eeg"):
        shutil.copyfile(src / name, tmp_path / name)
    with pytest.raises(ReadError, match=r"names the marker file 'bv_dig_test\.vmrk', which does not exist"):
        check_brainvision(tmp_path / "bv_dig_test.vhdr")


@pytest.mark.parametrize("set_name", ["renamed.set", "test_raw_chanloc.set"])
def test_eeglab_without_its_fdt(tmp_path, shared_data, set_name):
    # renamed.set: MNE refuses it (no .fdt under either name); test_raw_chanloc.set: MNE opens
    # it and would fail only when loading the data. Both fail on reading, naming the .fdt.
    shutil.copyfile(shared_data / "eeg" / "eeglab" / "test_raw_chanloc.set", tmp_path / set_name)
    assert validate_source(_source(tmp_path / set_name, "eeglab")) == []  # the header is fine
    with pytest.raises(ReadError, match=rf"EEGLAB dataset .*{set_name} keeps its data in "
                       r"'test_raw_chanloc\.fdt', which does not exist"):
        _read_eeglab(tmp_path)


def test_persyst_without_its_dat(tmp_path):
    lay = tmp_path / "x.lay"
    lay.write_text("[FileInfo]\nFile=x.dat\n")
    with pytest.raises(ReadError, match=r"x\.lay needs its Persyst data \(\.dat\) file"):
        validate_source(_source(lay, "persyst"))


def test_missing_source():
    with pytest.raises(ReadError, match="does not exist"):
        validate_source(_source(Path("/nonexistent/x.edf"), "edf"))


def test_describe_bytes():
    assert describe_bytes(b"") == "nothing (the file is empty)"
    assert describe_bytes(b"hello world\n") == "text: 'hello world'"
    assert describe_bytes(bytes([0, 1, 255])) == "binary: 00 01 ff"


# --- each recording is read once ---------------------------------------------------------------

@pytest.fixture
def count_eeglab_decodes(monkeypatch):
    """Count how often scipy decodes the ``EEG`` struct of a MATLAB v5 file (every .set
    loader, MNE's pymatreader path and a direct ``scipy.io.loadmat``, goes through it)."""
    from scipy.io.matlab import _mio5

    counts = {"EEG": 0}
    original = _mio5.MatFile5Reader.read_var_array

    def read_var_array(self, header, process=True):
        if header.name == b"EEG":
            counts["EEG"] += 1
        return original(self, header, process)

    monkeypatch.setattr(_mio5.MatFile5Reader, "read_var_array", read_var_array)
    return counts


def _read_eeglab(folder: Path):
    from brainfm.preprocessing.discover import discover
    from brainfm.preprocessing.readers import read_source

    (source,) = [s for s in discover(folder).sources if s.format == "eeglab"]
    return read_source(source)


@pytest.mark.parametrize("set_name", ["test_raw_chanloc.set", "renamed.set"])
def test_eeglab_set_is_read_once(tmp_path, shared_data, count_eeglab_decodes, set_name):
    """Validation must not decode the .set a second time: MNE's one read is all there is.

    ``renamed.set`` keeps naming ``test_raw_chanloc.fdt`` inside, so no .fdt has its stem:
    the case where validation used to load the whole struct to find the data file's name.
    """
    src = shared_data / "eeg" / "eeglab"
    reference = _read_eeglab(src)
    count_eeglab_decodes["EEG"] = 0
    shutil.copyfile(src / "test_raw_chanloc.set", tmp_path / set_name)
    shutil.copyfile(src / "test_raw_chanloc.fdt", tmp_path / "test_raw_chanloc.fdt")
    result = _read_eeglab(tmp_path)
    assert count_eeglab_decodes["EEG"] == 1
    assert result.channels.equals(reference.channels)
    assert result.events.equals(reference.events)
    assert result.warnings == reference.warnings
    assert np.array_equal(result.raw.get_data(), reference.raw.get_data())


@pytest.fixture
def count_opens(monkeypatch):
    """Count the opens of files by suffix (``open`` and ``Path.open``, which calls ``io.open``)."""
    import builtins
    import io

    counts: dict[str, int] = {}
    original = io.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)):
            suffix = Path(file).suffix.lower()
            counts[suffix] = counts.get(suffix, 0) + 1
        return original(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    return counts


@pytest.mark.parametrize("folder", ["eeg/brainvision", "bids/tiny-eeg"])
def test_brainvision_header_is_parsed_once_by_brainfm(shared_data, count_opens, folder):
    """Discovery parses the .vhdr for its data and marker files; validation reuses that."""
    import mne

    from brainfm.preprocessing.discover import discover
    from brainfm.preprocessing.readers import read_source

    (source,) = [s for s in discover(shared_data / folder).sources if s.format == "brainvision"]
    by_brainfm_discovery = count_opens.pop(".vhdr")
    read_source(source)
    by_read_source = count_opens.pop(".vhdr")
    mne.io.read_raw_brainvision(source.path, verbose="error")
    by_mne = count_opens.pop(".vhdr")
    assert by_brainfm_discovery == 1
    assert by_read_source == by_mne  # reading opens the header only as often as MNE itself does


# --- validate_source returns a list for every format -------------------------------------------

_VHDR = "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=x.eeg\nMarkerFile=x.vmrk\n"
#: For each format, a folder that discovery turns into one recording of it and that passes
#: validation (signatures and member files only: the readers would refuse most of these).
_PASSING_FILES: dict[str, dict[str, bytes]] = {
    "edf": {},  # written by write_edf
    "bdf": {},  # written by write_edf, BioSemi header
    "gdf": {"x.gdf": b"GDF 2.20" + bytes(248)},
    "brainvision": {"x.vhdr": _VHDR.encode(), "x.eeg": bytes(8), "x.vmrk": b"Brain Vision Data Exchange Marker File\n"},
    "eeglab": {"x.set": b"MATLAB 5.0 MAT-file" + bytes(109), "x.fdt": bytes(8)},
    "fif": {"x_raw.fif": b"\x00\x00\x00\x64" + bytes(60)},
    "cnt": {"x.cnt": b"Version 3.0\0" + bytes(60)},
    "ant": {"x.cnt": b"RIFF" + bytes(60)},
    "egi_mff": {"x.mff/info.xml": b"<info/>"},
    "egi_raw": {"x.raw": bytes(64)},
    "ctf": {"x.ds/x.meg4": bytes(8), "x.ds/x.res4": bytes(8)},
    "kit": {"x.sqd": bytes(64)},
    "bti": {"c,rfDC": bytes(64), "config": bytes(64)},
    "persyst": {"x.lay": b"[FileInfo]\nFile=x.dat\n", "x.dat": bytes(8)},
    "nihon_kohden": {"x.EEG": b"EEG-1200A V01.00" + bytes(48)},
    "nedf": {"x.nedf": b"<nedf/>"},
    "eximia": {"x.nxe": bytes(64)},
    "nicolet": {"x.data": bytes(64), "x.head": b"num_channels=1\n"},
    "curry": {"x.cdt": bytes(64), "x.cdt.dpa": b"x"},
    "nsx": {"x.ns5": bytes(64)},
    "braintreebank": {
        "all_subject_data/sub_1_trial000.h5": b"\x89HDF\r\n\x1a\n" + bytes(56),
        "electrode_labels/sub_1/electrode_labels.json": b'["A1"]',
        "localization/sub_1/depth-wm.csv": b"Electrode,L,I,P\nA1,1,2,3\n",
    },
}


def test_every_format_has_a_passing_example():
    from brainfm.preprocessing.formats import FORMATS

    assert set(_PASSING_FILES) == set(FORMATS)


@pytest.mark.parametrize("fmt", sorted(_PASSING_FILES))
def test_validate_source_returns_a_list(tmp_path, fmt):
    from brainfm.preprocessing.discover import discover

    if fmt in ("edf", "bdf"):
        path = write_edf(tmp_path / f"x.{fmt}", 2)
        if fmt == "bdf":  # same layout, BioSemi version field and 3 bytes per sample
            data = bytearray(path.read_bytes()[:768])
            data[:8] = b"\xffBIOSEMI"
            path.write_bytes(bytes(data) + bytes(2 * 2 * 10 * 3))
    for name, content in _PASSING_FILES[fmt].items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    (source,) = discover(tmp_path).sources
    assert source.format == fmt
    assert validate_source(source) == []


def test_kit_cut_short_is_truncated(tmp_path, shared_data):
    original = shared_data / "meg" / "kit" / "test.sqd"
    check_kit(original)  # the intact file passes
    cut = tmp_path / "test.sqd"
    cut.write_bytes(original.read_bytes()[:400_000])  # MNE would read the missing samples as zeros
    with pytest.raises(TruncatedFileError, match=r"test\.sqd is truncated: its header declares 768000 bytes of "
                       r"samples from byte 58996, but the file ends after 400000 bytes \(44% of the samples\)"):
        validate_source(_source(cut, "kit"))


@pytest.mark.parametrize(("keep", "message"), [
    (700_000, r"its header puts the event table at byte 1151171, after the samples, but the file ends after "
              r"700000 bytes, so samples or events are missing"),
    (1_151_300, r"its event table runs from byte 1151171 to byte 1151598, but the file ends after 1151300 "
                r"bytes, so events are missing"),
])
def test_cnt_cut_before_the_end_of_its_event_table(tmp_path, shared_data, keep, message):
    original = shared_data / "eeg" / "cnt" / "test_CNT_events_mne_JWoess_clipped.cnt"
    check_cnt(original)
    cut = tmp_path / "x.cnt"
    cut.write_bytes(original.read_bytes()[:keep])  # MNE drops a cut-off event table without a word
    with pytest.raises(TruncatedFileError, match=rf"x\.cnt is truncated: {message}"):
        validate_source(_source(cut, "cnt"))


def test_sampling_rate_range():
    for sfreq in (1.0, 160.0, 1e6):
        check_sampling_rate(sfreq, Path("x.edf"))
    for sfreq in (0.0, -1.0, 0.999, 1.0001e6, float("nan"), float("inf")):
        with pytest.raises(DataQualityError, match=r"x\.edf declares a sampling rate of .* outside the 1 Hz to 1e\+06 Hz"):
            check_sampling_rate(sfreq, Path("x.edf"))
