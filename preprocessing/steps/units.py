"""Unit check: is each sensor type's typical amplitude plausible for its SI unit?

A wrong unit or gain in a file header (microvolt numbers labelled as volts, femtotesla as
tesla) leaves amplitudes off by powers of ten. This step measures and reports; it never
rescales, because a real recording can be unusual (the SSVEP exoskeleton EEG is ~1000x
larger than typical EEG, and must be stored as it is, with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from jsonargparse.typing import PositiveFloat

from brainfm._check import check_option, validate_type
from brainfm.data.channels import CHANNEL_TYPES, UNITS
from brainfm.errors import DataQualityError
from brainfm.preprocessing.steps._blocks import row_stats
from brainfm.preprocessing.steps.base import RecordingStep, SignalState
from brainfm.store.format import STAT_NAMES

__all__ = ["PLAUSIBLE_RANGES", "TYPICAL_AMPLITUDE", "UnitCheck", "likely_cause"]

#: Plausible median (over good channels) of the per-channel standard deviation, SI units.
#: EEG: 0.2 uV (a live electrode after a high-pass is above the amplifier's noise floor) to
#: 500 uV (beyond that, artefact or saturation dominates). iEEG: up to 5 mV (contacts sit
#: on or in the cortex; seizures reach mV). Magnetometers: 1 fT (SQUID noise floor) to
#: 50 pT (unshielded environmental noise). Planar gradiometers: 1e-14 to 1e-9 T/m
#: (0.1 fT/cm to 10 pT/cm). Measured on the test recordings: EEG 0.7-160 uV, ECoG/sEEG
#: ~20 uV, MEG mag 0.3-5 pT, grad 13 pT/m; SSVEP exoskeleton EEG 7.6 mV (flagged, stored).
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "eeg": (2e-7, 5e-4),
    "seeg": (2e-7, 5e-3),
    "ecog": (2e-7, 5e-3),
    "dbs": (2e-7, 5e-3),
    "mag": (1e-15, 5e-11),
    "grad": (1e-14, 1e-9),
}
#: Typical amplitude of each type, SI units: what "n times too large" is measured against.
TYPICAL_AMPLITUDE: dict[str, float] = {
    "eeg": 2e-5, "seeg": 5e-5, "ecog": 5e-5, "dbs": 5e-5, "mag": 3e-13, "grad": 5e-12,
}
# (unit, power of ten of the excess) -> what probably happened
_CAUSES: dict[tuple[str, int], str] = {
    ("V", 6): "microvolt values labelled as volts?",
    ("V", 3): "millivolt values labelled as volts, or an amplifier gain not removed?",
    ("V", -3): "volts converted to kilovolts, or a gain applied twice?",
    ("V", -6): "values divided by 1e6 twice (volts converted to 'volts' again)?",
    ("T", 15): "femtotesla values labelled as tesla?",
    ("T", 12): "picotesla values labelled as tesla?",
    ("T", 9): "nanotesla values labelled as tesla?",
    ("T/m", 13): "fT/cm values labelled as T/m?",
    ("T/m", 15): "fT/m values labelled as T/m?",
    ("T/m", 2): "T/cm values labelled as T/m?",
    ("T/m", -2): "T/m values divided by 100 (a baseline in cm taken as m)?",
}


def likely_cause(value: float, typical: float, unit: str) -> str:
    """Describe how far ``value`` is from ``typical`` and what probably caused it.

    Parameters
    ----------
    value : float
        Measured amplitude (SI units).
    typical : float
        Typical amplitude of the type (SI units).
    unit : str
        SI unit of the type (``"V"``, ``"T"``, ``"T/m"``).

    Returns
    -------
    text : str
        E.g. ``"it looks about 1e3 times too large: millivolt values labelled as volts, or
        an amplifier gain not removed?"``.
    """
    if value <= 0:
        return "every good channel is flat (constant): a disconnected amplifier or an empty file?"
    exponent = float(np.log10(value / typical))
    power = int(np.round(exponent))
    direction = "large" if exponent > 0 else "small"
    for candidate in sorted({power, 3 * int(np.round(exponent / 3))}, key=lambda p: abs(p - exponent)):
        cause = _CAUSES.get((unit, candidate))
        if cause is not None and abs(candidate - exponent) <= 1:
            return f"it looks about 1e{abs(candidate)} times too {direction}: {cause}"
    return f"it is about 1e{abs(power)} times too {direction}: check the file's unit and calibration (gain)"


@dataclass
class UnitCheck(RecordingStep):
    """Check that each sensor type's typical amplitude is plausible for its SI unit.

    The measured amplitude is the median, over the type's good channels, of each channel's
    standard deviation over the recording. It is compared with :data:`PLAUSIBLE_RANGES`
    (documented there) or ``ranges``. Types without a range (EOG, ECG, EMG, misc unless
    given) and types absent from the recording are skipped. The data are never rescaled.

    Parameters
    ----------
    on_implausible : "warn" | "raise" | "ignore"
        ``"warn"``: add a warning to the recording naming the type, the measured value, the
        range and the likely cause (e.g. "it looks about 1e6 times too large: microvolt
        values labelled as volts?"); ``"raise"``: raise
        :class:`~brainfm.errors.DataQualityError` with that text; ``"ignore"``: only record
        the measurement in the provenance.
    ranges : dict of str to list of float | None
        ``{type: [low, high]}`` in SI units, replacing or adding to the default ranges.
    """

    name: ClassVar[str] = "units"
    on_implausible: Literal["warn", "raise", "ignore"] = "warn"
    ranges: dict[str, tuple[PositiveFloat, PositiveFloat]] | None = None

    def __post_init__(self) -> None:
        check_option("on_implausible", self.on_implausible, ("warn", "raise", "ignore"))
        if self.ranges is not None:
            validate_type("ranges", self.ranges, dict)
            for kind, bounds in self.ranges.items():
                check_option("ranges", kind, CHANNEL_TYPES)
                ok = isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(
                    isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds
                )
                if not ok or not 0 < bounds[0] < bounds[1]:
                    raise ValueError(
                        f"Invalid value for the 'ranges' parameter: {kind!r} needs [low, high] with "
                        f"0 < low < high in SI units, but got {bounds!r} instead."
                    )
            self.ranges = {kind: [float(b) for b in bounds] for kind, bounds in self.ranges.items()}

    def apply(self, state: SignalState) -> dict[str, Any]:
        ranges = {**{k: list(v) for k, v in PLAUSIBLE_RANGES.items()}, **(self.ranges or {})}
        present = list(dict.fromkeys(state.channels["type"]))
        effect: dict[str, Any] = {"implausible": []}
        problems: list[str] = []
        for kind in [t for t in present if t in ranges]:
            rows = state.rows([kind], good_only=True)
            if not len(rows):
                effect[kind] = {"skipped": "no good channel"}
                continue
            low, high = ranges[kind]
            value = float(np.median(row_stats(state.data, rows)[:, STAT_NAMES.index("std")]))
            unit = UNITS.get(kind, "unknown")
            plausible = low <= value <= high
            effect[kind] = {"median_std": value, "range": [low, high], "unit": unit, "n_channels": int(len(rows)), "plausible": plausible}
            if plausible:
                continue
            typical = TYPICAL_AMPLITUDE.get(kind, float(np.sqrt(low * high)))
            effect["implausible"].append(kind)
            problems.append(
                f"{state.relpath or 'recording'}: {kind} amplitude {value:.3g} {unit} (median over {len(rows)} good "
                f"channels of their standard deviation) lies outside the plausible range [{low:.3g}, {high:.3g}] "
                f"{unit}; {likely_cause(value, typical, unit)}"
            )
        if problems and self.on_implausible == "raise":
            raise DataQualityError(
                " ".join(problems) + " Fix the unit or gain at the source, or set units: {on_implausible: warn} "
                "in the recipe to store the data unscaled with a warning."
            )
        if self.on_implausible == "warn":
            state.warnings += [f"units: {p} Stored unscaled." for p in problems]
        return effect
