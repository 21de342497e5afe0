"""Checks that run before a reader opens a file, for the failures MNE misses or words badly.

* EDF/BDF: the header must be an EDF or BDF header whose fields are numbers and which is
  complete. Whether the file holds the data records the header declares MNE itself says, in a
  warning ("Number of records from the header does not match the file size"), and then reads
  what is there (``truncated_S001R05.edf`` gives 57 of 125 s): :func:`check_edf_records` turns
  that warning into a :class:`~brainfm.errors.TruncatedFileError` with the declared and actual
  durations, after the reader ran.
* BrainVision: the data and marker files the header names must exist. Discovery parsed the
  header and kept those names as the ``data`` and ``markers`` companions; the header is not
  parsed again unless a source lacks them.
* EEGLAB: the ``.set`` must be a MATLAB file. Whether its data live in a separate ``.fdt``
  only a full decode of the ``.set`` says; the reader does that decode once and a missing
  ``.fdt`` is reported from its error (:func:`eeglab_data_error`).
* Persyst / Nicolet: the ``.dat`` / ``.head`` file must exist.
* KIT: the file must hold the samples its raw-data directory entry declares (MNE reads the
  missing part as zeros). Neuroscan CNT: the file must reach the end of the event table its
  header points to (the samples lie before it; MNE drops a cut-off event table silently).
* Every file-based format: an empty file (the entry or any data file of the recording: a
  BrainVision ``.eeg``, an EEGLAB ``.fdt``), or a file whose first bytes are not the format's
  signature (GDF, FIF, MATLAB for EEGLAB), is an :class:`~brainfm.errors.UnsupportedFormatError`
  quoting what the bytes look like.

After the reader has opened the file, :func:`validate_opened` checks what only the opened
header tells: a sampling rate outside :data:`SFREQ_RANGE_HZ` (a damaged header: resampling
1e-6 Hz to 256 Hz would ask for terabytes, 1e15 Hz would leave one sample), and an EEGLAB
``.fdt`` holding fewer samples than the ``.set`` declares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from brainfm.errors import (
    DataQualityError,
    ReadError,
    RecordingTooShortError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from brainfm.preprocessing.formats import DATA_EXTENSIONS, _ext, get_format, read_brainvision_header
from brainfm.preprocessing.source import Source

__all__ = [
    "MNE_EDF_SIZE_WARNING",
    "SFREQ_RANGE_HZ",
    "check_brainvision",
    "check_cnt",
    "check_edf",
    "check_edf_records",
    "check_eeglab",
    "check_kit",
    "check_sampling_rate",
    "describe_bytes",
    "eeglab_data_error",
    "validate_opened",
    "validate_source",
]

#: Sampling rates (Hz) an EEG, MEG or intracranial recording can have: slower than 1 Hz
#: samples nothing these signals hold; no amplifier records them at more than 1 MHz.
SFREQ_RANGE_HZ = (1.0, 1e6)

_EDF_HEADER = 256
_EDF_SIGNAL_HEADER = 256  # bytes per signal in the header (16+80+8*6+80+8+32)
#: The start of the warning MNE's EDF/BDF reader gives when the file size disagrees with the header.
MNE_EDF_SIZE_WARNING = "Number of records from the header does not match the file size"


def describe_bytes(data: bytes) -> str:
    """Say what the first bytes of a file look like, for error messages.

    Parameters
    ----------
    data : bytes
        The first bytes of a file.

    Returns
    -------
    description : str
        ``"text: 'this is not an EDF file'"`` or ``"binary: 00 01 ff ..."``, or ``"nothing
        (the file is empty)"``.
    """
    if not data:
        return "nothing (the file is empty)"
    head = data[:48]
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"text: {text.strip()!r}"
    return "binary: " + " ".join(f"{b:02x}" for b in head[:16])


def _read_head(path: Path, n: int) -> bytes:
    try:
        with Path(path).open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise ReadError(f"Could not open {path}: {exc.strerror or exc}.") from exc


def _field(header: bytes, start: int, stop: int) -> str:
    return header[start:stop].decode("ascii", errors="replace").strip()


def check_edf(path: Path, *, bdf: bool | None = None) -> None:
    """Check that an EDF/EDF+/BDF header is one, is complete and holds numbers.

    That the file holds every declared data record is checked after reading, from MNE's own
    warning (:func:`check_edf_records`).

    Parameters
    ----------
    path : pathlib.Path
        The ``.edf`` / ``.bdf`` file.
    bdf : bool | None
        Expect a BDF (24-bit) file; ``None`` accepts either.

    Raises
    ------
    UnsupportedFormatError
        When the header is not an EDF/BDF header, or a numeric field holds no number.
    TruncatedFileError
        When the file ends inside its header.
    RecordingTooShortError
        When the header declares no data record.
    """
    path = Path(path)
    head = _read_head(path, _EDF_HEADER)
    is_bdf = head[:8] == b"\xffBIOSEMI"
    is_edf = head[:1] == b"0" and head[1:8].strip(b" \x00") == b""
    kind = "BDF" if bdf else "EDF" if bdf is False else "EDF/BDF"
    if len(head) < _EDF_HEADER or not (is_bdf or is_edf) or (bdf is True and not is_bdf) or (bdf is False and not is_edf):
        found = "a BDF header" if is_bdf else "an EDF header" if is_edf else describe_bytes(head)
        expected = "'0' (EDF)" if bdf is False else "0xFF 'BIOSEMI' (BDF)" if bdf else "'0' or 0xFF 'BIOSEMI'"
        raise UnsupportedFormatError(
            f"{path} is not a valid {kind} file: it should start with a 256-byte header whose "
            f"version field is {expected}, but its first bytes are {found}. Remove the file or "
            "give it the extension of its real format."
        )
    kind = "BDF" if is_bdf else "EDF"
    try:
        header_bytes = int(_field(head, 184, 192))
        n_records = int(_field(head, 236, 244))
        float(_field(head, 244, 252))  # record duration
        n_signals = int(_field(head, 252, 256))
    except ValueError as exc:
        raise UnsupportedFormatError(
            f"{path} has a damaged {kind} header: a numeric field does not hold a number ({exc}). "
            "Re-export the file from its source."
        ) from exc
    header = _read_head(path, header_bytes)
    if n_signals <= 0 or len(header) < _EDF_HEADER + n_signals * _EDF_SIGNAL_HEADER:
        raise TruncatedFileError(
            f"{path} is truncated inside its header ({len(header)} of {header_bytes} header bytes, "
            f"{n_signals} signals declared). Re-download or re-export the file."
        )
    offset = _EDF_HEADER + n_signals * 216
    for i in range(n_signals):
        try:
            int(_field(header, offset + 8 * i, offset + 8 * (i + 1)))
        except ValueError as exc:
            raise UnsupportedFormatError(
                f"{path} has a damaged {kind} header: the samples-per-record fields are not numbers "
                f"({exc}). Re-export the file from its source."
            ) from exc
    if n_records == 0:
        raise RecordingTooShortError(
            f"{path} holds no data: its header declares 0 data records (0 s). It is refused rather "
            "than stored as an empty recording; re-export it from its source, or remove it."
        )


def check_edf_records(path: Path, raw: Any, messages: list[str]) -> None:
    """Turn MNE's EDF/BDF file-size warning into an error when the file is truncated.

    MNE's reader compares the number of data records the header declares with the number the
    file size allows; when they differ it warns and reads what the file holds. Fewer records
    than declared is a truncated file (an interrupted copy or download), which brainfm refuses
    rather than store a silently shortened recording. More records than declared, or a header
    saying -1 (the recording was not closed), are read as MNE reads them; the warning stays in
    ``messages`` (the provenance).

    Parameters
    ----------
    path : pathlib.Path
        The ``.edf`` / ``.bdf`` file.
    raw : mne.io.BaseRaw
        What MNE's reader returned for it.
    messages : list of str
        What the reader warned (as :func:`brainfm.preprocessing.readers.capture_messages` collected it).

    Raises
    ------
    TruncatedFileError
        When the file holds fewer complete data records than its header declares.
    """
    if not any(m.startswith(MNE_EDF_SIZE_WARNING) for m in messages):
        return
    path = Path(path)
    declared = int(_field(_read_head(path, _EDF_HEADER), 236, 244))
    extras = raw._raw_extras[0]
    held = int(extras["n_records"])
    if declared < 0 or held >= declared:
        return
    record_s = float(extras["record_length"][0])
    record_bytes = int(sum(int(n) for n in extras["n_samps"])) * int(extras["dtype_byte"])
    expected = int(extras["data_offset"]) + declared * record_bytes
    raise TruncatedFileError(
        f"{path} is truncated: its header declares {declared} data records of {record_s:g} s "
        f"({declared * record_s:g} s) but the file holds only {held} complete records "
        f"({held * record_s:g} s; {path.stat().st_size} of {expected} bytes). Re-download or re-export "
        "the file; brainfm does not store a silently shortened recording."
    )


def _int(data: bytes, start: int, dtype: str) -> int:
    import numpy as np

    return int(np.frombuffer(data, dtype=dtype, count=1, offset=start)[0])


def check_kit(path: Path) -> None:
    """Check that a KIT ``.sqd`` / ``.con`` file holds every sample its header declares.

    The file starts with a directory of 16-byte entries (offset, element size, maximum
    count, count); entry 9 describes the raw data. MNE reads samples past the end of a cut
    file as zeros, so the check is brainfm's.

    Parameters
    ----------
    path : pathlib.Path
        The KIT file.

    Raises
    ------
    TruncatedFileError
        When the raw data the header declares end after the end of the file.
    """
    path = Path(path)
    size = path.stat().st_size
    head = _read_head(path, 16 * 10)
    if len(head) < 16 * 10:
        return  # too short for a directory: the reader's error says more
    # entry 0 describes the directory itself: offset 0, 16-byte entries, at least 10 of them
    is_directory = _int(head, 0, "<u4") == 0 and _int(head, 4, "<i4") == 16 and _int(head, 12, "<i4") >= 10
    offset, element, count = _int(head, 144, "<u4"), _int(head, 148, "<i4"), _int(head, 156, "<i4")
    if not is_directory or offset <= 0 or element not in (2, 4) or count <= 0:
        return  # not a KIT directory, or no raw data entry: left to the reader
    end = offset + element * count
    if size < end:
        held = max(size - offset, 0) / (element * count)
        raise TruncatedFileError(
            f"{path} is truncated: its header declares {element * count} bytes of samples from byte "
            f"{offset}, but the file ends after {size} bytes ({held:.0%} of the samples). "
            "Re-download or re-export the file; brainfm does not store a silently shortened recording."
        )


def check_cnt(path: Path) -> None:
    """Check that a Neuroscan CNT file reaches the end of the event table its header points to.

    The header's ``EventTablePos`` (byte 886) is where the samples end and the event table
    begins; the table starts with a 9-byte descriptor whose bytes 1-4 give its length. MNE
    reads a file cut after its samples without the events and without a word.

    Parameters
    ----------
    path : pathlib.Path
        The ``.cnt`` file.

    Raises
    ------
    TruncatedFileError
        When the file ends before its event table does.
    """
    path = Path(path)
    size = path.stat().st_size
    head = _read_head(path, 900)
    if len(head) < 900:
        return  # shorter than the fixed header: the reader's error says where it stopped
    n_channels = _int(head, 370, "<u2")
    table = _int(head, 886, "<i4")
    if not head.startswith(b"Version") or table < 900 + 75 * n_channels:
        return  # not a Scan 4 header, or no event table position: the reader decides
    if size < table:
        raise TruncatedFileError(
            f"{path} is truncated: its header puts the event table at byte {table}, after the samples, "
            f"but the file ends after {size} bytes, so samples or events are missing. Re-download or "
            "re-export the file; brainfm does not store a silently shortened recording."
        )
    descriptor = b""
    if size >= table + 9:
        with path.open("rb") as fh:
            fh.seek(table)
            descriptor = fh.read(9)
    end = table + 9 + (_int(descriptor, 1, "<i4") if len(descriptor) == 9 else 0)
    if size < end:
        raise TruncatedFileError(
            f"{path} is truncated: its event table runs from byte {table} to byte {end}, but the file "
            f"ends after {size} bytes, so events are missing. Re-download or re-export the file; brainfm "
            "does not store a recording that silently lost its events."
        )


def check_sampling_rate(sfreq: float, path: Path) -> None:
    """Refuse a sampling rate outside :data:`SFREQ_RANGE_HZ` (a damaged header).

    Parameters
    ----------
    sfreq : float
        The rate the reader found, in Hz.
    path : pathlib.Path
        The recording, for the message.

    Raises
    ------
    DataQualityError
        When the rate is not a finite number within the range.
    """
    low, high = SFREQ_RANGE_HZ
    if not (math.isfinite(sfreq) and low <= sfreq <= high):
        raise DataQualityError(
            f"{path} declares a sampling rate of {sfreq:g} Hz, outside the {low:g} Hz to {high:g} Hz "
            "that EEG, MEG and intracranial recordings have: its header is damaged (or the file is "
            "not what its extension says). Fix the rate in the header or re-export the file."
        )


def _check_eeglab_data(raw: Any, path: Path) -> None:
    """An EEGLAB ``.fdt`` must hold the float32 samples (channels x points) the ``.set`` declares."""
    data_files = [Path(f) for f in getattr(raw, "filenames", ()) if f is not None]
    if not data_files or data_files[0].suffix.lower() != ".fdt" or not data_files[0].is_file():
        return  # data inside the .set: MATLAB's own structure, checked by the reader
    fdt = data_files[0]
    expected = len(raw.ch_names) * raw.n_times * 4
    size = fdt.stat().st_size
    if size < expected:
        raise TruncatedFileError(
            f"The EEGLAB dataset {path} declares {len(raw.ch_names)} channels x {raw.n_times} points "
            f"({raw.n_times / raw.info['sfreq']:g} s, {expected} bytes of float32) but its data file "
            f"{fdt.name} holds {size} bytes ({size / expected:.0%}). Re-export the dataset from EEGLAB "
            "or restore the complete .fdt file."
        )


def validate_opened(source: Source, raw: Any) -> None:
    """Check what the opened header tells: the sampling rate, and declared against held samples.

    Parameters
    ----------
    source : Source
        The recording.
    raw : mne.io.BaseRaw
        Its raw, opened without loading the data.

    Raises
    ------
    DataQualityError
        When the sampling rate is implausible (:func:`check_sampling_rate`).
    TruncatedFileError
        When an EEGLAB data file holds fewer samples than its ``.set`` declares.
    """
    check_sampling_rate(float(raw.info["sfreq"]), source.path)
    if source.format == "eeglab":
        _check_eeglab_data(raw, source.path)


def check_brainvision(path: Path, files: Mapping[str, Path] | None = None) -> None:
    """Check that a BrainVision header is one and that its data and marker files exist.

    Parameters
    ----------
    path : pathlib.Path
        The ``.vhdr`` / ``.ahdr`` header.
    files : mapping of str to pathlib.Path | None
        The ``"data"`` and ``"markers"`` files the header names, as discovery read them from
        it (:attr:`Source.companions`); the header is then not parsed again. ``None`` (or a
        mapping without both) parses it here.

    Raises
    ------
    UnsupportedFormatError
        When the file is not a BrainVision header.
    ReadError
        When the data or marker file it names is missing.
    """
    path = Path(path)
    if files is None or "data" not in files or "markers" not in files:
        try:
            header = read_brainvision_header(path)
        except OSError as exc:
            raise ReadError(f"Could not open {path}: {exc.strerror or exc}.") from exc
        if not header.is_header:
            raise UnsupportedFormatError(
                f"{path} is not a BrainVision header: it should start with 'Brain Vision Data "
                f"Exchange Header File', but its first bytes are {describe_bytes(header.head)}."
            )
        files = {"data": header.data_file, "markers": header.marker_file}
    for role, key, what in (("data", "DataFile", "data"), ("markers", "MarkerFile", "marker")):
        target = Path(files[role])
        if not target.is_file():
            raise ReadError(
                f"The BrainVision header {path} names the {what} file {target.name!r}, which does "
                f"not exist ({target}). A BrainVision recording is three files (.vhdr, .vmrk, .eeg) "
                f"that must stay together under the names the header gives: restore "
                f"{target.name} or fix the {key}= line of the header."
            )


def check_eeglab(path: Path) -> None:
    """Check that an EEGLAB ``.set`` is a MATLAB file, from its first bytes only.

    Whether the ``.set`` keeps its data in a separate ``.fdt`` is written inside the MATLAB
    struct, which only a full decode of the ``.set`` reveals; the reader decodes it anyway,
    so a missing ``.fdt`` is reported from the reader's error (:func:`eeglab_data_error`)
    instead of decoding the file a second time here.

    Parameters
    ----------
    path : pathlib.Path
        The ``.set`` file.

    Raises
    ------
    UnsupportedFormatError
        When the file is not a MATLAB file.
    """
    path = Path(path)
    head = _read_head(path, 128)
    if not head.startswith(b"MATLAB"):
        raise UnsupportedFormatError(
            f"{path} is not an EEGLAB dataset: a .set file is a MATLAB file starting with "
            f"'MATLAB 5.0 MAT-file' or 'MATLAB 7.3 MAT-file', but its first bytes are "
            f"{describe_bytes(head)}."
        )


def eeglab_data_error(path: Path, data_file: str) -> ReadError:
    """The error for an EEGLAB dataset whose separate data file is missing.

    Parameters
    ----------
    path : pathlib.Path
        The ``.set`` file.
    data_file : str
        The name of the data file the ``.set`` names (``EEG.data``).

    Returns
    -------
    error : ReadError
        Naming both files.
    """
    path = Path(path)
    return ReadError(
        f"The EEGLAB dataset {path} keeps its data in {data_file!r}, which does not exist "
        f"({path.parent / data_file}). Put the .fdt file next to the .set file."
    )


def _check_member(path: Path, source: Source, ext: str, what: str) -> None:
    if not any(f.suffix.lower() == ext for f in source.files if f != path):
        raise ReadError(
            f"{path} needs its {what} file ({path.stem}{ext} or the one its header names), "
            f"which is missing. Put it next to {path.name}."
        )


def _check_signature(signature: tuple[bytes, ...], what: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        head = _read_head(path, 64)
        if not head.startswith(signature):
            raise UnsupportedFormatError(
                f"{path} is not a {what} file: its first bytes are {describe_bytes(head)}. "
                "Remove it or give it the extension of its real format."
            )

    return check


_CHECKS: dict[str, Callable[[Path], None]] = {
    "edf": lambda p: check_edf(p, bdf=False),
    "bdf": lambda p: check_edf(p, bdf=True),
    "eeglab": check_eeglab,
    "gdf": _check_signature((b"GDF",), "GDF"),
    # FIF files start with the FIFF_FILE_ID tag (kind 100); .fif.gz with the gzip magic.
    "fif": _check_signature((b"\x00\x00\x00\x64", b"\x1f\x8b"), "FIF"),
    "ant": _check_signature((b"RIFF", b"RF64"), "ANT Neuro CNT"),
    "kit": check_kit,
    "cnt": check_cnt,
}


def validate_source(source: Source) -> list[str]:
    """Run the checks of a source's format before it is read.

    Parameters
    ----------
    source : Source
        The recording.

    Returns
    -------
    warnings : list of str
        Things users should know that do not stop reading (currently none are produced;
        the list keeps the signature stable).

    Raises
    ------
    ReadError
        A file is missing (or a subclass: :class:`~brainfm.errors.TruncatedFileError`,
        :class:`~brainfm.errors.UnsupportedFormatError`).
    """
    spec = get_format(source.format)
    path = Path(source.path)
    if not path.exists():
        raise ReadError(f"{path} does not exist (any more). Run discovery again.")
    if not spec.folder and path.is_file() and path.stat().st_size == 0:
        raise UnsupportedFormatError(
            f"{path} is empty (0 bytes), so it cannot be a {spec.name} recording. Remove it or "
            "replace it with the complete file."
        )
    if not spec.folder:
        for part in source.files:
            if part != path and _ext(part.name) in DATA_EXTENSIONS and part.is_file() and part.stat().st_size == 0:
                raise ReadError(
                    f"{path}: its file {part.name} is empty (0 bytes), so the recording holds no data "
                    f"(an interrupted copy or download?). Replace {part} with the complete file, or "
                    "remove the recording from the input folder."
                )
    check = _CHECKS.get(source.format)
    if check is not None:
        check(path)
    elif source.format == "brainvision":
        check_brainvision(path, source.companions)  # the files discovery read from the header
    if source.format == "persyst":
        _check_member(path, source, ".dat", "Persyst data (.dat)")
    elif source.format == "nicolet":
        _check_member(path, source, ".head", "Nicolet header (.head)")
    return []
