"""BIDS datasets: find their EEG, MEG and iEEG recordings and read them with their sidecars.

Discovery uses :func:`mne_bids.find_matching_paths` (datatypes ``eeg``, ``meg``, ``ieeg``)
and reading :func:`mne_bids.read_raw_bids`, which applies ``channels.tsv`` types and status,
``events.tsv`` and ``PowerLineFrequency``. Two things brainfm does itself:

* every sidecar of a recording (JSON and TSV) is parsed before mne-bids sees it, so a broken
  file gives a :class:`~brainfm.errors.SidecarError` naming that file and the parse error
  instead of an error from deep inside mne-bids;
* ``electrodes.tsv`` + ``coordsystem.json`` are parsed here: coordinates are converted to
  metres from the declared unit, rows with ``n/a`` have no position, the space is recorded
  (``CapTrak``, ``ElektaNeuromag`` and ``ChietiItab`` are MNE's head frame), and when several
  electrode files exist the one whose ``space-`` entity matches its coordinate system is
  preferred. EEG positions in any other space are not used as they are: the reader keeps the
  head-frame positions mne-bids derived (``EEGLAB``, ``CTF``) or falls back to a template;
  iEEG positions keep their declared space.

The sidecars of a recording are looked up once, at discovery: they are the ``.json``/``.tsv``
files of :attr:`Source.files` plus the ``scans`` companion (:func:`source_sidecars`). The
session's ``scans.tsv`` is not one of the files hashed as the recording's identity, so adding
a run to a session does not make its other recordings look changed (nor do ``participants.tsv``
and ``dataset_description.json``, which are not among the files either). The price: editing
only a recording's ``acq_time`` row (its measurement date) does not make it look changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainfm.data.recording import Identity
from brainfm.errors import ReadError, SidecarError
from brainfm.preprocessing.formats import scan_folder
from brainfm.preprocessing.source import Source

__all__ = [
    "BIDS_DATATYPES",
    "BIDS_EXTENSIONS",
    "BidsReading",
    "BidsScan",
    "ElectrodePositions",
    "check_sidecars",
    "discover_bids",
    "electrode_positions",
    "is_bids_root",
    "parse_bids_name",
    "read_bids_raw",
    "read_json_sidecar",
    "read_tsv_sidecar",
    "recording_sidecars",
    "source_sidecars",
]

#: Datatype folders brainfm reads.
BIDS_DATATYPES: tuple[str, ...] = ("eeg", "meg", "ieeg")
#: Extensions of BIDS recordings MNE can open.
BIDS_EXTENSIONS: tuple[str, ...] = (
    ".vhdr", ".edf", ".EDF", ".bdf", ".set", ".fif", ".ds", ".sqd", ".con", ".lay", ".EEG", ".cnt", ".cdt",
)
#: Dataset-level BIDS files that are understood, hence never reported as ignored.
BIDS_METADATA = ("dataset_description.json", "participants.tsv", "participants.json", "README", "README.md",
                 "README.rst", "README.txt", "CHANGES", "LICENSE", ".bidsignore")
#: Coordinate systems (lower case) that are MNE's head frame (LPA-RPA x axis, nasion on y):
#: those mne-bids maps to ``head``. EEG and MEG positions in any other space (``EEGLAB``,
#: ``CTF``, ``Other``...) are not stored as they are (DESIGN: EEG/MEG positions are in the head frame).
HEAD_SPACES = frozenset({"captrak", "elektaneuromag", "chietiitab"})
_UNIT_SCALE = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}
_SIDECAR_SUFFIXES = {
    ("channels", ".tsv"): "channels",
    ("channels", ".json"): "channels_json",
    ("events", ".tsv"): "events_tsv",
    ("events", ".json"): "events_json",
    ("electrodes", ".tsv"): "electrodes",
    ("electrodes", ".json"): "electrodes_json",
    ("coordsystem", ".json"): "coordsystem",
}
_REGION_COLUMNS = ("region", "anatomy", "anat", "label", "destrieux", "desikan_killiany")


def is_bids_root(folder: Path) -> bool:
    """Whether a folder is a BIDS root (it holds ``dataset_description.json``)."""
    return (Path(folder) / "dataset_description.json").is_file()


def parse_bids_name(name: str) -> tuple[dict[str, str], str, str]:
    """Split a BIDS file name into entities, suffix and extension.

    The entities come from :func:`mne_bids.get_entities_from_fname` (entities mne-bids does
    not know, such as ``hemi-``, are kept too), keyed by the short names that BIDS file names
    use.

    Parameters
    ----------
    name : str
        ``"sub-01_ses-eeg_space-CapTrak_electrodes.tsv"``.

    Returns
    -------
    entities : dict of str to str
        Key-value pairs present in the name (``{"sub": "01", "ses": "eeg", "space": "CapTrak"}``),
        known entities in BIDS' order, then any others.
    suffix : str
        ``"electrodes"``.
    extension : str
        ``".tsv"`` (everything from the first dot).
    """
    import mne_bids
    from mne_bids.config import ALLOWED_PATH_ENTITIES_SHORT

    base, dot, rest = name.partition(".")
    parts = base.split("_")
    suffix = parts[-1] if parts and "-" not in parts[-1] else ""
    short = {long: key for key, long in ALLOWED_PATH_ENTITIES_SHORT.items()}  # "subject" -> "sub"
    found = mne_bids.get_entities_from_fname(base, on_error="ignore")
    entities = {short.get(key, key): value for key, value in found.items() if value is not None}
    return entities, suffix, dot + rest


def read_json_sidecar(path: Path) -> dict[str, Any]:
    """Parse a JSON sidecar; raise :class:`SidecarError` naming the file when it is broken.

    Parameters
    ----------
    path : pathlib.Path
        The JSON file.

    Returns
    -------
    content : dict
        The parsed object.
    """
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SidecarError(
            f"The BIDS sidecar {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}. Fix the file (a JSON validator shows the spot) and run again."
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SidecarError(f"The BIDS sidecar {path} could not be read: {exc}.") from exc
    if not isinstance(content, dict):
        raise SidecarError(
            f"The BIDS sidecar {path} holds a JSON {type(content).__name__}, but BIDS sidecars "
            "are JSON objects ({...}). Fix the file and run again."
        )
    return content


def read_tsv_sidecar(path: Path, required: Sequence[str] = ()) -> pd.DataFrame:
    """Parse a TSV sidecar as strings; raise :class:`SidecarError` naming the file when broken.

    Parameters
    ----------
    path : pathlib.Path
        The TSV file.
    required : sequence of str
        Columns the file must have.

    Returns
    -------
    table : pandas.DataFrame
        Every cell as a string (``"n/a"`` kept as is).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SidecarError(f"The BIDS sidecar {path} could not be read as UTF-8 text: {exc}.") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise SidecarError(f"The BIDS sidecar {path} is empty; a BIDS table needs at least a header row.")
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise SidecarError(
                f"The BIDS sidecar {path} is not a valid tab-separated table: line {number} has "
                f"{len(row)} fields but the header has {len(header)}. Check that every row has as "
                "many tab-separated fields as the header, then run again."
            )
    table = pd.DataFrame(rows, columns=header, dtype=object)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise SidecarError(
            f"The BIDS sidecar {path} lacks the required columns {missing} (it has "
            f"{list(table.columns)}). Are the columns separated by tabs?"
        )
    return table


