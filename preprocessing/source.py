"""What discovery hands to reading: one source recording and what a reader returns for it."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jsonargparse.typing import PositiveFloat

from brainfm.data.channels import CHANNEL_TYPES
from brainfm.data.recording import Identity
from brainfm.errors import ConfigError

__all__ = ["EVENT_ERROR_POLICIES", "Override", "RawInput", "Source"]

#: What to do when a recording's events (stim channel, MNE event file) cannot be read: fail
#: the recording, or store it without those events (said in its provenance warnings).
EVENT_ERROR_POLICIES = ("raise", "store_without_events")


@dataclass
class Source:
    """One recording found in a dataset folder; possibly several files on disk.

    Parameters
    ----------
    path : pathlib.Path
        The entry point a reader opens (``.vhdr``, ``.set``, ``.ds`` folder, ``.edf``...).
    relpath : str
        ``path`` relative to the dataset folder, with ``/`` separators.
    format : str
        Format key from :mod:`brainfm.preprocessing.formats` (``"edf"``, ``"brainvision"``...).
    files : list of pathlib.Path
        Every file that makes up the recording (entry, data files, companions, sidecars),
        hashed together as the source identity.
    dataset : str
        Dataset name.
    identity : Identity
        Dataset, subject, session, task, acquisition, run.
    recording_id : str
        Id of the recording group in the store.
    companions : dict of str to pathlib.Path
        Extra files by role: ``"events"`` (MNE ``-eve.fif``), ``"mrk"``, ``"elp"``, ``"hsp"``
        (KIT), ``"montage"`` (digitisation such as ``.bvct``), ``"data"`` and ``"markers"``
        (BrainVision: the files its ``.vhdr`` names, recorded even when missing so that
        validation can name them), and for BIDS ``"channels"``, ``"electrodes"``,
        ``"coordsystem"``, ``"events_tsv"``, ``"sidecar"``.
    bids_root : pathlib.Path | None
        The BIDS root when the source comes from a BIDS dataset.
    subject_source : str
        How ``identity.subject`` was derived (:data:`brainfm.data.recording.SUBJECT_SOURCES`):
        ``bids``, ``filename``, ``pattern``, or ``recording`` when there is no subject.
    """

    path: Path
    relpath: str
    format: str
    files: list[Path]
    dataset: str
    identity: Identity
    recording_id: str
    companions: dict[str, Path] = field(default_factory=dict)
    bids_root: Path | None = None
    subject_source: str = "recording"

    @property
    def size(self) -> int:
        """Total size in bytes of all files of the recording."""
        return int(sum(f.stat().st_size for f in self.files if f.is_file()))


@dataclass
class Override:
    """A recipe override for the sources whose relative path matches a glob.

    Parameters
    ----------
    match : str
        ``fnmatch`` pattern on the source's relative path (``"*acq-ecog*"``, ``"*"``).
    channel_types : dict of str to str
        Channel-name glob -> channel type, applied in order (``{"*": "ecog", "EKG*": "ecg"}``);
        use it when a file calls everything EEG.
    line_freq : float | None
        Power-line frequency in Hz, when the file does not say.
    """

    match: str = "*"
    channel_types: dict[str, str] = field(default_factory=dict)
    line_freq: PositiveFloat | None = None

    def __post_init__(self) -> None:
        for pattern, ch_type in self.channel_types.items():
            if ch_type not in CHANNEL_TYPES:
                raise ConfigError(
                    f"Invalid channel type in the override for {self.match!r}: {pattern!r} -> "
                    f"{ch_type!r}. Allowed types are {list(CHANNEL_TYPES)}."
                )

    def applies_to(self, relpath: str) -> bool:
        """Whether this override applies to a source path."""
        return fnmatch.fnmatch(relpath, self.match)


@dataclass
class RawInput:
    """What a reader returns: an unloaded MNE Raw plus everything brainfm adds to it.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Opened with ``preload=False``; all channels of the file.
    channels : pandas.DataFrame
        The channel table (:mod:`brainfm.data.channels`) for the storable channels of
        ``raw`` (stim, MEG reference and similar channels are left out); ``orig_name`` is
        the name in ``raw.ch_names``.
    events : pandas.DataFrame
        ``onset_s`` (seconds from the first sample of ``raw``), ``duration_s``, ``description``.
    line_freq : float | None
        Power-line frequency when known.
    meas_date : str | None
        ISO 8601 measurement start when known.
    warnings : list of str
        Things users should see in the provenance (MaxShield data, template positions...).
    info : dict
        Reader facts for the provenance (reader function and its options).
    """

    raw: Any
    channels: pd.DataFrame
    events: pd.DataFrame
    line_freq: float | None = None
    meas_date: str | None = None
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
