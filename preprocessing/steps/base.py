"""The step protocol: what every normalisation step is, and the state it works on.

Two kinds of steps exist:

* channel-wise steps (filters, resampling) transform each channel on its own. The
  pipeline runs consecutive channel-wise steps together over blocks of channels in
  float64, so the whole recording is never held in float64 at once.
* recording steps (bad channels, re-referencing, interpolation, checks) see the whole
  float32 signal and the channel table, and may change both.

Every step is a dataclass whose fields are its parameters (recorded as provenance); what it
actually did (effective frequencies, channels marked bad, ...) goes into ``state.log``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from brainfm.data.channels import DATA_CHANNEL_TYPES, IEEG_TYPES, MEG_TYPES

__all__ = ["ChannelwiseStep", "RecordingStep", "SignalState", "Step", "segments_between"]


@dataclass
class SignalState:
    """A recording while it is being normalised.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_channels, n_times)
        float32 signal in SI units; steps may replace it.
    sfreq : float
        Current sampling rate in Hz.
    channels : pandas.DataFrame
        Channel table, one row per row of ``data``.
    events : pandas.DataFrame
        ``onset_s``, ``duration_s``, ``description`` (seconds from the first sample).
    line_freq : float | None
        Power-line frequency in Hz when known.
    relpath : str
        Source path relative to the dataset (for messages).
    boundaries_s : list of float
        Times (s) where the acquisition is discontinuous; filters do not smooth across them.
    log : list of dict
        One entry per step run: ``{"step": name, "params": ..., "effect": ...}``.
    warnings : list of str
        Things users should see.
    """

    data: np.ndarray
    sfreq: float
    channels: pd.DataFrame
    events: pd.DataFrame
    line_freq: float | None = None
    relpath: str = ""
    boundaries_s: list[float] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_times(self) -> int:
        """Samples per channel."""
        return int(self.data.shape[1])

    @property
    def modality(self) -> str:
        """``"ieeg"`` if any iEEG channel, else ``"meg"`` if any MEG channel, else ``"eeg"``."""
        types = set(self.channels["type"])
        if types & set(IEEG_TYPES):
            return "ieeg"
        if types & set(MEG_TYPES):
            return "meg"
        return "eeg"

    def rows(self, types: tuple[str, ...] | list[str] | None = None, *, good_only: bool = False) -> np.ndarray:
        """Row indices of channels of the given types (all data types when None).

        Parameters
        ----------
        types : sequence of str | None
            Channel types; ``None`` means :data:`~brainfm.data.channels.DATA_CHANNEL_TYPES`.
        good_only : bool
            Leave out channels whose status is ``bad``.

        Returns
        -------
        rows : numpy.ndarray of int
            Indices into ``data`` and ``channels``.
        """
        wanted = set(DATA_CHANNEL_TYPES if types is None else types)
        mask = self.channels["type"].isin(wanted).to_numpy().copy()
        if good_only:
            mask = mask & (self.channels["status"] == "good").to_numpy()
        return np.flatnonzero(mask)

    def segments(self) -> list[tuple[int, int]]:
        """Contiguous sample spans ``[start, stop)`` between acquisition boundaries."""
        return segments_between(self.boundaries_s, self.sfreq, self.n_times)


def segments_between(boundaries_s: list[float], sfreq: float, n_times: int) -> list[tuple[int, int]]:
    """Contiguous sample spans ``[start, stop)`` of a signal cut at boundary times.

    Parameters
    ----------
    boundaries_s : list of float
        Times in seconds where the acquisition is discontinuous.
    sfreq : float
        Sampling rate in Hz.
    n_times : int
        Length of the signal in samples.

    Returns
    -------
    segments : list of (int, int)
        Non-empty spans covering the signal in order.
    """
    cuts = sorted({int(round(b * sfreq)) for b in boundaries_s if 0 < b * sfreq < n_times})
    return [(a, b) for a, b in itertools.pairwise([0, *cuts, n_times]) if b > a]


class Step:
    """Base of all steps. Subclasses are dataclasses; their fields are the parameters."""

    #: Name used in recipes (``- bandpass: {...}``).
    name: ClassVar[str] = ""
    #: Whether the step transforms channels independently (see module docstring).
    channelwise: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """The step's parameters as a JSON-ready dict."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


