"""Atlas labels of iEEG contacts: parcels, lobes and the three spatial scales of BaRISTA.

A channel's ``region`` (channel table) holds the atlas label it was given: a FreeSurfer
Destrieux parcel (``ctx_lh_G_temporal_middle``, ``wm_rh_S_central``), a Desikan-Killiany
parcel (``ctx-lh-superiortemporal``) or a subcortical structure (``Left-Hippocampus``).
BaRISTA (``specs/barista.md`` §5) groups channels at three scales:

* **channel**: every channel on its own (its coordinates);
* **region** (parcel): channels sharing an atlas label;
* **lobe**: channels whose parcels fall in the same lobe of the same hemisphere.

Lobes come from the table shipped with brainfm (``brainfm/data/atlas_lobes.tsv``), which
assigns each of the 74 Destrieux and 34 Desikan-Killiany parcels (hemisphere-free names) and
four subcortical structures to one of :data:`LOBES`; the assignment is brainfm's own (sulci
on a lobe boundary go to the lobe of the gyrus they bound: the central sulcus to frontal,
the parieto-occipital sulcus to parietal, the lingual/collateral sulci to temporal). Lobe ids
follow the spec: 0 unknown, then a (left, right) pair per lobe in :data:`LOBES` order (1/2
amygdala, 3/4 hippocampus, 5/6 frontal, 7/8 parietal, 9/10 temporal, 11/12 occipital, 13/14
cingulate, 15/16 insula, 17/18 putamen, 19/20 inferior lateral ventricle).

Region labels that the ``regions`` preprocessing step derived from the shaft
(``shaft:<group>`` or ``shaft:<group>/<k>``; :data:`SHAFT_REGION_PREFIX`) have no lobe.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import resources

__all__ = [
    "LOBES",
    "N_LOBE_IDS",
    "SHAFT_REGION_PREFIX",
    "is_atlas_region",
    "lobe_id",
    "lobe_ids",
    "lobe_name",
    "lobe_table",
    "parse_label",
]

#: Lobes in id order; lobe ``k`` has ids ``2k + 1`` (left) and ``2k + 2`` (right).
LOBES: tuple[str, ...] = (
    "amygdala", "hippocampus", "frontal", "parietal", "temporal", "occipital", "cingulate", "insula",
    "putamen", "inf_lat_vent",
)
#: Number of lobe ids, the unknown id 0 included (21).
N_LOBE_IDS = 2 * len(LOBES) + 1
#: Prefix of the region labels derived from shafts, not from an atlas.
SHAFT_REGION_PREFIX = "shaft:"

_CORTICAL = re.compile(r"^(?:ctx|wm)[-_](?P<hemi>lh|rh)[-_](?P<parcel>.+)$", re.IGNORECASE)
_SUBCORTICAL = re.compile(r"^(?P<hemi>left|right)[-_](?P<parcel>.+)$", re.IGNORECASE)


def _key(name: str) -> str:
    """Spelling-insensitive key: upper case, ``-`` as ``_`` (BaRISTA's enum form)."""
    return str(name).strip().upper().replace("-", "_")


@functools.cache
def lobe_table() -> dict[str, str]:
    """The shipped parcel -> lobe table.

    Returns
    -------
    table : dict of str to str
        Hemisphere-free parcel name in key form (upper case, ``_`` for ``-``) -> lobe name.
    """
    text = resources.files("brainfm.data").joinpath("atlas_lobes.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    header, rows = rows[0], rows[1:]
    if header != ["parcel", "atlas", "lobe"]:
        raise RuntimeError(f"brainfm's atlas_lobes.tsv has the columns {header}; reinstall brainfm.")
    return {_key(parcel): lobe for parcel, _, lobe in rows}


def parse_label(label: str) -> tuple[str, str] | None:
    """Split an atlas label into hemisphere and hemisphere-free parcel.

    Parameters
    ----------
    label : str
        ``ctx_lh_G_front_middle``, ``CTX_RH_S_CENTRAL``, ``wm-lh-insula``, ``Left-Hippocampus``...

    Returns
    -------
    parsed : tuple of (str, str) | None
        ``("left" | "right", parcel)``, or None when the label names no hemisphere.
    """
    text = str(label).strip()
    for pattern in (_CORTICAL, _SUBCORTICAL):
        match = pattern.match(text)
        if match:
            hemi = match["hemi"].lower()
            return ("left" if hemi in ("lh", "left") else "right"), match["parcel"]
    return None


def lobe_name(label: str) -> str | None:
    """The lobe of an atlas label, with its hemisphere (``"left temporal"``), or None."""
    parsed = parse_label(label)
    if parsed is None:
        return None
    lobe = lobe_table().get(_key(parsed[1]))
    return None if lobe is None else f"{parsed[0]} {lobe}"


def lobe_id(label: str) -> int:
    """The BaRISTA lobe id of an atlas label (see the module docstring); 0 when unknown.

    Parameters
    ----------
    label : str
        An atlas label as stored in the channel table's ``region``.

    Returns
    -------
    lobe_id : int
        In ``[0, N_LOBE_IDS)``.
    """
    name = lobe_name(label)
    if name is None:
        return 0
    hemi, lobe = name.split(" ", 1)
    return 2 * LOBES.index(lobe) + 1 + (hemi == "right")


def lobe_ids(labels: Iterable[str]) -> list[int]:
    """:func:`lobe_id` of each label (vocabulary specials such as ``<pad>`` get 0)."""
    return [lobe_id(label) for label in labels]


def is_atlas_region(region: str) -> bool:
    """Whether a stored region is an atlas label (not empty, not derived from a shaft)."""
    text = str(region).strip()
    return bool(text) and not text.startswith(SHAFT_REGION_PREFIX) and not text.startswith("<")
