"""The channel table: one row per stored channel, the columns every stage relies on.

Columns (see ``docs/store-format.md``):

``name``          channel name; EEG names normalised to 10-05 spelling (``Fc5.`` -> ``FC5``)
``orig_name``     the name in the source file
``type``          one of :data:`CHANNEL_TYPES`
``unit``          SI unit of the stored signal: ``V``, ``T``, ``T/m`` or ``unknown``
``x, y, z``       position in metres (NaN when unknown)
``ox, oy, oz``    unit normal of an MEG coil; zeros elsewhere
``gx, gy, gz``    gradient direction of a planar gradiometer; zeros elsewhere
``frame``         coordinate frame of the position: ``head``, ``device``, or the declared
                  iEEG space (``fsaverage``, ``mni_tal``, ...); empty when unknown;
                  :func:`frame_id` maps it to the :data:`FRAME_IDS` of ``Batch.frame_ids``
``pos_source``    ``measured``, ``template`` or ``none``
``coil_type``     MNE/FIFF coil type name for MEG (e.g. ``FIFFV_COIL_VV_PLANAR_T1``), else empty
``compensation_grade``  CTF gradient compensation grade of the stored MEG signal (0 none, 1-3
                  for G1BR-G3BR; MNE keeps it in the upper 16 bits of ``coil_type``); 0 elsewhere
``status``        ``good`` or ``bad``
``status_reason`` why a channel is bad (``flat``, ``noisy``, ``metadata``, ...), else empty
``group``         sEEG shaft or ECoG grid (from metadata or derived from names), else empty
``region``        atlas label when known, else empty
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "CHANNEL_COLUMNS",
    "CHANNEL_TYPES",
    "DATA_CHANNEL_TYPES",
    "FRAME_IDS",
    "IEEG_TYPES",
    "MEG_TYPES",
    "SENSOR_TYPE_IDS",
    "UNITS",
    "empty_channel_table",
    "frame_id",
    "shaft_groups",
    "validate_channel_table",
]

#: Channel types a store may hold.
CHANNEL_TYPES: tuple[str, ...] = (
    "eeg", "mag", "grad", "seeg", "ecog", "dbs", "eog", "ecg", "emg", "misc",
)
#: Types that carry brain signal (the others are physiological or auxiliary).
DATA_CHANNEL_TYPES: tuple[str, ...] = ("eeg", "mag", "grad", "seeg", "ecog", "dbs")
MEG_TYPES: tuple[str, ...] = ("mag", "grad")
IEEG_TYPES: tuple[str, ...] = ("seeg", "ecog", "dbs")
#: SI unit of each channel type in the store.
UNITS: dict[str, str] = {
    "eeg": "V", "seeg": "V", "ecog": "V", "dbs": "V", "eog": "V", "ecg": "V", "emg": "V",
    "mag": "T", "grad": "T/m", "misc": "unknown",
}
#: Sensor-type ids of the Batch contract (BrainOmni's EEG 0, MAG 1, GRAD 2, then iEEG).
SENSOR_TYPE_IDS: dict[str, int] = {
    "eeg": 0, "mag": 1, "grad": 2, "seeg": 3, "ecog": 4, "dbs": 5,
    "eog": 6, "ecg": 7, "emg": 8, "misc": 9,
}

_STRING_COLUMNS = (
    "name", "orig_name", "type", "unit", "frame", "pos_source", "coil_type",
    "status", "status_reason", "group", "region",
)
_FLOAT_COLUMNS = ("x", "y", "z", "ox", "oy", "oz", "gx", "gy", "gz")
_INT_COLUMNS = ("compensation_grade",)
#: Column order of the channel table.
CHANNEL_COLUMNS: tuple[str, ...] = (
    "name", "orig_name", "type", "unit", "x", "y", "z", "ox", "oy", "oz", "gx", "gy", "gz",
    "frame", "pos_source", "coil_type", "compensation_grade", "status", "status_reason", "group", "region",
)
STRING_COLUMNS = _STRING_COLUMNS
FLOAT_COLUMNS = _FLOAT_COLUMNS
INT_COLUMNS = _INT_COLUMNS
#: Columns added to format v1 after its first stores were written, with the value they take
#: in those older stores (readers fill it; ``compensation_grade`` is then also recovered from
#: a numeric ``coil_type``, see :func:`brainfm.data.coils.split_coil_type`).
ADDED_COLUMNS: dict[str, int] = {"compensation_grade": 0}

#: Coordinate frames of channel positions, the public vocabulary of ``Batch.frame_ids``:
#: ``head`` (MNE's head frame from nasion and preauricular points: EEG, MEG with a
#: device-to-head transform, BIDS ``CapTrak``), ``device`` (MEG helmet frame, no transform
#: known), ``mri`` (the subject's MRI, FreeSurfer surface RAS), ``mni_tal`` (MNI template
#: spaces: MNI305, ``fsaverage``, the MNI152 family, Talairach), ``fs_tal`` (FreeSurfer
#: Talairach), ``ras`` (scanner RAS; BIDS ``ACPC`` and ``ScanRAS``). Ids never change; new
#: frames get new ids. A frame outside this list (``Other``, ``Pixels``, an unknown frame)
#: has id -1: the position is kept in the store but is not usable across recordings.
FRAME_IDS: dict[str, int] = {"head": 0, "device": 1, "mri": 2, "mni_tal": 3, "fs_tal": 4, "ras": 5}
# Declared spaces (BIDS coordinate systems, lower case) -> FRAME_IDS names; mne-bids maps
# BIDS spaces onto MNE frames the same way (mne_bids.config.BIDS_TO_MNE_FRAMES).
_FRAME_ALIASES: dict[str, str] = {
    "captrak": "head", "elektaneuromag": "head", "chietiitab": "head",
    "acpc": "ras", "scanras": "ras",
    "fsaverage": "mni_tal", "mni305": "mni_tal", "mnicolin27": "mni_tal", "talairach": "mni_tal",
    "mni152lin": "mni_tal", "mni152nlin6sym": "mni_tal", "mni152nlin6asym": "mni_tal",
    **{f"mni152nlin2009{v}{s}": "mni_tal" for v in "abc" for s in ("sym", "asym")},
}


def frame_id(frame: str) -> int:
    """The :data:`FRAME_IDS` id of a channel table ``frame`` value.

    Parameters
    ----------
    frame : str
        A ``frame`` value: an MNE frame name (``"head"``, ``"device"``, ``"mni_tal"``...) or
        a space as an ``electrodes.tsv`` declares it (``"fsaverage"``, ``"MNI152NLin2009cAsym"``,
        ``"ACPC"``), matched case-insensitively.

    Returns
    -------
    frame_id : int
        The id, or -1 for an empty or unknown frame.
    """
    key = str(frame).strip().lower()
    return FRAME_IDS.get(_FRAME_ALIASES.get(key, key), -1)


def empty_channel_table(names: Sequence[str], types: Sequence[str]) -> pd.DataFrame:
    """Make a channel table with the given names and types and every other field unknown.

    Parameters
    ----------
    names : sequence of str
        Channel names.
    types : sequence of str
        Channel types, one per name, from :data:`CHANNEL_TYPES`.

    Returns
    -------
    channels : pandas.DataFrame
        The table, columns in :data:`CHANNEL_COLUMNS` order.
    """
    if len(names) != len(types):
        raise ValueError(f"Got {len(names)} channel names but {len(types)} types.")
    n = len(names)
    table = pd.DataFrame(
        {
            "name": list(names),
            "orig_name": list(names),
            "type": list(types),
            "unit": [UNITS.get(t, "unknown") for t in types],
            "x": np.full(n, np.nan), "y": np.full(n, np.nan), "z": np.full(n, np.nan),
            "ox": np.zeros(n), "oy": np.zeros(n), "oz": np.zeros(n),
            "gx": np.zeros(n), "gy": np.zeros(n), "gz": np.zeros(n),
            "frame": [""] * n,
            "pos_source": ["none"] * n,
            "coil_type": [""] * n,
            "compensation_grade": np.zeros(n, dtype=np.int64),
            "status": ["good"] * n,
            "status_reason": [""] * n,
            "group": [""] * n,
            "region": [""] * n,
        }
    )
    return table[list(CHANNEL_COLUMNS)]


def validate_channel_table(channels: pd.DataFrame) -> None:
    """Raise a ValueError describing the first way ``channels`` breaks the contract.

    Parameters
    ----------
    channels : pandas.DataFrame
        The table to check.
    """
    missing = [c for c in CHANNEL_COLUMNS if c not in channels.columns]
    if missing:
        raise ValueError(f"The channel table lacks the columns {missing}.")
    bad_types = sorted(set(channels["type"]) - set(CHANNEL_TYPES))
    if bad_types:
        raise ValueError(
            f"The channel table holds unknown channel types {bad_types}; allowed are {list(CHANNEL_TYPES)}."
        )
    bad_status = sorted(set(channels["status"]) - {"good", "bad"})
    if bad_status:
        raise ValueError(f"Channel status must be 'good' or 'bad', got {bad_status}.")
    bad_source = sorted(set(channels["pos_source"]) - {"measured", "template", "none"})
    if bad_source:
        raise ValueError(f"pos_source must be 'measured', 'template' or 'none', got {bad_source}.")
    duplicated = channels["name"][channels["name"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"Channel names must be unique; repeated: {duplicated}.")


_SHAFT = re.compile(r"^(?P<stem>.*?)(?P<contact>\d+)$")


def shaft_groups(names: Sequence[str]) -> list[str]:
    """Derive sEEG shaft / ECoG grid names from contact names.

    The group is the name with its trailing contact number removed (``"LA3"`` -> ``"LA"``,
    ``"T1b2"`` -> ``"T1b"``, ``"G12"`` -> ``"G"``); trailing separators are stripped too
    (``"LH-3"`` -> ``"LH"``). A name without a trailing number is its own group.

    Parameters
    ----------
    names : sequence of str
        Contact names.

    Returns
    -------
    groups : list of str
        One group name per contact.
    """
    groups = []
    for name in names:
        match = _SHAFT.match(name.strip())
        stem = match.group("stem").rstrip(" -_'") if match else name.strip()
        groups.append(stem or name.strip())
    return groups