def recording_sidecars(
    bids_root: Path, data_path: Path, *, listings: dict[Path, list[Path]] | None = None
) -> dict[str, list[Path]]:
    """Find the sidecars that apply to a BIDS recording.

    A sidecar applies when its entities are a subset of the recording's (``space-`` may
    differ). Files in the recording's own folder come first, then the session, subject and
    root folders (BIDS inheritance). The session's ``scans.tsv`` is included.

    Parameters
    ----------
    bids_root : pathlib.Path
        The dataset root.
    data_path : pathlib.Path
        The recording (``..._eeg.vhdr``, ``..._meg.ds``).
    listings : dict of pathlib.Path to list of pathlib.Path | None
        The sorted files of each folder already listed, filled in here; discovery passes
        one dict for a whole dataset so that each folder is listed once, not once per
        recording below it.

    Returns
    -------
    sidecars : dict of str to list of pathlib.Path
        By role: ``channels``, ``channels_json``, ``events_tsv``, ``events_json``,
        ``sidecar`` (the ``<datatype>.json``), ``electrodes``, ``electrodes_json``,
        ``coordsystem``, ``scans``; roles without files are absent.
    """
    bids_root, data_path = Path(bids_root), Path(data_path)
    entities, datatype_suffix, _ = parse_bids_name(data_path.name)
    entities = {k: v for k, v in entities.items() if k != "split"}
    out: dict[str, list[Path]] = {}
    folder = data_path.parent
    folders = []
    while True:
        folders.append(folder)
        if folder == bids_root or bids_root not in folder.parents:
            break
        folder = folder.parent
    listings = {} if listings is None else listings
    for depth, folder in enumerate(folders):
        if folder not in listings:
            listings[folder] = [path for path in sorted(folder.iterdir()) if path.is_file()]
        for path in listings[folder]:
            if path == data_path:
                continue
            file_entities, role = _sidecar_role(path.name, datatype_suffix)
            if role == "scans":
                if file_entities.items() <= entities.items():
                    out.setdefault("scans", []).append(path)
                continue
            if role is None:
                continue
            if depth > 0 and role in out and role in ("channels", "events_tsv", "electrodes"):
                continue  # TSV files do not inherit past the recording's folder
            comparable = {k: v for k, v in file_entities.items() if k != "space"}
            if comparable.items() <= entities.items():
                out.setdefault(role, []).append(path)
    return out


