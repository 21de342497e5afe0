"""Re-referencing per sensor type: common average, sEEG bipolar pairs, shaft Laplacian.

Every sensor type gets its own scheme, so EEG and iEEG, or ECoG grids and sEEG shafts, in
one recording are each referenced among their own kind. Then, optionally, channels in
unwanted atlas regions are dropped (BaRISTA drops grid and ventricle contacts after its
Laplacian; keeping that in this step means the Laplacian can still use those contacts as
neighbours, as the reference does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from brainfm._check import check_option, validate_type
from brainfm.data.channels import shaft_groups
from brainfm.errors import DataQualityError
from brainfm.preprocessing.steps._blocks import time_blocks
from brainfm.preprocessing.steps.base import RecordingStep, SignalState

__all__ = ["Reference", "average_reference"]

_SCHEMES: dict[str, tuple[str, ...]] = {
    "eeg": ("average", "none"),
    "ecog": ("average", "none"),
    "seeg": ("none", "average", "bipolar", "laplacian"),
    "dbs": ("none", "average", "bipolar", "laplacian"),
    "mag": ("none",),
    "grad": ("none",),
}
_CONTACT = re.compile(r"(\d+)$")
_POS = ["x", "y", "z"]


def average_reference(data: np.ndarray, rows: np.ndarray, good_rows: np.ndarray) -> None:
    """Subtract the mean of ``good_rows`` from every row in ``rows``, in place, per time block.

    The mean is accumulated in float64 over blocks of samples, so no float64 copy of the
    whole signal is made.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_channels, n_times)
        float32 signal, changed in place.
    rows : numpy.ndarray of int
        Rows re-referenced (good and bad channels of the type).
    good_rows : numpy.ndarray of int
        Rows averaged (the good channels of the type).
    """
    rows = np.asarray(rows, dtype=int)
    good_rows = np.asarray(good_rows, dtype=int)
    contiguous = len(rows) > 0 and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))
    for start, stop in time_blocks(0, data.shape[1], max(len(good_rows), len(rows))):
        mean = data[good_rows, start:stop].mean(axis=0, dtype=np.float64).astype(data.dtype)  # (block,)
        if contiguous:
            data[rows[0] : rows[0] + len(rows), start:stop] -= mean
        else:
            block = data[rows, start:stop]  # (len(rows), block) copy
            block -= mean
            data[rows, start:stop] = block


def _contacts(channels: pd.DataFrame, rows: np.ndarray) -> dict[str, dict[int, int]]:
    """Shaft -> {contact number -> row}, shafts from ``group`` (or the name stem), numbers from names."""
    names = channels["name"].to_numpy()
    groups = channels["group"].to_numpy()
    derived = shaft_groups([str(names[r]) for r in rows])
    shafts: dict[str, dict[int, int]] = {}
    for row, stem in zip(rows, derived, strict=True):
        match = _CONTACT.search(str(names[row]))
        if match is None:
            continue
        shaft = str(groups[row]) or stem
        shafts.setdefault(shaft, {})[int(match.group(1))] = int(row)
    return shafts


@dataclass
class _Derived:
    """One output row: a weighted sum of input rows, and its channel-table row."""

    terms: list[tuple[int, float]]
    table_row: int
    name: str | None = None
    orig_name: str | None = None
    position: np.ndarray | None = None
    region: str | None = None
    bad_reason: str | None = None


@dataclass
class Reference(RecordingStep):
    """Re-reference each sensor type, then optionally drop channels by atlas region.

    Schemes per type:

    * ``"average"``: subtract, at every sample, the mean over the type's *good* channels
      from every channel of the type (bad ones included, so they stay comparable; they do
      not contribute). Computed per block of samples in float64, applied in place.
    * ``"bipolar"`` (sEEG, DBS): each pair of contacts numbered n and n + 1 on the same
      shaft (the ``group`` column, or the name without its trailing number when empty;
      contact numbers from the trailing digits of the name) becomes one channel
      ``"<name_n>-<name_n+1>"`` = x_n - x_(n+1), at the midpoint of the two positions, of
      the same type, bad when either contact is bad (reason names the contact). Pairs are
      strictly adjacent numbers: a missing contact leaves a gap rather than a wider bipole.
      Contacts in no pair (last contact, contacts without a number) are dropped.
    * ``"laplacian"`` (sEEG, DBS; BaRISTA): x_n - (x_(n-1) + x_(n+1)) / 2 with the
      neighbours numbered n - 1 and n + 1 on the same shaft, taken from every channel of
      the type whatever its status (as the reference does). The channel keeps its name and
      position; it is bad when it or a neighbour is bad. A contact lacking a neighbour
      follows ``laplacian_edges``.
    * ``"none"``: unchanged. MEG (``mag``, ``grad``) only allows ``"none"``: SQUIDs measure
      the magnetic field itself, there is no electrical reference to change (noise
      compensation and SSP are other operations).

    Bipolar and Laplacian change the channel set: ``state.data`` and ``state.channels`` are
    rebuilt together, in the original channel order, keeping the table's columns and dtypes.

    Parameters
    ----------
    eeg : "average" | "none"
        Scheme for EEG.
    ecog : "average" | "none"
        Scheme for ECoG.
    seeg : "none" | "average" | "bipolar" | "laplacian"
        Scheme for sEEG.
    dbs : "none" | "average" | "bipolar" | "laplacian"
        Scheme for DBS contacts.
    mag, grad : "none"
        MEG is never re-referenced.
    laplacian_edges : "drop" | "one_sided" | "raise"
        A contact without both neighbours: ``"drop"`` it (shaft ends and contacts next to a
        numbering gap); ``"one_sided"``: x_n minus its one neighbour (contacts with none are
        dropped); ``"raise"``: like the reference, whose channel list never holds shaft ends,
        shaft ends (the lowest and highest contact of each shaft) are dropped and any other
        contact missing a neighbour is a :class:`~brainfm.errors.DataQualityError`.
    exclude_regions : list of str
        After re-referencing, drop channels whose ``region`` label contains any of these
        substrings, case-insensitively (BaRISTA: ``["GRID", "VENT"]``, which matches
        ``"Left-Lateral-Ventricle"``). A bipolar channel's region is ``"<r1>|<r2>"`` when its
        contacts differ, so either label excludes it.
    """

    name: ClassVar[str] = "reference"
    eeg: Literal["average", "none"] = "average"
    ecog: Literal["average", "none"] = "none"
    seeg: Literal["none", "average", "bipolar", "laplacian"] = "none"
    dbs: Literal["none", "average", "bipolar", "laplacian"] = "none"
    mag: Literal["none"] = "none"
    grad: Literal["none"] = "none"
    laplacian_edges: Literal["drop", "one_sided", "raise"] = "drop"
    exclude_regions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for kind, allowed in _SCHEMES.items():
            check_option(kind, getattr(self, kind), allowed)
        check_option("laplacian_edges", self.laplacian_edges, ("drop", "one_sided", "raise"))
        validate_type("exclude_regions", self.exclude_regions, (list, tuple))
        for pattern in self.exclude_regions:
            validate_type("exclude_regions", pattern, str)
            if not pattern:
                raise ValueError("Invalid value for the 'exclude_regions' parameter: an empty string matches every channel.")
        self.exclude_regions = list(self.exclude_regions)

    def apply(self, state: SignalState) -> dict[str, Any]:
        effect: dict[str, Any] = {}
        derived: dict[int, list[_Derived]] = {}  # anchor row -> output rows in its place
        replaced: set[int] = set()
        for kind in _SCHEMES:
            scheme = getattr(self, kind)
            rows = state.rows([kind])
            if scheme == "none" or not len(rows):
                continue
            if scheme == "average":
                effect[kind] = self._average(state, kind, rows)
                continue
            plan, info = self._bipolar(state, rows) if scheme == "bipolar" else self._laplacian(state, rows)
            effect[kind] = {"scheme": scheme, **info}
            replaced.update(int(r) for r in rows)
            for item in plan:
                derived.setdefault(item.table_row, []).append(item)

        keep_rows: list[int] = []  # input row of every output row (its table row)
        outputs: list[_Derived | None] = []  # None: copied unchanged
        for row in range(state.data.shape[0]):
            if row not in replaced:
                keep_rows.append(row)
                outputs.append(None)
            for item in derived.get(row, []):
                keep_rows.append(row)
                outputs.append(item)
        if replaced:
            self._rebuild(state, keep_rows, outputs)
        if self.exclude_regions:
            effect["excluded_by_region"] = self._exclude(state)
        return effect

    # -- schemes -----------------------------------------------------------------------

    def _average(self, state: SignalState, kind: str, rows: np.ndarray) -> dict[str, Any]:
        names = state.channels["name"].to_numpy()
        good = state.rows([kind], good_only=True)
        if not len(good):
            state.warnings.append(f"reference: every {kind} channel is bad; {kind} left unreferenced")
            return {"scheme": "none", "reason": "no good channel"}
        average_reference(state.data, rows, good)
        bad = sorted(set(rows.tolist()) - set(good.tolist()))
        return {"scheme": "average", "n_averaged": int(len(good)), "left_out_bad": [str(names[r]) for r in bad]}

    def _bipolar(self, state: SignalState, rows: np.ndarray) -> tuple[list[_Derived], dict[str, Any]]:
        table = state.channels
        names, status, reasons = (table[c].to_numpy() for c in ("name", "status", "status_reason"))
        orig, regions = table["orig_name"].to_numpy(), table["region"].to_numpy()
        positions = table[_POS].to_numpy(dtype=np.float64)
        plan: list[_Derived] = []
        used: set[int] = set()
        for contacts in _contacts(table, rows).values():
            for number in sorted(contacts):
                if number + 1 not in contacts:
                    continue
                a, b = contacts[number], contacts[number + 1]
                used.update((a, b))
                bad = [f"{names[r]} bad ({reasons[r] or 'no reason'})" for r in (a, b) if status[r] == "bad"]
                region = regions[a] if regions[a] == regions[b] else f"{regions[a]}|{regions[b]}"
                plan.append(_Derived(
                    terms=[(a, 1.0), (b, -1.0)], table_row=a, name=f"{names[a]}-{names[b]}",
                    orig_name=f"{orig[a]}-{orig[b]}", position=(positions[a] + positions[b]) / 2,
                    region=region, bad_reason=f"bipolar: {', '.join(bad)}" if bad else None,
                ))
        dropped = [str(names[r]) for r in rows if r not in used]
        return plan, {"n_pairs": len(plan), "pairs": [p.name for p in plan], "dropped": dropped}

    def _laplacian(self, state: SignalState, rows: np.ndarray) -> tuple[list[_Derived], dict[str, Any]]:
        table = state.channels
        names, status, reasons = (table[c].to_numpy() for c in ("name", "status", "status_reason"))
        plan: list[_Derived] = []
        dropped: list[str] = []
        one_sided: list[str] = []
        missing: list[str] = []
        numbered: set[int] = set()
        for contacts in _contacts(table, rows).values():
            numbered.update(contacts.values())
            lowest, highest = min(contacts), max(contacts)
            for number in sorted(contacts):
                row = contacts[number]
                neighbours = [contacts[n] for n in (number - 1, number + 1) if n in contacts]
                if len(neighbours) < 2:
                    if self.laplacian_edges == "raise" and lowest < number < highest:
                        missing.append(str(names[row]))
                    if self.laplacian_edges != "one_sided" or not neighbours:
                        dropped.append(str(names[row]))
                        continue
                    one_sided.append(str(names[row]))
                weight = -1.0 / len(neighbours)
                bad = [f"{names[r]} bad ({reasons[r] or 'no reason'})" for r in neighbours if status[r] == "bad"]
                reason = None
                if bad and status[row] != "bad":
                    reason = f"laplacian: neighbour {', '.join(bad)}"
                plan.append(_Derived(terms=[(row, 1.0)] + [(r, weight) for r in neighbours], table_row=row, bad_reason=reason))
        if missing:
            raise DataQualityError(
                f"{state.relpath or 'recording'}: the shaft Laplacian needs both neighbours of every inner "
                f"contact, but {missing} lack one (a contact number is missing on their shaft). Use "
                f"laplacian_edges='drop' or 'one_sided' to keep going without them."
            )
        dropped += [str(names[r]) for r in rows if r not in numbered]
        return plan, {"n_channels": len(plan), "dropped": dropped, "one_sided": one_sided}

    # -- rebuilding the channel set ---------------------------------------------------

    @staticmethod
    def _rebuild(state: SignalState, keep_rows: list[int], outputs: list[_Derived | None]) -> None:
        old = state.data
        table = state.channels.iloc[keep_rows].reset_index(drop=True)
        data = np.empty((len(keep_rows), old.shape[1]), dtype=old.dtype)
        for out, (row, item) in enumerate(zip(keep_rows, outputs, strict=True)):
            if item is None:
                data[out] = old[row]
                continue
            acc = np.zeros(old.shape[1])  # one float64 row
            for source, weight in item.terms:
                acc += weight * old[source]
            data[out] = acc
        state.data = data
        del old
        # writable copies (pandas' copy-on-write hands out read-only views)
        names, orig = np.array(table["name"], dtype=object), np.array(table["orig_name"], dtype=object)
        regions, status, reasons = (np.array(table[c], dtype=object) for c in ("region", "status", "status_reason"))
        positions = np.array(table[_POS], dtype=np.float64)
        sources = np.array(table["pos_source"], dtype=object)
        for out, item in enumerate(outputs):
            if item is None:
                continue
            if item.name is not None:
                names[out], orig[out], regions[out] = item.name, item.orig_name, item.region
                positions[out] = item.position
                if not np.isfinite(item.position).all():
                    sources[out] = "none"
            if item.bad_reason is not None:
                status[out], reasons[out] = "bad", item.bad_reason
        for column, values in (("name", names), ("orig_name", orig), ("region", regions), ("status", status),
                               ("status_reason", reasons), ("pos_source", sources)):
            table[column] = pd.array(values, dtype=table[column].dtype)
        for axis, column in enumerate(_POS):
            table[column] = positions[:, axis]
        state.channels = table

    def _exclude(self, state: SignalState) -> list[str]:
        patterns = [p.lower() for p in self.exclude_regions]
        regions = state.channels["region"].astype(str).str.lower()
        drop = regions.map(lambda label: any(p in label for p in patterns)).to_numpy(dtype=bool)
        if not drop.any():
            return []
        dropped = state.channels["name"][drop].tolist()
        keep = np.flatnonzero(~drop)
        state.data = state.data[keep]
        state.channels = state.channels.iloc[keep].reset_index(drop=True)
        return [str(n) for n in dropped]
