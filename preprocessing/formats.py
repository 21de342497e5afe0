"""The format registry: which files of a folder are recordings, in which format, with which parts.

A recording can be one file (``.edf``), a header with data files (``.vhdr`` + ``.vmrk`` +
``.eeg``; ``.set`` + ``.fdt``; ``.lay`` + ``.dat``), a folder (CTF ``.ds``, EGI ``.mff``),
or a file with companions found beside it (KIT ``.sqd`` with marker, digitiser and head-shape
files; a FIF with its MNE ``-eve.fif`` event file). :func:`scan_folder` turns one folder's
listing into :class:`Entry` objects (entry point, format key, member files, companions) and
the files it does not know, which discovery reports as ignored.

Rules worth knowing:

* Data files that belong to an entry (``.fdt``, the ``.eeg``/``.vmrk`` a ``.vhdr`` names,
  Persyst ``.dat``, Nihon Kohden ``.PNT``/``.LOG``/``.21E``, split FIF parts, everything
  inside a ``.ds``/``.mff`` folder) are members, never recordings of their own.
* ``.EEG`` (upper case) is Nihon Kohden unless a BrainVision header names it; a lower-case
  ``.eeg`` nobody names is Nihon Kohden only if its first bytes say so.
* FIF files named like MNE derivatives (``-epo``, ``-ave``, ``-cov``, ``-fwd``, ``-inv``,
  ``-trans``, ``-src``, ``-bem``, ``-sol``, ``-proj``, ``-ica``...) are not recordings; split
  parts (``x_raw-1.fif`` beside ``x_raw.fif``, BIDS ``_split-02``) are members of the first
  part; ``-eve.fif``/``_eve.fif`` attach to their raw FIF.
* A BrainVision header is parsed once, here (:func:`read_brainvision_header`): the files it
  names are its members when they exist, and its ``data`` and ``markers`` companions whether
  they exist or not, so that validation can say which one is missing without parsing the
  header again. A file that is not a BrainVision header gets no such companions.
* ``.cnt`` files starting with ``RIFF``/``RF64`` are ANT Neuro, the others Neuroscan.
* A digitisation file (``.bvct``, ``.elc``, ``.sfp``, ``.hpts``...) with the same stem as an
  EEG recording, or the only one in the folder, is that recording's ``montage`` companion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from brainfm._check import check_option

__all__ = [
    "DATA_EXTENSIONS",
    "FORMATS",
    "MONTAGE_EXTENSIONS",
    "BrainVisionHeader",
    "Entry",
    "FolderScan",
    "FormatSpec",
    "fif_kind",
    "get_format",
    "read_brainvision_header",
    "read_function",
    "scan_folder",
]


@dataclass(frozen=True)
class FormatSpec:
    """One recording format brainfm reads.

    Parameters
    ----------
    key : str
        Registry key (``"edf"``, ``"brainvision"``...), stored as ``Source.format``.
    name : str
        Human name for messages.
    reader : str
        Name of the ``mne.io`` function that opens it, or the dotted path of brainfm's own reader.
    extensions : tuple of str
        Lower-case extensions of the entry point (``".vhdr"``); empty when a rule finds it.
    folder : bool
        Whether the entry point is a folder (CTF ``.ds``, EGI ``.mff``).
    options : mapping
        Fixed keyword arguments for the reader.
    """

    key: str
    name: str
    reader: str
    extensions: tuple[str, ...] = ()
    folder: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _spec(key: str, name: str, reader: str, *extensions: str, folder: bool = False, **options: Any) -> FormatSpec:
    return FormatSpec(key, name, reader, tuple(extensions), folder, MappingProxyType(dict(options)))


#: Every format brainfm discovers, by key.
FORMATS: Mapping[str, FormatSpec] = MappingProxyType(
    {
        spec.key: spec
        for spec in (
            _spec("edf", "EDF/EDF+", "read_raw_edf", ".edf", ".rec"),
            _spec("bdf", "BDF/BDF+ (BioSemi)", "read_raw_bdf", ".bdf"),
            _spec("gdf", "GDF", "read_raw_gdf", ".gdf"),
            _spec("brainvision", "BrainVision", "read_raw_brainvision", ".vhdr", ".ahdr"),
            _spec("eeglab", "EEGLAB", "read_raw_eeglab", ".set"),
            _spec("fif", "FIF (MEGIN/Elekta, MNE)", "read_raw_fif", ".fif", ".fif.gz", allow_maxshield=True),
            _spec("cnt", "Neuroscan CNT", "read_raw_cnt", ".cnt"),
            _spec("ant", "ANT Neuro CNT", "read_raw_ant", ".cnt"),
            _spec("egi_mff", "EGI MFF", "read_raw_egi", ".mff", folder=True),
            _spec("egi_raw", "EGI simple binary", "read_raw_egi", ".raw"),
            _spec("ctf", "CTF", "read_raw_ctf", ".ds", folder=True),
            _spec("kit", "KIT/Yokogawa/Ricoh", "read_raw_kit", ".sqd", ".con"),
            _spec("bti", "BTi/4D Neuroimaging", "read_raw_bti"),
            _spec("persyst", "Persyst", "read_raw_persyst", ".lay"),
            _spec("nihon_kohden", "Nihon Kohden", "read_raw_nihon", ".eeg"),
            _spec("nedf", "NEDF (Neuroelectrics)", "read_raw_nedf", ".nedf"),
            _spec("eximia", "eXimia", "read_raw_eximia", ".nxe"),
            _spec("nicolet", "Nicolet", "read_raw_nicolet", ".data", ch_type="eeg"),
            _spec("curry", "Curry", "read_raw_curry", ".cdt", ".dap"),
            _spec("nsx", "Blackrock NSx", "read_raw_nsx", ".ns1", ".ns2", ".ns3", ".ns4", ".ns5", ".ns6"),
            # found by discovery's folder rule (brainfm.preprocessing.braintreebank), not by extension
            _spec("braintreebank", "Brain Treebank HDF5", "brainfm.preprocessing.braintreebank.read_raw_braintreebank"),
        )
    }
)

#: Extensions of recordings and of the files holding their samples or markers (not sidecars).
DATA_EXTENSIONS: frozenset[str] = frozenset(
    {ext for spec in FORMATS.values() for ext in spec.extensions}
    | {".eeg", ".fdt", ".dat", ".vmrk", ".head", ".meg4", ".pnt", ".log", ".21e"}
)

#: Digitisation / montage files that can accompany EEG recordings.
MONTAGE_EXTENSIONS: tuple[str, ...] = (".bvct", ".elc", ".sfp", ".loc", ".locs", ".eloc", ".csd", ".hpts", ".bvef", ".elp")

_MEG_FORMATS = ("ctf", "kit", "bti")
_FIF_DERIVATIVES = (
    "epo", "ave", "cov", "fwd", "inv", "trans", "sol", "src", "bem", "bem-sol", "proj",
    "ica", "morph", "annot", "tfr", "csd", "dip", "label", "surf", "head", "vol",
)
_NK_MEMBERS = (".pnt", ".log", ".21e", ".11d", ".cmt", ".cn2", ".egf", ".bft")
_CURRY_MEMBERS = (".dat", ".rs3", ".ceo", ".hpi", ".cdt.dpa", ".cdt.ceo", ".cdt.hpi", ".dpa")
_NK_SIGNATURES = (b"EEG-1100", b"EEG-1200", b"EEG-2100", b"DAE-2100", b"QI-403A")


@dataclass
class Entry:
    """One recording found in a folder.

    Parameters
    ----------
    path : pathlib.Path
        The entry point a reader opens.
    format : str
        Key of :data:`FORMATS`.
    members : list of pathlib.Path
        Data files that belong to the recording (never recordings themselves).
    companions : dict of str to pathlib.Path
        Extra files by role (``"events"``, ``"mrk"``, ``"mrk2"``, ``"elp"``, ``"hsp"``,
        ``"montage"``, ``"config"``, ``"head_shape"``; for BrainVision ``"data"`` and
        ``"markers"``, the files its header names, which may be missing).
    """

    path: Path
    format: str
    members: list[Path] = field(default_factory=list)
    companions: dict[str, Path] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """Every file of the recording: the entry (or the files of an entry folder),
        members and the companions that exist, without repeats."""
        files = sorted(p for p in self.path.rglob("*") if p.is_file()) if self.path.is_dir() else [self.path]
        for path in self.members:
            if path not in files:
                files.append(path)
        for path in self.companions.values():
            if path not in files and path.exists():
                files.append(path)
        return files


@dataclass
class FolderScan:
    """What :func:`scan_folder` found in one folder.

    Parameters
    ----------
    entries : list of Entry
        Recordings, sorted by entry path.
    recording_dirs : list of str
        Sub-folder names that are recordings themselves (not to be walked into).
    ignored : list of pathlib.Path
        Files that are neither recordings, members nor companions.
    """

    entries: list[Entry] = field(default_factory=list)
    recording_dirs: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def get_format(key: str) -> FormatSpec:
    """Return the :class:`FormatSpec` of a format key.

    Parameters
    ----------
    key : str
        A key of :data:`FORMATS`.

    Returns
    -------
    spec : FormatSpec
        The format's description.
    """
    check_option("format", key, FORMATS)
    return FORMATS[key]


def read_function(key: str) -> Any:
    """Return the ``mne.io`` reader function of a format.

    Parameters
    ----------
    key : str
        A key of :data:`FORMATS`.

    Returns
    -------
    reader : callable
        For example :func:`mne.io.read_raw_edf`; a dotted reader name is brainfm's own
        (``brainfm.preprocessing.braintreebank.read_raw_braintreebank``).
    """
    import importlib

    import mne

    reader = get_format(key).reader
    if "." in reader:
        module, _, name = reader.rpartition(".")
        return getattr(importlib.import_module(module), name)
    return getattr(mne.io, reader)


def _ext(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".fif.gz"):
        return ".fif.gz"
    return Path(lower).suffix


def _stem(name: str) -> str:
    ext = _ext(name)
    return name[: len(name) - len(ext)] if ext else name


def fif_kind(name: str) -> str:
    """Classify a FIF file name.

    Parameters
    ----------
    name : str
        File name (``"x_raw.fif"``, ``"x-eve.fif"``, ``"x-epo.fif"``).

    Returns
    -------
    kind : str
        ``"events"`` for ``-eve.fif``/``_eve.fif``, ``"derivative"`` for epochs, evoked,
        covariance, forward, inverse, transform and other non-continuous MNE files, else
        ``"raw"``.
    """
    stem = _stem(name).lower()
    if re.search(r"[-_]eve$", stem):
        return "events"
    for tag in _FIF_DERIVATIVES:
        if re.search(rf"[-_]{re.escape(tag)}$", stem):
            return "derivative"
    return "raw"


def _ini_value(text: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key}\s*=\s*(.+?)\s*$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def _head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of a file; none when it cannot be read."""
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