def _sidecar_role(name: str, datatype_suffix: str) -> tuple[dict[str, str], str | None]:
    """The entities of a file name and its sidecar role (``None``: not a sidecar)."""
    entities, suffix, ext = parse_bids_name(name)
    if suffix == "scans" and ext == ".tsv":
        return entities, "scans"
    role = _SIDECAR_SUFFIXES.get((suffix, ext))
    if role is None and suffix == datatype_suffix and ext == ".json":
        role = "sidecar"
    return entities, role


def source_sidecars(source: Source) -> dict[str, list[Path]]:
    """The sidecars of a discovered BIDS recording, by role, without listing any folder.

    Discovery (:func:`discover_bids`) looks them up once with :func:`recording_sidecars`
    and puts them into :attr:`Source.files` (the ``scans.tsv`` into
    ``Source.companions["scans"]``, since it is not one of the recording's own files); this
    recovers their roles from their names, in the order discovery found them.

    Parameters
    ----------
    source : Source
        A source from :func:`discover_bids`.

    Returns
    -------
    sidecars : dict of str to list of pathlib.Path
        As :func:`recording_sidecars` returns them.
    """
    path = Path(source.path)
    _, datatype_suffix, _ = parse_bids_name(path.name)
    out: dict[str, list[Path]] = {}
    for file in source.files:
        file = Path(file)
        if file == path or path in file.parents or file.suffix not in (".json", ".tsv"):
            continue  # the recording itself, or a file inside a recording folder
        _, role = _sidecar_role(file.name, datatype_suffix)
        if role is not None and role != "scans":
            out.setdefault(role, []).append(file)
    scans = source.companions.get("scans")
    if scans is not None:
        out["scans"] = [Path(scans)]
    return out


@dataclass
class BidsScan:
    """The recordings of one BIDS root.

    Parameters
    ----------
    sources : list of Source
        One per recording (split parts are members of the first part).
    ignored : list of pathlib.Path
        Files under the root that nothing uses (dataset-level metadata excluded).
    """

    sources: list[Source] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def _walk_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") for p in rel) or rel[0] in ("derivatives", "sourcedata"):
            continue
        if path.is_file():
            files.append(path)
    return files


def discover_bids(root: Path, dataset: str) -> BidsScan:
    """Find the EEG, MEG and iEEG recordings of a BIDS dataset.

    Parameters
    ----------
    root : pathlib.Path
        The BIDS root (holds ``dataset_description.json``).
    dataset : str
        Dataset name for the identities.

    Returns
    -------
    scan : BidsScan
        Sources in path order and ignored files.
    """
    import mne_bids

    root = Path(root)
    scan = BidsScan()
    paths = mne_bids.find_matching_paths(
        root, datatypes=list(BIDS_DATATYPES), extensions=list(BIDS_EXTENSIONS), ignore_json=True
    )
    folders: dict[Path, dict[Path, Any]] = {}
    listings: dict[Path, list[Path]] = {}
    claimed: set[Path] = set()
    for bids_path in sorted(paths, key=lambda p: str(p.fpath)):
        fpath = Path(bids_path.fpath)
        if bids_path.suffix not in BIDS_DATATYPES or not fpath.exists():
            continue
        if bids_path.split is not None and int(bids_path.split) > 1:
            continue  # a later split part: read through the first part
        if fpath.parent not in folders:
            children = sorted(fpath.parent.iterdir())
            listing = scan_folder(
                fpath.parent,
                [c.name for c in children if c.is_file() and not c.name.startswith(".")],
                [c.name for c in children if c.is_dir() and not c.name.startswith(".")],
            )
            folders[fpath.parent] = {e.path: e for e in listing.entries}
        entry = folders[fpath.parent].get(fpath)
        if entry is None:
            continue
        sidecars = recording_sidecars(root, fpath, listings=listings)
        files = list(entry.files)
        companions = dict(entry.companions)
        for role, role_paths in sidecars.items():
            companions.setdefault(role, role_paths[0])
            if role != "scans":  # shared by every run of the session: not hashed with this one
                files.extend(p for p in role_paths if p not in files)
        identity = Identity(
            dataset=dataset,
            subject=bids_path.subject,
            session=bids_path.session,
            task=bids_path.task,
            acquisition=bids_path.acquisition,
            run=None if bids_path.run is None else str(bids_path.run),
        )
        scan.sources.append(
            Source(
                path=fpath,
                relpath=fpath.relative_to(root).as_posix(),
                format=entry.format,
                files=files,
                dataset=dataset,
                identity=identity,
                recording_id=identity.recording_id(),
                companions=companions,
                bids_root=root,
                subject_source="bids" if identity.subject else "recording",
            )
        )
        claimed.update(files)
    for path in _walk_files(root):
        if path in claimed or path.parent == root and path.name in BIDS_METADATA:
            continue
        _, suffix, _ = parse_bids_name(path.name)
        if suffix in ("scans", "sessions") or (path.parent == root and path.suffix in (".json", ".tsv")):
            continue  # session/subject tables and top-level inherited sidecars
        scan.ignored.append(path)
    return scan


