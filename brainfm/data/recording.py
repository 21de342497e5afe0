"""A recording in memory: signal, sampling rate, identity, channel and event tables."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from brainfm.data.channels import validate_channel_table

__all__ = [
    "EVENT_COLUMNS",
    "IDENTITY_FIELDS",
    "KNOWN_SUBJECT_SOURCES",
    "SUBJECT_SOURCES",
    "Identity",
    "Recording",
    "empty_events",
]

#: Identity fields in id order. ``acquisition`` distinguishes BIDS ``acq-`` variants.
IDENTITY_FIELDS: tuple[str, ...] = ("dataset", "subject", "session", "task", "acquisition", "run")
EVENT_COLUMNS: tuple[str, ...] = ("onset_s", "duration_s", "description")

#: How a recording's subject was derived (the ``subject_source`` attribute of a stored
#: recording): ``bids`` (BIDS entities, read with mne-bids), ``filename`` (a ``sub-<label>``
#: entity in a plain file name), ``pattern`` (the user's identity pattern, ``--pattern``),
#: ``given`` (set by the caller of the Python API in :class:`Identity`), ``recording`` (no
#: subject: each recording counts as its own subject). Stores written before brainfm recorded
#: it read as ``unknown``.
SUBJECT_SOURCES: tuple[str, ...] = ("bids", "filename", "pattern", "given", "recording", "unknown")
#: The sources that name a real subject, shared by the recordings of one person.
KNOWN_SUBJECT_SOURCES: tuple[str, ...] = ("bids", "filename", "pattern", "given")

_ID_PREFIX = {"subject": "sub", "session": "ses", "task": "task", "acquisition": "acq", "run": "run"}
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-]+")
_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9.\-_]+")


def _safe(value: str, pattern: re.Pattern[str] = _UNSAFE) -> str:
    return pattern.sub("-", value).strip("-._") or "x"


@dataclass(frozen=True)
class Identity:
    """Who and what a recording is.

    Parameters
    ----------
    dataset : str
        Dataset name (the BIDS root or input folder name unless set).
    subject, session, task, acquisition, run : str | None
        BIDS-style entities; ``None`` when unknown.
    """

    dataset: str
    subject: str | None = None
    session: str | None = None
    task: str | None = None
    acquisition: str | None = None
    run: str | None = None

    def recording_id(self) -> str:
        """Build the recording id from the entities: ``<dataset>_sub-<s>[_ses-..][_task-..]...``.

        Returns
        -------
        recording_id : str
            A name safe for a Zarr group: letters, digits, ``.``, ``-`` and ``_``.
        """
        parts = [_safe(self.dataset)]
        for name in IDENTITY_FIELDS[1:]:
            value = getattr(self, name)
            if value not in (None, ""):
                parts.append(f"{_ID_PREFIX[name]}-{_safe(str(value))}")
        return "_".join(parts)

    def to_dict(self) -> dict[str, str | None]:
        """Return the identity as a plain dict (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def path_recording_id(dataset: str, relpath: str) -> str:
    """Build a recording id from a dataset name and a path relative to the input folder.

    Parameters
    ----------
    dataset : str
        Dataset name.
    relpath : str
        Source path relative to the dataset folder, extension included.

    Returns
    -------
    recording_id : str
        ``<dataset>_<path without extension, folder separators replaced by '-'>``; other
        characters than letters, digits, ``.``, ``-`` and ``_`` become ``-``.
    """
    stem = re.sub(r"(\.[A-Za-z0-9]{1,5})+$", "", relpath.replace("\\", "/"))
    return f"{_safe(dataset)}_{_safe(stem.replace('/', '-'), _UNSAFE_PATH)}"


def empty_events() -> pd.DataFrame:
    """Return an event table with no rows."""
    return pd.DataFrame(
        {"onset_s": np.zeros(0), "duration_s": np.zeros(0), "description": np.array([], dtype=object)}
    )


@dataclass
class Recording:
    """A preprocessed recording, ready to be stored.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_channels, n_times)
        float32 samples in SI units (V, T, T/m).
    sfreq : float
        Sampling rate in Hz.
    identity : Identity
        Dataset, subject, session, task, acquisition and run.
    channels : pandas.DataFrame
        The channel table (:mod:`brainfm.data.channels`), one row per signal row.
    events : pandas.DataFrame
        Columns ``onset_s``, ``duration_s`` (seconds from the first stored sample) and
        ``description``. Descriptions starting with ``BAD`` mark spans to skip.
    source : dict
        ``path``, ``relpath``, ``size``, ``sha256``, ``format`` and ``files`` of the input.
    provenance : dict
        ``recipe``, ``steps`` (each with its parameters), ``config_hash``, ``warnings``.
    line_freq : float | None
        Power-line frequency in Hz when known.
    meas_date : str | None
        ISO 8601 start of the measurement when known.
    subject_source : str | None
        How ``identity.subject`` was derived (:data:`SUBJECT_SOURCES`); None: ``given`` when
        the identity has a subject, else ``recording``.
    """

    signal: np.ndarray
    sfreq: float
    identity: Identity
    channels: pd.DataFrame
    events: pd.DataFrame = field(default_factory=empty_events)
    source: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    line_freq: float | None = None
    meas_date: str | None = None
    subject_source: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.signal, np.ndarray) or self.signal.ndim != 2:
            raise ValueError(
                f"signal must be a 2-D numpy array (n_channels, n_times), got {type(self.signal).__name__} "
                f"with shape {getattr(self.signal, 'shape', None)}."
            )
        if self.signal.dtype != np.float32:
            raise ValueError(f"signal must be float32, got {self.signal.dtype}.")
        if not np.isfinite(self.sfreq) or self.sfreq <= 0:
            raise ValueError(f"sfreq must be a positive number, got {self.sfreq!r}.")
        validate_channel_table(self.channels)
        if len(self.channels) != self.signal.shape[0]:
            raise ValueError(
                f"The channel table has {len(self.channels)} rows but the signal has "
                f"{self.signal.shape[0]} channels."
            )
        if self.subject_source is None:
            self.subject_source = "given" if self.identity.subject not in (None, "") else "recording"
        elif self.subject_source not in SUBJECT_SOURCES[:-1]:
            raise ValueError(
                f"Invalid value for the 'subject_source' parameter. Allowed values are "
                f"{list(SUBJECT_SOURCES[:-1])}, but got {self.subject_source!r} instead."
            )
        missing = [c for c in EVENT_COLUMNS if c not in self.events.columns]
        if missing:
            raise ValueError(f"The event table lacks the columns {missing}.")

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.signal.shape[0])

    @property
    def n_times(self) -> int:
        """Number of samples per channel."""
        return int(self.signal.shape[1])

    @property
    def recording_id(self) -> str:
        """The id the recording is stored under."""
        return str(self.source.get("recording_id") or self.identity.recording_id())