class ChannelwiseStep(Step):
    """A step applied to blocks of channels in float64 (filters, resampling)."""

    channelwise: ClassVar[bool] = True

    def inspect_input(self, state: SignalState) -> dict[str, Any]:
        """Look at the signal as it is before the group of channel-wise steps runs.

        Called for every step of a group before any ``prepare``, with ``state.data`` at
        ``state.sfreq`` (a later step of the group may see another rate in ``prepare``).

        Parameters
        ----------
        state : SignalState
            The input state; a step may set ``state.line_freq``.

        Returns
        -------
        effect : dict
            Facts found, recorded in the provenance.
        """
        return {}

    def prepare(self, state: SignalState) -> dict[str, Any]:
        """Decide the effective parameters for this recording before any block runs.

        Parameters
        ----------
        state : SignalState
            The state as it is when the step starts (``sfreq`` is the input rate).

        Returns
        -------
        effect : dict
            Effective parameters, recorded in the provenance; an empty dict with key
            ``"skip": True`` makes the pipeline skip the step.
        """
        return {}

    def output_sfreq(self, sfreq: float) -> float:
        """Sampling rate after the step (only resampling changes it)."""
        return sfreq

    def min_samples(self, sfreq: float) -> tuple[int, str]:
        """The fewest input samples the step needs, as ``prepare`` set it up.

        A recording shorter than what any step of its recipe needs is refused before the
        steps run (:class:`~brainfm.errors.RecordingTooShortError`) instead of being stored
        as filter edge effects or failing inside SciPy.

        Parameters
        ----------
        sfreq : float
            The rate the step sees.

        Returns
        -------
        n_samples : int
            Samples needed at ``sfreq``.
        why : str
            What needs them, for the error message ("" when nothing particular).
        """
        return 2, ""
    def output_segments(self, segments: list[tuple[int, int]], sfreq: float) -> list[tuple[int, int]]:
        """Where the segments lie in the step's output (only resampling moves them).

        Parameters
        ----------
        segments : list of (int, int)
            Contiguous spans ``[start, stop)`` of the input, at ``sfreq``.
        sfreq : float
            Sampling rate of the input.

        Returns
        -------
        segments : list of (int, int)
            The same spans in the output, in output samples.
        """
        return segments

    @contextlib.contextmanager
    def capture_warnings(self) -> Iterator[None]:
        """Collect what the libraries warn (or print) while the step runs, for the provenance.

        The readers' mechanism (:func:`brainfm.preprocessing.readers.capture_messages`): each message
        is kept once, prefixed with the step's name, and handed out by :meth:`take_warnings`.
        MNE's filter warnings ("filter_length (...) is longer than the signal (...)") say that
        a segment is too short for the filter asked for.
        """
        from brainfm.preprocessing.readers import capture_messages

        messages: list[str] = []
        kept: list[str] = self.__dict__.setdefault("_messages", [])
        try:
            with capture_messages(messages):
                yield
        finally:
            for text in messages:
                text = f"{self.name}: {text}"
                if text not in kept:
                    kept.append(text)

    def take_warnings(self) -> list[str]:
        """The messages collected by :meth:`capture_warnings` so far (the list is emptied).

        Returns
        -------
        messages : list of str
            Distinct messages in the order they first arrived.
        """
        messages: list[str] = self.__dict__.pop("_messages", [])
        return messages

    def apply_block(self, block: np.ndarray, sfreq: float, types: np.ndarray, segments: list[tuple[int, int]]) -> np.ndarray:
        """Transform a block of channels.

        Parameters
        ----------
        block : numpy.ndarray, shape (n_block, n_times)
            float64 samples, may be modified in place.
        sfreq : float
            Sampling rate of ``block``.
        types : numpy.ndarray of str
            Channel type of each row.
        segments : list of (int, int)
            Contiguous spans to process separately.

        Returns
        -------
        block : numpy.ndarray
            The transformed block (may be a new array with another length).
        """
        raise NotImplementedError


class RecordingStep(Step):
    """A step that sees the whole recording."""

    def apply(self, state: SignalState) -> dict[str, Any]:
        """Transform ``state`` in place.

        Parameters
        ----------
        state : SignalState
            The recording.

        Returns
        -------
        effect : dict
            What the step did (channels marked bad and why, reference used, ...), recorded
            in the provenance.
        """
        raise NotImplementedError