def check_sidecars(source: Source, sidecars: dict[str, list[Path]] | None = None) -> dict[str, Any]:
    """Parse every sidecar of a BIDS recording (and ``participants.tsv``) before mne-bids reads it.

    Parameters
    ----------
    source : Source
        A source with ``bids_root`` set.
    sidecars : dict | None
        Its sidecars by role; default :func:`source_sidecars`.

    Returns
    -------
    parsed : dict
        Parsed content by path: dict for JSON, DataFrame for TSV.
    """
    required = {
        "channels": ("name", "type"), "events_tsv": ("onset", "duration"),
        "electrodes": ("name", "x", "y", "z"), "scans": ("filename",),
    }
    parsed: dict[str, Any] = {}
    sidecars = dict(source_sidecars(source) if sidecars is None else sidecars)
    participants = Path(source.bids_root or source.path.parent) / "participants.tsv"
    if participants.is_file():
        sidecars["participants"] = [participants]
    for role, paths in sidecars.items():
        for path in paths:
            if path.suffix == ".json":
                parsed[str(path)] = read_json_sidecar(path)
            else:
                parsed[str(path)] = read_tsv_sidecar(path, required.get(role, ()))
    return parsed


@dataclass
class ElectrodePositions:
    """Electrode positions of a BIDS recording, in metres.

    Parameters
    ----------
    positions : dict of str to numpy.ndarray
        Position by channel name; rows with ``n/a`` are left out.
    frame : str
        ``"head"`` for CapTrak/ElektaNeuromag, else the declared space (``"fsaverage"``).
    space : str
        The coordinate system as the coordsystem file declares it.
    unit : str
        The declared unit (``m``, ``cm``, ``mm``).
    file : pathlib.Path
        The electrodes file used.
    regions : dict of str to str
        Anatomical label by channel name when the file has a region/anatomy column.
    """

    positions: dict[str, np.ndarray]
    frame: str
    space: str
    unit: str
    file: Path
    regions: dict[str, str] = field(default_factory=dict)


def _coordsystem_for(electrodes: Path, coordsystems: Sequence[Path]) -> Path | None:
    entities, _, _ = parse_bids_name(electrodes.name)
    for path in coordsystems:
        if parse_bids_name(path.name)[0] == entities:
            return path
    return None