class _Listing:
    """Case-insensitive view of a folder's files, tracking which are claimed."""

    def __init__(self, folder: Path, files: Sequence[str]) -> None:
        self.folder = folder
        self.names = sorted(files)
        self.lower = {n.lower(): n for n in self.names}
        self.claimed: set[str] = set()

    def find(self, name: str) -> str | None:
        return name if name in self.names else self.lower.get(name.lower())

    def claim(self, name: str) -> Path:
        self.claimed.add(name)
        return self.folder / name

    def unclaimed(self) -> list[str]:
        return [n for n in self.names if n not in self.claimed]


@dataclass(frozen=True)
class BrainVisionHeader:
    """What a BrainVision header says about its files (:func:`read_brainvision_header`).

    Parameters
    ----------
    path : pathlib.Path
        The ``.vhdr`` / ``.ahdr`` header.
    is_header : bool
        Whether its first line names a BrainVision header.
    head : bytes
        Its first bytes, for error messages.
    data_file : pathlib.Path
        The data file it names (``DataFile=``, default ``<stem>.eeg``), beside the header.
    marker_file : pathlib.Path
        The marker file it names (``MarkerFile=``, default ``<stem>.vmrk``), beside the header.
    """

    path: Path
    is_header: bool
    head: bytes
    data_file: Path
    marker_file: Path


