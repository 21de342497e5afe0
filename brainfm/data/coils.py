"""MEG coils: the coil type's name, its compensation grade and the sensor class it belongs to.

MNE describes every MEG channel by a FIFF coil type (``info['chs'][i]['coil_type']``). For
CTF data MNE keeps the gradient compensation grade in the upper 16 bits of that number:
a CTF axial gradiometer read at third-order compensation has coil type
``3 << 16 | 5001 = 201609`` (``FIFFV_COIL_CTF_GRAD`` = 5001, grade 3 = G3BR).
:func:`split_coil_type` takes the two apart; the channel table stores the coil's name in
``coil_type`` and the grade in ``compensation_grade``.

The sensor class comes from the coil, not from MNE's channel kind: MNE calls CTF, KIT, 4D
and other axial gradiometers ``mag`` (their signal is a flux difference in tesla), while
BrainOmni's sensor types (EEG 0, magnetometer 1, planar *and* axial gradiometer 2) put them
with the gradiometers. :data:`COIL_CLASSES` lists the MEG coils of MNE 1.13's FIFF
constants by name, with the class MNE's own coil definitions (``mne/data/coil_def.dat``)
give them (a test checks the two agree).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from brainfm.data.channels import MEG_TYPES, SENSOR_TYPE_IDS

__all__ = [
    "COIL_CLASSES",
    "coil_class",
    "coil_type_name",
    "sensor_type_ids",
    "split_coil_type",
]

_MAG, _AXIAL, _PLANAR = "magnetometer", "axial_gradiometer", "planar_gradiometer"
_REF_MAG, _REF_GRAD = "reference_magnetometer", "reference_gradiometer"

#: Sensor class of each MEG coil, by FIFF constant name: ``magnetometer``,
#: ``planar_gradiometer``, ``axial_gradiometer``, or ``reference_magnetometer`` /
#: ``reference_gradiometer`` for the reference sensors of CTF, 4D, KIT, BabyMEG and
#: Artemis123 systems (left out of stores at ingest, as BrainOmni does).
COIL_CLASSES: dict[str, str] = {
    "FIFFV_COIL_NM_122": _PLANAR,
    "FIFFV_COIL_NM_24": _PLANAR,
    "FIFFV_COIL_NM_MCG_AXIAL": _AXIAL,
    "FIFFV_COIL_POINT_MAGNETOMETER": _MAG,
    "FIFFV_COIL_AXIAL_GRAD_5CM": _AXIAL,
    "FIFFV_COIL_VV_PLANAR_W": _PLANAR,
    "FIFFV_COIL_VV_PLANAR_T1": _PLANAR,
    "FIFFV_COIL_VV_PLANAR_T2": _PLANAR,
    "FIFFV_COIL_VV_PLANAR_T3": _PLANAR,
    "FIFFV_COIL_VV_PLANAR_T4": _PLANAR,
    "FIFFV_COIL_VV_MAG_W": _MAG,
    "FIFFV_COIL_VV_MAG_T1": _MAG,
    "FIFFV_COIL_VV_MAG_T2": _MAG,
    "FIFFV_COIL_VV_MAG_T3": _MAG,
    "FIFFV_COIL_VV_MAG_T4": _MAG,
    "FIFFV_COIL_MAGNES_MAG": _MAG,
    "FIFFV_COIL_MAGNES_GRAD": _AXIAL,
    "FIFFV_COIL_MAGNES_REF_MAG": _REF_MAG,
    "FIFFV_COIL_MAGNES_REF_GRAD": _REF_GRAD,
    "FIFFV_COIL_MAGNES_OFFDIAG_REF_GRAD": _REF_GRAD,
    "FIFFV_COIL_CTF_GRAD": _AXIAL,
    "FIFFV_COIL_CTF_REF_MAG": _REF_MAG,
    "FIFFV_COIL_CTF_REF_GRAD": _REF_GRAD,
    "FIFFV_COIL_CTF_OFFDIAG_REF_GRAD": _REF_GRAD,
    "FIFFV_COIL_KIT_GRAD": _AXIAL,
    "FIFFV_COIL_KIT_REF_MAG": _REF_MAG,
    "FIFFV_COIL_BABY_GRAD": _AXIAL,
    "FIFFV_COIL_BABY_MAG": _MAG,
    "FIFFV_COIL_BABY_REF_MAG": _REF_MAG,
    "FIFFV_COIL_BABY_REF_MAG2": _REF_MAG,
    "FIFFV_COIL_ARTEMIS123_GRAD": _AXIAL,
    "FIFFV_COIL_ARTEMIS123_REF_MAG": _REF_MAG,
    "FIFFV_COIL_ARTEMIS123_REF_GRAD": _REF_GRAD,
    "FIFFV_COIL_QUSPIN_ZFOPM_MAG": _MAG,
    "FIFFV_COIL_QUSPIN_ZFOPM_MAG2": _MAG,
    "FIFFV_COIL_FIELDLINE_OPM_MAG_GEN1": _MAG,
    "FIFFV_COIL_KERNEL_OPM_MAG_GEN1": _MAG,
    "FIFFV_COIL_KRISS_GRAD": _AXIAL,
    "FIFFV_COIL_COMPUMEDICS_ADULT_GRAD": _AXIAL,
    "FIFFV_COIL_COMPUMEDICS_PEDIATRIC_GRAD": _AXIAL,
}
# Sensor class -> BrainOmni sensor type (channel type name of SENSOR_TYPE_IDS).
_CLASS_SENSOR_TYPE = {_MAG: "mag", _REF_MAG: "mag", _AXIAL: "grad", _PLANAR: "grad", _REF_GRAD: "grad"}


@functools.cache
def _coil_names() -> dict[int, str]:
    from mne.io.constants import FIFF

    names: dict[int, str] = {}
    for key, value in FIFF.items():
        if key.startswith("FIFFV_COIL_"):
            names.setdefault(int(value), key)
    return names


def split_coil_type(coil_type: Any) -> tuple[int, int]:
    """Split an MNE coil type number into the coil and the compensation grade.

    Parameters
    ----------
    coil_type : int
        ``info['chs'][i]['coil_type']`` (``201609`` for a CTF gradiometer at grade 3).

    Returns
    -------
    coil : int
        The FIFF coil type (lower 16 bits; ``5001``).
    grade : int
        The compensation grade (upper 16 bits; ``3``), 0 when uncompensated.
    """
    value = int(coil_type)
    return value & 0xFFFF, value >> 16


def coil_type_name(coil_type: Any) -> str:
    """Name the coil of a FIFF coil type, without its compensation grade.

    Parameters
    ----------
    coil_type : int
        ``info['chs'][i]['coil_type']``; ``3012`` -> ``"FIFFV_COIL_VV_PLANAR_T1"``,
        ``201609`` (CTF gradiometer at grade 3) -> ``"FIFFV_COIL_CTF_GRAD"``.

    Returns
    -------
    name : str
        The constant's name, or the coil number as a string when MNE does not know it.
    """
    coil, _ = split_coil_type(coil_type)
    return _coil_names().get(coil, str(coil))


def coil_class(name: str) -> str | None:
    """The sensor class of a coil (see :data:`COIL_CLASSES`).

    Parameters
    ----------
    name : str
        A channel table ``coil_type`` value: a FIFF constant name, or, as stores written
        before the grade was split off hold, the coil type as a number (``"201609"``).

    Returns
    -------
    sensor_class : str | None
        ``"magnetometer"``, ``"planar_gradiometer"``, ``"axial_gradiometer"``,
        ``"reference_magnetometer"``, ``"reference_gradiometer"``, or ``None`` for an empty
        or unknown coil.
    """
    name = str(name).strip()
    if name.isdigit():
        name = coil_type_name(int(name))
    return COIL_CLASSES.get(name)


def _coil_name(coil: str) -> str:
    """A channel table ``coil_type`` value as a coil name (numbers, as older stores hold them, named)."""
    coil = str(coil).strip()
    return coil_type_name(int(coil)) if coil.isdigit() else coil


def sensor_type_ids(types: Sequence[str], coil_types: Sequence[str]) -> np.ndarray:
    """Sensor-type ids (:data:`~brainfm.data.channels.SENSOR_TYPE_IDS`) typed from the coil.

    MEG channels take the type of their coil's class: magnetometers 1, planar and axial
    gradiometers 2 (BrainOmni: EEG 0, MAG 1, GRAD 2), so CTF and KIT channels, which MNE
    types ``mag``, are 2. A coil this table does not know follows the reference's rule
    (BrainOmni spec §3.2 item 4): 1 when its name contains ``MAG``, otherwise 2. MEG channels
    without a coil keep the id of their channel type; every other channel has the id of its
    type. (The reference's substring rule would also make 4D's ``FIFFV_COIL_MAGNES_GRAD``
    axial gradiometers 1; the class table types them 2, as gradiometers.)

    Parameters
    ----------
    types : sequence of str
        Channel types (the channel table's ``type`` column).
    coil_types : sequence of str
        Coil names (its ``coil_type`` column).

    Returns
    -------
    ids : numpy.ndarray of int64, shape (n_channels,)
        One id per channel.
    """
    if len(types) != len(coil_types):
        raise ValueError(f"Got {len(types)} channel types but {len(coil_types)} coil types.")
    out = np.empty(len(types), dtype=np.int64)
    for i, (ch_type, coil) in enumerate(zip(types, coil_types, strict=True)):
        sensor = ch_type
        if ch_type in MEG_TYPES:
            known = coil_class(coil)
            if known is not None:
                sensor = _CLASS_SENSOR_TYPE[known]
            elif str(coil).strip():  # a coil MNE's table lacks: the reference's name rule
                sensor = "mag" if "MAG" in _coil_name(coil).upper() else "grad"
        out[i] = SENSOR_TYPE_IDS[sensor]
    return out