def electrode_positions(
    source: Source, parsed: dict[str, Any] | None = None, sidecars: dict[str, list[Path]] | None = None
) -> tuple[ElectrodePositions | None, list[str]]:
    """Read ``electrodes.tsv`` + ``coordsystem.json`` of a BIDS recording.

    Parameters
    ----------
    source : Source
        A BIDS source.
    parsed : dict | None
        Output of :func:`check_sidecars`, to avoid parsing twice.
    sidecars : dict | None
        Its sidecars by role; default :func:`source_sidecars`.

    Returns
    -------
    positions : ElectrodePositions | None
        ``None`` when the recording has no usable electrodes file.
    warnings : list of str
        Why a file was not used.
    """
    sidecars = source_sidecars(source) if sidecars is None else sidecars
    parsed = parsed if parsed is not None else check_sidecars(source, sidecars)
    notes: list[str] = []
    pairs = []
    for electrodes in sidecars.get("electrodes", []):
        coordsystem = _coordsystem_for(electrodes, sidecars.get("coordsystem", []))
        if coordsystem is None:
            notes.append(f"{electrodes.name} has no matching coordsystem.json; its positions are not used.")
            continue
        content = parsed[str(coordsystem)]
        space = next((str(content[k]) for k in ("iEEGCoordinateSystem", "EEGCoordinateSystem",
                                                 "MEGCoordinateSystem") if k in content), "")
        unit = next((str(content[k]) for k in ("iEEGCoordinateUnits", "EEGCoordinateUnits",
                                                "MEGCoordinateUnits") if k in content), "")
        space_entity = parse_bids_name(electrodes.name)[0].get("space", "")
        pairs.append((0 if space_entity.lower() == space.lower() else 1, electrodes, coordsystem, space, unit))
    if not pairs:
        return None, notes
    _, electrodes, coordsystem, space, unit = min(pairs, key=lambda p: p[0])
    scale = _UNIT_SCALE.get(unit.strip().lower())
    if scale is None:
        notes.append(
            f"{coordsystem.name} declares the unit {unit!r}, not m, cm or mm; the positions of "
            f"{electrodes.name} are not used."
        )
        return None, notes
    table = parsed[str(electrodes)]
    positions: dict[str, np.ndarray] = {}
    for _, row in table.iterrows():
        try:
            xyz = np.array([float(row[c]) for c in ("x", "y", "z")]) * scale
        except ValueError:
            continue  # "n/a": no position
        if np.all(np.isfinite(xyz)):
            positions[str(row["name"])] = xyz
    region_column = next((c for c in _REGION_COLUMNS if c in table.columns), None)
    regions = {}
    if region_column is not None:
        regions = {str(n): str(r) for n, r in zip(table["name"], table[region_column], strict=True)
                   if str(r) not in ("", "n/a")}
    frame = "head" if space.lower() in HEAD_SPACES else space
    return ElectrodePositions(positions, frame, space, unit, electrodes, regions), notes


@dataclass
class BidsReading:
    """What :func:`read_bids_raw` returns.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording, with channels.tsv types and bads, events.tsv annotations and line
        frequency applied by mne-bids.
    warnings : list of str
        Notes on sidecars not used (what mne-bids and MNE warn or print while reading is
        left to the caller: :func:`brainfm.preprocessing.readers.read_source` records it).
    channels_tsv : pandas.DataFrame | None
        ``channels.tsv`` as strings.
    electrodes : ElectrodePositions | None
        Positions from ``electrodes.tsv``.
    has_events_tsv : bool
        Whether an ``events.tsv`` was found (then stim channels are not searched for events).
    """

    raw: Any
    warnings: list[str] = field(default_factory=list)
    channels_tsv: pd.DataFrame | None = None
    electrodes: ElectrodePositions | None = None
    has_events_tsv: bool = False


def read_bids_raw(source: Source, extra_params: dict[str, Any] | None = None) -> BidsReading:
    """Read a BIDS recording with mne-bids after checking its sidecars.

    Parameters
    ----------
    source : Source
        A source with ``bids_root`` set.
    extra_params : dict | None
        Keyword arguments for the MNE reader (``allow_maxshield``...).

    Returns
    -------
    reading : BidsReading
        The raw and the parsed sidecars.
    """
    import mne_bids

    sidecars = source_sidecars(source)
    parsed = check_sidecars(source, sidecars)
    bids_path = mne_bids.get_bids_path_from_fname(source.path, check=False)
    bids_path.update(root=source.bids_root, check=False)
    reading = BidsReading(raw=None, has_events_tsv=bool(sidecars.get("events_tsv")))
    try:
        reading.raw = mne_bids.read_raw_bids(bids_path, extra_params=extra_params or None, verbose="warning")
    except (SidecarError, ReadError):
        raise
    except FileNotFoundError as exc:
        raise ReadError(
            f"mne-bids could not read {source.path}: a file it needs is missing "
            f"({exc.filename or exc}). Restore it, or remove the recording from the dataset."
        ) from exc
    except Exception as exc:
        raise ReadError(
            f"mne-bids could not read {source.path}: {type(exc).__name__}: {exc}. Check the "
            "recording and its sidecars with the BIDS validator."
        ) from exc
    channels = sidecars.get("channels")
    if channels:
        reading.channels_tsv = parsed[str(channels[0])]
    reading.electrodes, notes = electrode_positions(source, parsed, sidecars)
    reading.warnings.extend(notes)
    return reading