def read_brainvision_header(path: Path) -> BrainVisionHeader:
    """Parse the first line and the file names of a BrainVision header.

    Parameters
    ----------
    path : pathlib.Path
        The ``.vhdr`` / ``.ahdr`` file; must be readable.

    Returns
    -------
    header : BrainVisionHeader
        File names are taken as base names (a Windows path in the header keeps only its last
        part) in the header's folder, spelled as the header spells them.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    path = Path(path)
    with path.open("rb") as fh:
        return _parse_brainvision_header(path, fh.read(1 << 20))


def _parse_brainvision_header(path: Path, head: bytes) -> BrainVisionHeader:
    text = head.decode("latin-1")
    first = text.lstrip("\ufeff\xef\xbb\xbf").splitlines()[0] if text.strip() else ""
    names = [
        _ini_value(text, key) or _stem(path.name) + default_ext
        for key, default_ext in (("DataFile", ".eeg"), ("MarkerFile", ".vmrk"))
    ]
    data_file, marker_file = (path.parent / Path(n.replace("\\", "/")).name for n in names)
    return BrainVisionHeader(
        path=path, is_header=bool(re.search(r"brain\s*vision", first, re.IGNORECASE)), head=head[:64],
        data_file=data_file, marker_file=marker_file,
    )


def _brainvision_entry(listing: _Listing, name: str) -> Entry:
    """A BrainVision recording: the files its header names are members (when they exist here)
    and, for a real header, its ``data`` and ``markers`` companions (even when missing)."""
    entry = Entry(listing.claim(name), "brainvision")
    try:
        header = read_brainvision_header(listing.folder / name)
    except OSError:  # unreadable: the default names; validation reports the header itself
        header = _parse_brainvision_header(listing.folder / name, b"")
    for role, path in (("data", header.data_file), ("markers", header.marker_file)):
        found = listing.find(path.name)
        if found is not None and found != name:
            entry.members.append(listing.claim(found))
        if header.is_header:
            entry.companions[role] = path
    return entry


def _same_stem(listing: _Listing, name: str, extensions: Sequence[str]) -> list[str]:
    stem = _stem(name).lower()
    out = []
    for ext in extensions:
        found = listing.lower.get(stem + ext)
        if found is not None and found != name:
            out.append(found)
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.lower(), b.lower(), strict=False):
        if x != y:
            break
        n += 1
    return n


def _closest(name: str, candidates: Sequence[str], k: int = 1) -> list[str]:
    """The ``k`` candidates sharing the longest name prefix with ``name`` (ties: all of them)."""
    if not candidates:
        return []
    scores = {c: _common_prefix(name, c) for c in candidates}
    best = max(scores.values())
    return [c for c in sorted(candidates) if scores[c] == best][:k]


def _is_kit_marker(name: str) -> bool:
    lower = name.lower()
    ext = _ext(name)
    return ext == ".mrk" or (ext in (".sqd", ".con") and "mrk" in Path(lower).stem)


def _claim_kit(listing: _Listing, entries: list[Entry]) -> None:
    markers = [n for n in listing.names if _is_kit_marker(n)]
    elps = [n for n in listing.names if _ext(n) == ".elp" or (_ext(n) == ".txt" and "elp" in n.lower())]
    hsps = [n for n in listing.names if _ext(n) == ".hsp" or (_ext(n) == ".txt" and "hsp" in n.lower())]
    kits = [n for n in listing.unclaimed() if _ext(n) in (".sqd", ".con") and n not in markers]
    for name in kits:
        entry = Entry(listing.claim(name), "kit")
        for role, found in zip(("mrk", "mrk2"), _closest(name, markers, k=2), strict=False):
            entry.companions[role] = listing.claim(found)
        for role, candidates in (("elp", elps), ("hsp", hsps)):
            for found in _closest(name, candidates):
                entry.companions[role] = listing.claim(found)
        entries.append(entry)


def _claim_fif(listing: _Listing, entries: list[Entry]) -> None:
    fifs = [n for n in listing.unclaimed() if _ext(n) in (".fif", ".fif.gz")]
    raws = [n for n in fifs if fif_kind(n) == "raw"]
    by_stem = {_stem(n).lower(): n for n in raws}
    parts: dict[str, list[str]] = {}
    firsts = []
    for name in raws:
        stem = _stem(name)
        mne_split = re.match(r"^(.*)-(\d+)$", stem)
        bids_split = re.search(r"_split-(\d+)", stem)
        if mne_split and mne_split.group(1).lower() in by_stem:
            parts.setdefault(by_stem[mne_split.group(1).lower()], []).append(name)
        elif bids_split and int(bids_split.group(1)) > 1:
            first = re.sub(r"_split-\d+", "_split-" + "1".zfill(len(bids_split.group(1))), stem)
            owner = by_stem.get(first.lower())
            if owner is None:
                firsts.append(name)  # the first part is missing: let the reader say so
            else:
                parts.setdefault(owner, []).append(name)
        else:
            firsts.append(name)
    entries_by_name = {}
    for name in firsts:
        entry = Entry(listing.claim(name), "fif")
        entry.members = [listing.claim(p) for p in sorted(parts.get(name, []))]
        entries_by_name[name] = entry
        entries.append(entry)
    for name in fifs:
        if fif_kind(name) != "events":
            continue
        base = re.sub(r"[-_]eve$", "", _stem(name), flags=re.IGNORECASE).lower()
        for candidate in (base, base + "_raw", base + "-raw", base + "_raw_sss", base + "-raw_sss"):
            owner = by_stem.get(candidate)
            if owner in entries_by_name and "events" not in entries_by_name[owner].companions:
                entries_by_name[owner].companions["events"] = listing.claim(name)
                break


def _claim_headers(listing: _Listing, entries: list[Entry]) -> None:
    """Formats whose header names its data files."""
    for name in listing.unclaimed():
        ext = _ext(name)
        if ext in (".vhdr", ".ahdr"):
            entry = _brainvision_entry(listing, name)
        elif ext == ".set":
            entry = Entry(listing.claim(name), "eeglab")
            entry.members = [listing.claim(p) for p in _same_stem(listing, name, [".fdt"])]
        elif ext == ".lay":
            entry = Entry(listing.claim(name), "persyst")
            value = _ini_value(_head(listing.folder / name, 65536).decode("latin-1"), "File")
            data = listing.find(Path(value.replace("\\", "/")).name) if value else None
            data = data or next(iter(_same_stem(listing, name, [".dat"])), None)
            entry.members = [listing.claim(data)] if data else []
        elif ext == ".data":
            entry = Entry(listing.claim(name), "nicolet")
            entry.members = [listing.claim(p) for p in _same_stem(listing, name, [".head"])]
        elif ext in (".cdt", ".dap"):
            entry = Entry(listing.claim(name), "curry")
            members = _same_stem(listing, name, _CURRY_MEMBERS)
            members += [n for n in listing.names if n.lower().startswith(name.lower() + ".")]
            entry.members = [listing.claim(p) for p in sorted(set(members))]
        else:
            continue
        entries.append(entry)


def _claim_bti(listing: _Listing, entries: list[Entry]) -> None:
    config = listing.find("config")
    if config is None:
        return
    pdfs = [n for n in listing.unclaimed() if re.match(r"^[ce],rf", n)]
    for name in pdfs:
        entry = Entry(listing.claim(name), "bti")
        entry.companions["config"] = listing.claim(config)
        head_shape = listing.find("hs_file")
        if head_shape is not None:
            entry.companions["head_shape"] = listing.claim(head_shape)
        entries.append(entry)


def _claim_simple(listing: _Listing, entries: list[Entry]) -> None:
    by_ext = {ext: spec.key for spec in FORMATS.values() if not spec.folder for ext in spec.extensions}
    for name in listing.unclaimed():
        if name in listing.claimed:
            continue
        ext = _ext(name)
        path = listing.folder / name
        if ext == ".eeg":
            upper = Path(name).suffix == ".EEG"
            if not (upper or _head(path, 16).startswith(_NK_SIGNATURES)):
                continue
            entry = Entry(listing.claim(name), "nihon_kohden")
            entry.members = [listing.claim(p) for p in _same_stem(listing, name, _NK_MEMBERS)]
        elif ext == ".cnt":
            key = "ant" if _head(path, 4) in (b"RIFF", b"RF64") else "cnt"
            entry = Entry(listing.claim(name), key)
        elif ext in by_ext and by_ext[ext] not in ("brainvision", "eeglab", "persyst", "nicolet", "curry", "fif", "kit"):
            entry = Entry(listing.claim(name), by_ext[ext])
        else:
            continue
        entries.append(entry)


def _claim_montages(listing: _Listing, entries: list[Entry]) -> None:
    eeg_entries = [e for e in entries if e.format not in _MEG_FORMATS]
    montages = [n for n in listing.unclaimed() if _ext(n) in MONTAGE_EXTENSIONS]
    if not eeg_entries or not montages:
        return
    for entry in eeg_entries:
        stem = _stem(entry.path.name).lower()
        same = [m for m in montages if _stem(m).lower() == stem]
        if same:
            entry.companions["montage"] = listing.claim(same[0])
        elif len(montages) == 1:
            entry.companions["montage"] = listing.claim(montages[0])


def scan_folder(folder: Path, files: Sequence[str], dirs: Sequence[str] = ()) -> FolderScan:
    """Group one folder's files into recordings.

    Parameters
    ----------
    folder : pathlib.Path
        The folder.
    files : sequence of str
        Names of the files directly in ``folder`` (hidden files already removed).
    dirs : sequence of str
        Names of its sub-folders.

    Returns
    -------
    scan : FolderScan
        Recordings (files and recording folders), and the files nothing claimed.
    """
    folder = Path(folder)
    listing = _Listing(folder, files)
    entries: list[Entry] = []
    scan = FolderScan()
    for name in sorted(dirs):
        ext = _ext(name)
        key = {".ds": "ctf", ".mff": "egi_mff"}.get(ext)
        if key is not None:
            entries.append(Entry(folder / name, key))
            scan.recording_dirs.append(name)
    _claim_bti(listing, entries)
    _claim_headers(listing, entries)
    _claim_fif(listing, entries)
    _claim_kit(listing, entries)
    _claim_simple(listing, entries)
    _claim_montages(listing, entries)
    scan.entries = sorted(entries, key=lambda e: e.path.name)
    scan.ignored = [folder / n for n in listing.unclaimed()]
    return scan
