"""Sensor geometry: fill the channel table's position, orientation and frame columns.

Where the numbers come from, by channel type:

MEG (``mag``, ``grad``)
    ``info['chs'][i]['loc']``: position ``loc[0:3]``, coil normal ``ez = loc[9:12]`` into
    ``ox, oy, oz``, and for planar gradiometers the gradient direction ``ex = loc[3:6]``
    into ``gx, gy, gz`` (both rescaled to unit length: FIF stores them as float32). The coil
    type name (``FIFFV_COIL_VV_PLANAR_T1``) goes into ``coil_type`` and a CTF compensation
    grade, which MNE keeps in the upper 16 bits of the coil type, into
    ``compensation_grade`` (:mod:`brainfm.data.coils`). Positions are moved to the head
    frame with ``info['dev_head_t']`` when the file holds a device-to-head transform;
    otherwise they stay in the ``device`` frame.
    MNE fills an *identity* transform when a file has none (KIT without marker coils,
    EEG-only FIF); no measured transform is exactly the identity, so an identity transform
    counts as "no transform".
EEG
    Always in the head frame. Measured positions given by the caller (BIDS ``electrodes.tsv``,
    a digitisation file beside the recording) when they are in the head frame, else positions
    in the file when the file puts them in the head frame (``pos_source="measured"``), else a
    template montage after name normalisation (``pos_source="template"``): the built-in MNE
    montage matching the most channel names, positions in the head frame obtained by setting
    the montage on an :class:`mne.Info` of the matched names. Positions in another frame
    (an ``electrodes.tsv`` in the ``EEGLAB`` or ``Other`` space, a file whose EEG channels are
    in the ``unknown`` frame) are not used, with a warning naming the frame.
iEEG (``seeg``, ``ecog``, ``dbs``)
    Measured positions given by the caller (``electrodes.tsv``, in its declared space) or
    positions in the file, in the frame of the channel's ``coord_frame``.

A position that is all zeros, not finite, or farther than :data:`MAX_RADIUS_M` from the
frame origin (a file that stores millimetres or a unit sphere) is no position: NaN with
``pos_source="none"``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from brainfm.data.channel_names import canonical_eeg_name, ten_five_montage_name
from brainfm.data.channels import FRAME_IDS, frame_id
from brainfm.data.coils import coil_type_name, split_coil_type

__all__ = [
    "MAX_RADIUS_M",
    "GeometryReport",
    "best_template_montage",
    "coil_type_name",
    "fill_geometry",
    "frame_name",
    "montage_positions",
    "template_positions",
    "valid_position",
]

#: Farther than this from the frame origin (metres) a sensor cannot be on or in a head.
MAX_RADIUS_M = 0.5

_MEG = ("mag", "grad")
_IEEG = ("seeg", "ecog", "dbs")
# Montages never used as EEG templates: fNIRS optodes, numbered caps whose names ("1", "2")
# would match any numbered channel list, and spherical idealisations of the 10-05 system.
_NOT_TEMPLATES = ("artinis", "easycap-M10", "easycap-M43", "spherical")


@dataclass
class GeometryReport:
    """What :func:`fill_geometry` did, for the provenance.

    Parameters
    ----------
    warnings : list of str
        Things users should know (template positions, implausible file positions...).
    template_montage : str | None
        The built-in montage template positions come from, if any.
    meg_frame : str | None
        ``"head"`` or ``"device"`` when the recording has MEG channels.
    """

    warnings: list[str] = field(default_factory=list)
    template_montage: str | None = None
    meg_frame: str | None = None


def frame_name(coord_frame: int) -> str:
    """Name a FIFF coordinate frame constant.

    Parameters
    ----------
    coord_frame : int
        ``FIFFV_COORD_*`` value from ``info['chs'][i]['coord_frame']``.

    Returns
    -------
    name : str
        ``"head"``, ``"device"``, ``"mri"``, ``"mni_tal"``, ``"fs_tal"`` ... or ``""`` when
        the frame is unknown.
    """
    from mne.io.constants import FIFF

    names = {
        FIFF.FIFFV_COORD_HEAD: "head",
        FIFF.FIFFV_COORD_DEVICE: "device",
        FIFF.FIFFV_COORD_MRI: "mri",
        FIFF.FIFFV_COORD_ISOTRAK: "isotrak",
        FIFF.FIFFV_COORD_HPI: "hpi",
        FIFF.FIFFV_MNE_COORD_MNI_TAL: "mni_tal",
        FIFF.FIFFV_MNE_COORD_FS_TAL: "fs_tal",
        FIFF.FIFFV_MNE_COORD_RAS: "ras",
        FIFF.FIFFV_MNE_COORD_MRI_VOXEL: "mri_voxel",
    }
    return names.get(int(coord_frame), "")


def valid_position(xyz: Any) -> bool:
    """Whether a position is usable: finite, not all zeros, within :data:`MAX_RADIUS_M`.

    Parameters
    ----------
    xyz : array-like, shape (3,)
        Position in metres.

    Returns
    -------
    valid : bool
        ``True`` for a usable position.
    """
    xyz = np.asarray(xyz, dtype=float)
    if xyz.shape != (3,) or not np.all(np.isfinite(xyz)) or not np.any(xyz):
        return False
    return bool(np.linalg.norm(xyz) <= MAX_RADIUS_M)


def _head_positions_of(montage: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """Head-frame positions of every electrode of a montage, via a throw-away Info."""
    import mne

    names = list(dict.fromkeys(montage.ch_names))
    info = mne.create_info(names, 1000.0, "eeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info.set_montage(montage, on_missing="ignore", verbose="error")
    notes = [str(w.message) for w in caught]
    positions = {ch["ch_name"]: np.array(ch["loc"][:3], dtype=float) for ch in info["chs"]}
    return positions, notes


@functools.cache
def _builtin_montage_names() -> dict[str, tuple[str, ...]]:
    import mne

    preferred = ten_five_montage_name()
    out: dict[str, tuple[str, ...]] = {}
    kinds = [preferred] + [k for k in mne.channels.get_builtin_montages() if k != preferred]
    for kind in kinds:
        if kind.startswith(_NOT_TEMPLATES):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # only the old 10-05 name warns
            out[kind] = tuple(mne.channels.make_standard_montage(kind).ch_names)
    return out


@functools.cache
def _builtin_head_positions(kind: str) -> dict[str, np.ndarray]:
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        montage = mne.channels.make_standard_montage(kind)
    positions, _ = _head_positions_of(montage)
    return positions


def _match_names(names: Iterable[str], available: Iterable[str]) -> dict[str, str]:
    """Map each of ``names`` to an ``available`` name: exact, case-insensitive, or 10-05."""
    available = list(available)
    exact = set(available)
    lower = {a.lower(): a for a in available}
    out = {}
    for name in names:
        if name in exact:
            out[name] = name
            continue
        hit = lower.get(name.strip().lower())
        if hit is None:
            canonical = canonical_eeg_name(name)
            hit = lower.get(canonical.lower()) if canonical else None
        if hit is not None:
            out[name] = hit
    return out


def best_template_montage(names: Sequence[str]) -> tuple[str | None, int]:
    """Choose the built-in MNE montage that matches the most EEG channel names.

    Ties go to the 10-05 montage, then to the smallest montage (the one with the fewest
    unmatched electrodes), then to MNE's order.

    Parameters
    ----------
    names : sequence of str
        EEG channel names (as in the file or normalised; matching is case-insensitive and
        goes through :func:`~brainfm.data.channel_names.canonical_eeg_name`).

    Returns
    -------
    montage : str | None
        The montage name, or ``None`` when no montage knows any of the names.
    n_matched : int
        How many of ``names`` it knows.
    """
    preferred = ten_five_montage_name()
    best: tuple[tuple[int, int, int, int], str] | None = None
    for order, (kind, montage_names) in enumerate(_builtin_montage_names().items()):
        matched = len(_match_names(names, montage_names))
        if matched == 0:
            continue
        key = (-matched, 0 if kind == preferred else 1, len(montage_names), order)
        if best is None or key < best[0]:
            best = (key, kind)
    if best is None:
        return None, 0
    return best[1], -best[0][0]


def template_positions(names: Sequence[str]) -> tuple[str | None, dict[str, np.ndarray]]:
    """Head-frame template positions for EEG names from the best-matching built-in montage.

    Parameters
    ----------
    names : sequence of str
        EEG channel names.

    Returns
    -------
    montage : str | None
        The montage used, ``None`` when none matched.
    positions : dict of str to numpy.ndarray
        Position (metres, head frame) for each matched name of ``names``.
    """
    kind, _ = best_template_montage(names)
    if kind is None:
        return None, {}
    head = _builtin_head_positions(kind)
    matched = _match_names(names, head)
    return kind, {name: head[hit].copy() for name, hit in matched.items() if valid_position(head[hit])}


def montage_positions(montage: Any, names: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Head-frame positions of ``names`` from a digitised montage (``DigMontage``).

    The montage is set on an :class:`mne.Info` of its own electrodes, which moves the
    positions to the head frame with the montage's fiducials; names are matched exactly,
    case-insensitively, then by 10-05 spelling.

    Parameters
    ----------
    montage : mne.channels.DigMontage
        Digitised or custom montage (``mne.channels.read_dig_captrak``...).
    names : sequence of str
        Channel names to look up.

    Returns
    -------
    positions : dict of str to numpy.ndarray
        Position for each matched name with a usable position.
    notes : list of str
        Warnings MNE gave while setting the montage.
    """
    head, notes = _head_positions_of(montage)
    matched = _match_names(names, head)
    return {n: head[h].copy() for n, h in matched.items() if valid_position(head[h])}, notes


