"""Regions for iEEG contacts without an atlas label, from their shaft and coordinates.

BaRISTA groups channels by atlas region (``specs/barista.md`` §5). Atlas labels come from the
source (``electrodes.tsv`` columns such as ``anatomy`` or ``destrieux``, the Brain Treebank's
``depth-wm.csv``). Where a contact has none, this step derives one from its shaft:

* ``shaft:<group>`` for the whole shaft (``group`` column: the shaft or grid name), or
* with ``segment_mm`` and known positions, the shaft cut into segments: contacts are taken
  in contact-number order and a new segment starts when a contact lies farther than
  ``segment_mm`` from the first contact of the current one: ``shaft:<group>/<k>``.

Contacts of one segment sit within ``segment_mm`` of each other along the shaft, so a
segment plays the part of a small region; labels of different recordings are not comparable
(shaft names repeat across subjects), which is why they carry the ``shaft:`` prefix
(:data:`brainfm.data.atlas.SHAFT_REGION_PREFIX`) and never map to a lobe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from brainfm._check import check_option
from brainfm.data.atlas import SHAFT_REGION_PREFIX
from brainfm.data.channels import IEEG_TYPES, shaft_groups
from brainfm.preprocessing.steps.base import RecordingStep, SignalState

__all__ = ["Regions"]

_CONTACT = re.compile(r"(\d+)$")


@dataclass
class Regions(RecordingStep):
    """Fill the ``region`` of iEEG channels that have no atlas label.

    Parameters
    ----------
    fallback : "shaft" | "none"
        ``"shaft"``: derive a region from the shaft (see the module docstring); ``"none"``:
        leave such channels without a region (region-scale models then refuse the recording).
    segment_mm : float | None
        Cut shafts into segments of contacts within this many millimetres of the segment's
        first contact, where every contact of the shaft has a position; None keeps whole
        shafts.
    """

    name: ClassVar[str] = "regions"
    fallback: Literal["shaft", "none"] = "shaft"
    segment_mm: float | None = 15.0

    def __post_init__(self) -> None:
        check_option("fallback", self.fallback, ("shaft", "none"))
        if self.segment_mm is not None and not self.segment_mm > 0:
            raise ValueError(f"Invalid value for the 'segment_mm' parameter: must be > 0 or null, got {self.segment_mm}.")

    def apply(self, state: SignalState) -> dict[str, Any]:
        table = state.channels
        rows = np.asarray(state.rows(list(IEEG_TYPES)), dtype=int)
        empty = [int(r) for r in rows if not str(table.at[r, "region"]).strip()]
        effect: dict[str, Any] = {"atlas": len(rows) - len(empty), "derived": 0}
        if self.fallback == "none" or not empty:
            return effect
        names = [str(table.at[r, "name"]) for r in empty]
        stems = shaft_groups(names)
        shafts: dict[str, list[int]] = {}
        for row, stem in zip(empty, stems, strict=True):
            shafts.setdefault(str(table.at[row, "group"]).strip() or stem, []).append(row)
        for shaft, members in shafts.items():
            for row, label in zip(members, self._segments(table, shaft, members), strict=True):
                table.at[row, "region"] = label
        effect["derived"] = len(empty)
        effect["shafts"] = len(shafts)
        return effect

    def _segments(self, table: Any, shaft: str, rows: list[int]) -> list[str]:
        """Region label of each row of one shaft."""
        base = f"{SHAFT_REGION_PREFIX}{shaft}"
        xyz = table.loc[rows, ["x", "y", "z"]].to_numpy(np.float64) * 1000.0  # (n, 3) mm
        if self.segment_mm is None or not np.isfinite(xyz).all():
            return [base] * len(rows)
        numbers = []
        for row in rows:
            match = _CONTACT.search(str(table.at[row, "name"]))
            numbers.append(int(match.group(1)) if match else -1)
        order = np.argsort(numbers, kind="stable")
        labels = [""] * len(rows)
        segment, anchor = 0, xyz[order[0]]
        for i in order:
            if np.linalg.norm(xyz[i] - anchor) > self.segment_mm:
                segment, anchor = segment + 1, xyz[i]
            labels[i] = f"{base}/{segment}"
        return labels
