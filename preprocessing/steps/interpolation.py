"""Interpolate bad EEG channels with MNE's spherical splines, block by block in float32.

Spherical-spline interpolation is linear and time-invariant: every bad channel is a fixed
weighted sum of the good ones. MNE computes those weights inside
``Raw.interpolate_bads``; this step obtains them through the public API alone by
interpolating a small ``RawArray`` whose data is the identity matrix over the good channels
(row i is a unit impulse at sample i, bad rows are zero): the interpolated bad rows *are*
the weight matrix. The weights are then applied to the real signal per block of samples, so
the recording is never copied to float64 as a whole and the result equals
``Raw.interpolate_bads`` on the same data up to float32 rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from brainfm._check import check_option, validate_type
from brainfm.preprocessing.steps._blocks import time_blocks
from brainfm.preprocessing.steps.base import RecordingStep, SignalState

__all__ = ["Interpolate", "interpolation_matrix"]

#: Fewest good EEG channels with positions that interpolation needs.
MIN_GOOD_CHANNELS = 4


def interpolation_matrix(
    names: Sequence[str],
    positions: np.ndarray,
    bad: np.ndarray,
    *,
    mode: str = "accurate",
    origin: str | Sequence[float] = (0.0, 0.0, 0.04),
) -> tuple[np.ndarray, list[str]]:
    """Weights of MNE's EEG interpolation: bad channels as linear combinations of good ones.

    Parameters
    ----------
    names : sequence of str
        EEG channel names (unique).
    positions : numpy.ndarray, shape (n_channels, 3)
        Positions in metres, head frame, all finite.
    bad : numpy.ndarray of bool, shape (n_channels,)
        Which channels to interpolate.
    mode : "accurate" | "fast"
        Passed to :meth:`mne.io.Raw.interpolate_bads`.
    origin : "auto" | sequence of float
        Sphere origin in metres (head frame), or ``"auto"`` to fit a sphere to the positions.

    Returns
    -------
    weights : numpy.ndarray, shape (n_bad, n_good)
        ``data[bad] = weights @ data[good]``.
    messages : list of str
        Warnings MNE raised (e.g. a poor spherical fit).
    """
    import mne

    names = list(names)
    bad = np.asarray(bad, dtype=bool)
    info = mne.create_info(names, 1000.0, "eeg")
    montage = mne.channels.make_dig_montage(ch_pos=dict(zip(names, np.asarray(positions, dtype=float), strict=True)), coord_frame="head")
    info.set_montage(montage)
    impulses = np.eye(len(names))
    impulses[bad] = 0.0  # (n_channels, n_channels): good channel i is an impulse at sample i
    raw = mne.io.RawArray(impulses, info, verbose="error")
    raw.info["bads"] = [n for n, b in zip(names, bad, strict=True) if b]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw.interpolate_bads(reset_bads=False, mode=mode, origin=origin, verbose="error")
    response = raw.get_data()  # (n_channels, n_channels)
    weights = response[np.ix_(bad, ~bad)]  # (n_bad, n_good)
    return weights, [str(w.message) for w in caught]


@dataclass
class Interpolate(RecordingStep):
    """Replace bad EEG channels by spherical-spline interpolation of the good ones (MNE).

    Uses the EEG channels with a known position (``x, y, z`` finite; head frame): the good
    ones as sources, the bad ones as targets. A bad channel without a position cannot be
    interpolated and stays bad (listed under ``not_interpolated`` in the effect); with
    fewer than 4 good positioned channels nothing is interpolated. MEG, iEEG and other types
    are left alone.

    An interpolated channel is good again: its ``status`` becomes ``"good"`` and its
    ``status_reason`` ``"interpolated: <old reason>"`` (e.g. ``"interpolated: flat"``), so
    the loader uses it while the table still tells what happened. Warnings MNE raises (a
    poor spherical fit of the positions) go to the recording's warnings.

    Parameters
    ----------
    mode : "accurate" | "fast"
        MNE's ``interpolate_bads`` mode (it matters for MEG field mapping; EEG splines are
        the same in both).
    origin : "auto" | list of float
        Sphere origin in metres, head frame; BrainOmni uses ``[0, 0, 0.04]``. ``"auto"``
        fits a sphere to the electrode positions.
    """

    name: ClassVar[str] = "interpolate"
    mode: Literal["accurate", "fast"] = "accurate"
    origin: Literal["auto"] | tuple[float, float, float] = field(default_factory=lambda: [0.0, 0.0, 0.04])  # type: ignore[assignment]

    def __post_init__(self) -> None:
        check_option("mode", self.mode, ("accurate", "fast"))
        validate_type("origin", self.origin, (str, list, tuple))
        if isinstance(self.origin, str):
            check_option("origin", self.origin, ("auto",))
        else:
            if len(self.origin) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.origin):
                raise ValueError(
                    f"Invalid value for the 'origin' parameter: expected 'auto' or three numbers in metres, "
                    f"but got {self.origin!r} instead."
                )
            self.origin = [float(v) for v in self.origin]

    def apply(self, state: SignalState) -> dict[str, Any]:
        table = state.channels
        rows = state.rows(["eeg"])
        names = table["name"].to_numpy()
        status = table["status"].to_numpy()[rows]
        reasons = table["status_reason"].to_numpy()[rows]
        positions = table[["x", "y", "z"]].to_numpy(dtype=np.float64)[rows]
        placed = np.isfinite(positions).all(axis=1)
        bad = status == "bad"
        effect: dict[str, Any] = {"interpolated": {}, "not_interpolated": {}}
        if not bad.any():
            return effect
        for row in rows[bad & ~placed]:
            effect["not_interpolated"][str(names[row])] = "no position"
        targets = bad & placed
        sources = ~bad & placed
        if not targets.any():
            return effect
        if sources.sum() < MIN_GOOD_CHANNELS:
            for row in rows[targets]:
                effect["not_interpolated"][str(names[row])] = f"fewer than {MIN_GOOD_CHANNELS} good EEG channels with positions"
            state.warnings.append(f"interpolate: only {int(sources.sum())} good EEG channels with positions; bad channels left bad")
            return effect

        use = placed  # the channels MNE sees
        frames = sorted(set(table["frame"].to_numpy()[rows[use]].tolist()) - {""})
        if frames and frames != ["head"]:
            state.warnings.append(f"interpolate: EEG positions are in frame(s) {frames}, treated as head coordinates")
        weights, messages = interpolation_matrix(
            names[rows[use]].tolist(), positions[use], bad[use], mode=self.mode, origin=self.origin,
        )
        state.warnings += [f"interpolate: {m}" for m in messages]
        source_rows, target_rows = rows[sources], rows[targets]
        for start, stop in time_blocks(0, state.n_times, len(source_rows)):
            block = np.asarray(state.data[source_rows, start:stop], dtype=np.float64)  # (n_good, block)
            state.data[target_rows, start:stop] = weights @ block
            del block  # free it before the next block is read

        status_col = table.columns.get_loc("status")
        reason_col = table.columns.get_loc("status_reason")
        new_reasons = [f"interpolated: {r}" if r else "interpolated" for r in reasons[targets]]
        table.iloc[target_rows, status_col] = "good"
        table.iloc[target_rows, reason_col] = new_reasons
        effect["interpolated"] = {str(names[r]): str(old) for r, old in zip(target_rows, reasons[targets], strict=True)}
        effect.update(n_sources=int(len(source_rows)), mode=self.mode, origin=self.origin, mne_warnings=messages)
        return effect
