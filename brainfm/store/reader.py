"""Read a store: ``open_store(path)`` gives a read-only mapping of recording id -> recording.

Attributes are read once: opening a store reads the root's and every recording's
``zarr.json`` (one listing of the recordings group), and :class:`Store` keeps one
:class:`StoredRecording` per id, whose attributes, channel table and signal array are
parsed on first use and kept. Signal, events and statistics values are read on access.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainfm.data.channels import (
    ADDED_COLUMNS,
    CHANNEL_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    MEG_TYPES,
)
from brainfm.data.coils import coil_type_name, split_coil_type
from brainfm.errors import StoreFormatError, StoreNotFoundError
from brainfm.store.format import FAILURES_GROUP, FORMAT_VERSION, RECORDINGS_GROUP, STAT_NAMES

__all__ = ["Store", "StoredRecording", "open_store"]


def _channel_table(table: dict[str, list[Any]], n_channels: int, recording_id: str) -> pd.DataFrame:
    """The channel table of a recording's attributes, completed for stores written earlier.

    Columns of :data:`~brainfm.data.channels.ADDED_COLUMNS` that an older store lacks get
    their default; a ``coil_type`` stored as a number (``"201609"``: a CTF coil with its
    compensation grade in the upper 16 bits) is split into the coil's name and the grade.
    """
    columns = {}
    for col in CHANNEL_COLUMNS:
        if col in table:
            columns[col] = table[col]
        elif col in ADDED_COLUMNS:
            columns[col] = [ADDED_COLUMNS[col]] * n_channels
        else:
            raise StoreFormatError(
                f"The channel table of recording {recording_id!r} lacks the column {col!r}; the store "
                "is damaged or was not written by brainfm. Run `brainfm store check` on it."
            )
    frame = pd.DataFrame(columns)
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col]).astype(np.float64)
    for col in INT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col]).astype(np.int64)
    numeric = frame["coil_type"].astype(str).str.fullmatch(r"\d+")
    for row in np.flatnonzero(numeric.to_numpy()):
        value = int(frame.at[row, "coil_type"])
        frame.at[row, "coil_type"] = coil_type_name(value)
        frame.at[row, "compensation_grade"] = max(int(frame.at[row, "compensation_grade"]), split_coil_type(value)[1])
    return frame


class StoredRecording:
    """One complete recording of a store, read lazily.

    Attributes
    ----------
    id : str
        The recording id.
    attrs : dict
        All attributes of the recording group (see ``docs/store-format.md``), parsed once
        when the group was opened.
    """

    def __init__(self, group: Any) -> None:
        self._group = group
        self.attrs: dict[str, Any] = dict(group.attrs)  # the metadata read when the group was opened
        self.id: str = self.attrs["id"]
        self._signal: Any = None
        self._channels: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return (
            f"<StoredRecording {self.id!r} | {self.n_channels} channels x {self.n_times} samples "
            f"at {self.sfreq:g} Hz>"
        )

    @property
    def signal(self) -> Any:
        """The signal as a Zarr array, shape (n_channels, n_times), float32, SI units.

        Slicing reads only the chunks it touches: ``rec.signal[:, 0:1000]`` is a numpy array.
        """
        if self._signal is None:
            self._signal = self._group["signal"]  # reads the array's metadata once
        return self._signal

    @property
    def sfreq(self) -> float:
        """Sampling rate in Hz."""
        return float(self.attrs["sfreq"])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.attrs["n_channels"])

    @property
    def n_times(self) -> int:
        """Number of samples per channel."""
        return int(self.attrs["n_times"])

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.n_times / self.sfreq

    @property
    def identity(self) -> dict[str, str | None]:
        """``dataset, subject, session, task, acquisition, run``."""
        return dict(self.attrs["identity"])

    @property
    def dataset(self) -> str:
        """Dataset name."""
        return str(self.attrs["identity"]["dataset"])

    @property
    def subject(self) -> str | None:
        """Subject label, or None."""
        return self.attrs["identity"].get("subject")

    @property
    def subject_source(self) -> str:
        """How the subject was derived: ``bids``, ``filename``, ``pattern``, ``given``, ``recording``
        (no subject: the recording counts as its own), or ``unknown`` (a store written before
        brainfm recorded it); see :data:`brainfm.data.recording.SUBJECT_SOURCES`."""
        return str(self.attrs.get("subject_source") or "unknown")

    @property
    def session(self) -> str | None:
        """Session label, or None."""
        return self.attrs["identity"].get("session")

    @property
    def task(self) -> str | None:
        """Task label, or None."""
        return self.attrs["identity"].get("task")

    @property
    def run(self) -> str | None:
        """Run label, or None."""
        return self.attrs["identity"].get("run")

    @property
    def source(self) -> dict[str, Any]:
        """``path``, ``relpath``, ``size``, ``sha256``, ``format`` and ``files`` of the input."""
        return dict(self.attrs["source"])

    @property
    def provenance(self) -> dict[str, Any]:
        """The recipe, every step with its parameters, the config hash and warnings."""
        return dict(self.attrs["provenance"])

    @property
    def channels(self) -> pd.DataFrame:
        """The channel table (:mod:`brainfm.data.channels`) as a DataFrame (a copy: edits stay the caller's)."""
        if self._channels is None:
            self._channels = _channel_table(self.attrs["channels"], self.n_channels, self.id)
        return self._channels.copy()

    @property
    def events(self) -> pd.DataFrame:
        """The event table: ``onset_s``, ``duration_s``, ``description``."""
        descriptions = np.array(self.attrs["event_descriptions"], dtype=object)
        table = self._group["events"][:]
        codes = table[:, 2].astype(np.int64)
        return pd.DataFrame(
            {
                "onset_s": table[:, 0],
                "duration_s": table[:, 1],
                "description": descriptions[codes] if len(codes) else np.array([], dtype=object),
            }
        )

    @property
    def stats(self) -> pd.DataFrame:
        """Per-channel ``mean, std, median, iqr`` of the stored signal, indexed by channel name."""
        values = self._group["channel_stats"][:]
        return pd.DataFrame(values, columns=list(STAT_NAMES), index=self.attrs["channels"]["name"])

    def to_raw(self) -> Any:
        """Load the recording as an :class:`mne.io.RawArray` (geometry and events included).

        Returns
        -------
        raw : mne.io.RawArray
            The signal in SI units with channel types, bad channels in ``info['bads']``
            and events as annotations. Positions go into each channel's ``loc`` when they
            are in MNE's frames: EEG in the head frame; MEG with its coil orientation
            (``loc[3:12]``, the gradient direction of planar gradiometers in ``loc[3:6]``)
            and coil type. MEG positions stored in the head frame come with an identity
            device-to-head transform (MNE keeps MEG coils in device coordinates); in the
            device frame ``info['dev_head_t']`` is None, as in an empty-room recording.
            Contacts in another space (an iEEG ``electrodes.tsv`` in ``MNI305`` or
            ``fsaverage``, say) keep NaN in ``loc``: their coordinates stay in
            :attr:`channels` with the space in its ``frame`` column.
        """
        import mne
        from mne.io.constants import FIFF

        channels = self.channels
        info = mne.create_info(channels["name"].tolist(), self.sfreq, channels["type"].tolist())
        meg_frames = set(channels.loc[channels["type"].isin(MEG_TYPES) & (channels["pos_source"] != "none"), "frame"])
        for ch, row in zip(info["chs"], channels.itertuples(), strict=True):
            position = np.array([row.x, row.y, row.z], dtype=float)
            placed = row.frame in ("head", "device") and np.isfinite(position).all()
            ch["loc"][:3] = position if placed else np.nan
            if row.type not in MEG_TYPES:
                continue
            normal = np.array([row.ox, row.oy, row.oz], dtype=float)
            if placed and np.linalg.norm(normal) > 0:
                ez = normal / np.linalg.norm(normal)
                ex = np.array([row.gx, row.gy, row.gz], dtype=float)
                if not np.linalg.norm(ex) > 0:  # a magnetometer: any direction across the normal
                    ex = np.cross(ez, [1.0, 0.0, 0.0] if abs(ez[0]) < 0.9 else [0.0, 1.0, 0.0])
                ex = ex - ez * (ex @ ez)
                ex /= np.linalg.norm(ex)
                ch["loc"][3:12] = np.concatenate([ex, np.cross(ez, ex), ez])
            if row.coil_type and hasattr(FIFF, row.coil_type):
                ch["coil_type"] = int(getattr(FIFF, row.coil_type))
        if meg_frames == {"head"}:
            info["dev_head_t"] = mne.transforms.Transform("meg", "head")  # identity
        info["bads"] = channels.loc[channels["status"] == "bad", "name"].tolist()
        if self.attrs.get("line_freq"):
            info["line_freq"] = float(self.attrs["line_freq"])
        raw = mne.io.RawArray(np.asarray(self.signal[:], dtype=np.float64), info, verbose=False)
        events = self.events
        if len(events):
            raw.set_annotations(
                mne.Annotations(events["onset_s"], events["duration_s"], events["description"].astype(str))
            )
        return raw


class Store:
    """A read-only brainfm store: iterate for recording ids, index for recordings.

    Use :func:`open_store` to make one. ``store[id]`` returns the same
    :class:`StoredRecording` each time (its attributes are read once, when the store is opened).
    """

    def __init__(self, path: Path, root: Any) -> None:
        self.path = path
        self._root = root
        self.attrs: dict[str, Any] = dict(root.attrs)
        self._groups: dict[str, Any] = {}  # complete recordings' groups, attributes already parsed
        self._incomplete: dict[str, Any] = {}  # groups whose write did not finish
        self._opened: dict[str, StoredRecording] = {}
        self._failed: list[dict[str, Any]] | None = None
        try:
            recordings = root[RECORDINGS_GROUP]
        except KeyError:
            recordings = None
        if recordings is not None:
            # One listing opens every recording group, reading each zarr.json once. A writer
            # killed while Zarr rewrote a metadata file leaves its temporary ``*.partial`` file
            # beside the groups (another shard may also be writing one right now): not a member.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*\.partial is not recognized")
                members = sorted(recordings.groups(), key=lambda item: item[0])
            for key, group in members:
                if group.attrs.get("complete"):
                    self._groups[key] = group
                else:
                    self._incomplete[key] = group
        self._ids: list[str] = list(self._groups)

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r} | {len(self)} recordings>"

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self._groups

    def __getitem__(self, recording_id: str) -> StoredRecording:
        if recording_id not in self._groups:
            from brainfm._check import suggest

            raise KeyError(
                f"No complete recording {recording_id!r} in {self.path}.{suggest(recording_id, self._ids)}"
            )
        recording = self._opened.get(recording_id)
        if recording is None:
            recording = self._opened[recording_id] = StoredRecording(self._groups[recording_id])
        return recording

    @property
    def format_version(self) -> int:
        """The store's format version."""
        return int(self.attrs["brainfm_format_version"])

    @property
    def incomplete(self) -> list[str]:
        """Ids of recordings whose write did not finish (invisible to iteration)."""
        return list(self._incomplete)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Files that could not be stored: ``path``, ``error``, ``error_type``, ``recording_id``."""
        if self._failed is None:
            try:
                group = self._root[FAILURES_GROUP]
            except KeyError:
                entries: list[dict[str, Any]] = []
            else:
                entries = [dict(child.attrs) for _, child in group.groups()]
            self._failed = sorted(entries, key=lambda e: e.get("path", ""))
        return [dict(entry) for entry in self._failed]


def open_store(path: str | Path) -> Store:
    """Open a brainfm store read-only.

    Parameters
    ----------
    path : str | pathlib.Path
        The store folder.

    Returns
    -------
    store : Store
        ``list(store)`` gives recording ids; ``store[id]`` a :class:`StoredRecording`.

    Raises
    ------
    StoreNotFoundError
        When ``path`` does not exist or holds no Zarr group.
    StoreFormatError
        When the store's format version is not the one this brainfm reads.
    """
    import zarr

    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreNotFoundError(
            f"{path} is not a brainfm store (no zarr.json). Create one with "
            f"'brainfm preprocess INPUT_DIR {path}'."
        )
    # zarr_format=3: a brainfm store is Zarr v3 (zarr.json checked above); no v2 metadata to probe.
    root = zarr.open_group(zarr.storage.LocalStore(str(path), read_only=True), mode="r", zarr_format=3)
    version = root.attrs.get("brainfm_format_version")
    if version is None:
        raise StoreFormatError(f"{path} is a Zarr group but not a brainfm store (no brainfm_format_version).")
    if version != FORMAT_VERSION:
        raise StoreFormatError(
            f"{path} has store format version {version}, but this brainfm reads version "
            f"{FORMAT_VERSION}. Re-create the store with this brainfm, or install the brainfm "
            f"that wrote it."
        )
    return Store(path, root)