def _unit(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to length 1 (FIF stores float32 directions); zeros if unusable."""
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        return np.zeros(3)
    return np.asarray(vector, dtype=float) / norm


def _is_identity(trans: Any) -> bool:
    return trans is None or bool(np.allclose(np.asarray(trans["trans"]), np.eye(4)))


class _Columns:
    """Geometry columns collected per row, written into the table once (pandas ``.loc``
    assignment per cell costs milliseconds, too slow for hundreds of channels)."""

    _NAMES = ("x", "y", "z", "ox", "oy", "oz", "gx", "gy", "gz")

    def __init__(self, channels: pd.DataFrame) -> None:
        self.channels = channels
        self.position = {row: i for i, row in enumerate(channels.index)}
        self.values = channels.loc[:, list(self._NAMES)].to_numpy(dtype=float, copy=True)
        self.frame = channels["frame"].astype(str).tolist()
        self.source = channels["pos_source"].astype(str).tolist()
        self.coil = channels["coil_type"].astype(str).tolist()
        self.grade = channels["compensation_grade"].astype(np.int64).tolist()

    def set_position(self, row: Any, xyz: np.ndarray, frame: str, source: str) -> None:
        i = self.position[row]
        self.values[i, 0:3] = np.asarray(xyz, dtype=float)
        self.frame[i] = frame
        self.source[i] = source

    def set_vectors(self, row: Any, normal: np.ndarray, gradient: np.ndarray | None) -> None:
        i = self.position[row]
        self.values[i, 3:6] = normal
        if gradient is not None:
            self.values[i, 6:9] = gradient

    def set_coil(self, row: Any, coil_type: Any) -> None:
        i = self.position[row]
        self.coil[i] = coil_type_name(coil_type)
        self.grade[i] = split_coil_type(coil_type)[1]

    def write(self) -> None:
        for j, name in enumerate(self._NAMES):
            self.channels[name] = self.values[:, j]
        self.channels["frame"] = self.frame
        self.channels["pos_source"] = self.source
        self.channels["coil_type"] = self.coil
        self.channels["compensation_grade"] = np.asarray(self.grade, dtype=np.int64)


def _fill_meg(channels: pd.DataFrame, columns: _Columns, rows: list[Any], chs: Mapping[str, Any], info: Any) -> str:
    from mne.transforms import apply_trans

    trans = info.get("dev_head_t")
    frame = "device" if _is_identity(trans) else "head"
    for row in rows:
        ch = chs[channels.at[row, "orig_name"]]
        loc = np.asarray(ch["loc"], dtype=float)
        columns.set_coil(row, ch["coil_type"])
        pos, ex, ez = loc[0:3], loc[3:6], loc[9:12]
        if not valid_position(pos):
            continue
        if frame == "head":
            pos = apply_trans(trans, pos)
            ez = apply_trans(trans, ez, move=False)
            ex = apply_trans(trans, ex, move=False)
        columns.set_position(row, pos, frame, "measured")
        columns.set_vectors(row, _unit(ez), _unit(ex) if channels.at[row, "type"] == "grad" else None)
    return frame


def fill_geometry(
    channels: pd.DataFrame,
    info: Any,
    *,
    measured: Mapping[str, Any] | None = None,
    measured_frame: str = "head",
    template: bool = True,
) -> GeometryReport:
    """Fill the geometry columns of a channel table in place.

    Parameters
    ----------
    channels : pandas.DataFrame
        Channel table whose ``orig_name`` column names channels of ``info`` and whose
        ``type`` column is final. Columns ``x..gz``, ``frame``, ``pos_source`` and
        ``coil_type`` are overwritten for the channel types with a geometry (MEG, EEG, iEEG).
    info : mne.Info
        The measurement info of the recording.
    measured : dict of str to array-like | None
        Measured positions in metres by ``orig_name`` (from ``electrodes.tsv`` or a
        digitisation file); they take precedence over positions in ``info`` (for EEG
        channels only when ``measured_frame`` is ``"head"``).
    measured_frame : str
        Frame of ``measured`` (``"head"``, or a space such as ``"fsaverage"`` for iEEG).
    template : bool
        Whether EEG channels without a measured position get template positions.

    Returns
    -------
    report : GeometryReport
        Warnings, the template montage used and the MEG frame.
    """
    report = GeometryReport()
    chs = {ch["ch_name"]: ch for ch in info["chs"]}
    measured = dict(measured or {})
    by_type: dict[str, list[Any]] = {}
    for row in channels.index:
        by_type.setdefault(str(channels.at[row, "type"]), []).append(row)

    columns = _Columns(channels)
    meg_rows = [r for t in _MEG for r in by_type.get(t, [])]
    if meg_rows:
        report.meg_frame = _fill_meg(channels, columns, meg_rows, chs, info)

    implausible = []
    eeg_missing = []
    eeg_measured_elsewhere = []  # measured positions not in the head frame
    eeg_file_elsewhere: dict[str, list[str]] = {}  # file positions by their (non-head) frame
    for ch_type in ("eeg", *_IEEG):
        for row in by_type.get(ch_type, []):
            orig = channels.at[row, "orig_name"]
            if orig in measured and valid_position(measured[orig]):
                if ch_type != "eeg" or measured_frame == "head":
                    columns.set_position(row, measured[orig], measured_frame, "measured")
                    continue
                eeg_measured_elsewhere.append(str(orig))
            ch = chs.get(orig)
            loc = np.asarray(ch["loc"][:3], dtype=float) if ch is not None else np.full(3, np.nan)
            if valid_position(loc):
                frame = frame_name(ch["coord_frame"])
                if ch_type != "eeg" or frame == "head":
                    columns.set_position(row, loc, frame, "measured")
                    continue
                eeg_file_elsewhere.setdefault(frame or "unknown", []).append(str(orig))
            elif np.all(np.isfinite(loc)) and np.any(loc):
                implausible.append(str(orig))
            if ch_type == "eeg":
                eeg_missing.append(row)
    if eeg_measured_elsewhere:
        report.warnings.append(
            f"The measured positions of {len(eeg_measured_elsewhere)} EEG channels are in the "
            f"{measured_frame!r} space, not the head frame (EEG positions are stored in the head "
            "frame only); they were not used: positions in the file in the head frame or "
            "template positions instead."
        )
    for frame, names in eeg_file_elsewhere.items():
        report.warnings.append(
            f"The positions of {len(names)} EEG channels in the file are in the {frame!r} frame, "
            f"not the head frame (EEG positions are stored in the head frame only); they were not "
            f"used: {names[:5]}{' ...' if len(names) > 5 else ''}"
        )
    if implausible:
        report.warnings.append(
            f"Positions of {len(implausible)} channels in the file are not plausible head "
            f"positions in metres (farther than {MAX_RADIUS_M} m from the origin: "
            f"{implausible[:5]}); they were ignored."
        )
    if template and eeg_missing:
        names = [str(channels.at[r, "name"]) for r in eeg_missing]
        kind, positions = template_positions(names)
        placed = 0
        for row, name in zip(eeg_missing, names, strict=True):
            if name in positions:
                columns.set_position(row, positions[name], "head", "template")
                placed += 1
        if placed:
            report.template_montage = kind
            report.warnings.append(
                f"{placed} of {len(names)} EEG channels without measured positions got template "
                f"positions from MNE's '{kind}' montage (pos_source='template')."
            )
        if placed < len(names):
            unplaced = [n for n in names if n not in positions]
            report.warnings.append(
                f"{len(unplaced)} EEG channels have no position (not in any template montage): "
                f"{unplaced[:8]}{' ...' if len(unplaced) > 8 else ''}"
            )
    unplaceable: dict[str, list[str]] = {}
    for i, frame in enumerate(columns.frame):
        if frame_id(frame) < 0 and np.isfinite(columns.values[i, 0:3]).all():
            unplaceable.setdefault(frame or "unknown", []).append(str(channels["name"].iat[i]))
    for frame, names in unplaceable.items():
        report.warnings.append(
            f"The positions of {len(names)} channels are in the {frame!r} frame, which is not one of "
            f"brainfm's frames ({', '.join(FRAME_IDS)}): they are stored but loaders mask them "
            f"(pos_mask False): {names[:5]}{' ...' if len(names) > 5 else ''}"
        )
    columns.write()
    return report
