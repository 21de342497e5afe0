"""What the loader needs to know about one stored recording, read once in the main process.

A :class:`RecordingLayout` holds the selected channels' geometry, type ids, vocabulary ids,
status and statistics, the recording's bad spans and its chunk length. It is small, plain
numpy, and pickles to DataLoader workers with the dataset; workers then only read signal
chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brainfm.data.channels import frame_id
from brainfm.data.coils import sensor_type_ids
from brainfm.data.windows import bad_spans
from brainfm.loading.vocabulary import Vocabulary, channel_key, region_key
from brainfm.store.reader import StoredRecording

__all__ = ["RecordingLayout", "read_layout", "sensor_frames", "sensor_geometry"]


@dataclass
class RecordingLayout:
    """The static facts of one recording that every batch of it needs.

    Attributes
    ----------
    index : int
        Position of the recording in the loader's recording list (its ``recording_ids`` value).
    recording_id : str
        The store id.
    dataset : str
        Dataset name.
    subject : str
        ``"<dataset>/<subject>"``, or ``"<dataset>/<recording id>"`` when the subject is unknown.
    subject_source : str
        How the subject was derived (:data:`~brainfm.data.recording.SUBJECT_SOURCES`;
        ``recording`` and ``unknown`` mean that the subject is not known).
    subject_index : int
        The subject's id (``subject_ids`` in a batch); set by the window index.
    sfreq : float
        Sampling rate in Hz.
    n_times : int
        Samples per channel.
    chunk_times : int
        Samples per stored signal chunk.
    n_stored_channels : int
        Channels in the stored signal (before selection).
    rows : numpy.ndarray of int64, shape (C,)
        Stored rows of the selected channels, in stored order.
    names, types : list of str
        Names and types of the selected channels.
    sensor_pos : numpy.ndarray of float32, shape (C, 6)
        Position (m) and orientation; see :func:`sensor_geometry`.
    sensor_type : numpy.ndarray of int64, shape (C,)
        :data:`~brainfm.data.channels.SENSOR_TYPE_IDS` of each channel, MEG typed from the
        coil (:func:`~brainfm.data.coils.sensor_type_ids`).
    pos_mask : numpy.ndarray of bool, shape (C,)
        True where the position is known in a frame of
        :data:`~brainfm.data.channels.FRAME_IDS`; see :func:`sensor_frames`.
    frame_ids : numpy.ndarray of int64, shape (C,)
        :data:`~brainfm.data.channels.FRAME_IDS` id of each position, -1 where unknown.
    channel_ids, region_ids : numpy.ndarray of int64, shape (C,)
        Vocabulary ids.
    good : numpy.ndarray of bool, shape (C,)
        False for channels marked bad in the store.
    stats : numpy.ndarray of float64, shape (C, 4)
        ``mean, std, median, iqr`` of each selected channel.
    bad_spans : numpy.ndarray of int64, shape (n_spans, 2)
        Merged ``BAD`` spans in samples.
    label : int | None
        Recording-level label, when recording labels are configured.
    """

    index: int
    recording_id: str
    dataset: str
    subject: str
    sfreq: float
    n_times: int
    chunk_times: int
    n_stored_channels: int
    rows: np.ndarray
    names: list[str]
    types: list[str]
    sensor_pos: np.ndarray
    sensor_type: np.ndarray
    pos_mask: np.ndarray
    frame_ids: np.ndarray
    channel_ids: np.ndarray
    region_ids: np.ndarray
    good: np.ndarray
    stats: np.ndarray
    bad_spans: np.ndarray
    label: int | None = None
    subject_source: str = "unknown"
    subject_index: int = 0
    events: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_channels(self) -> int:
        """Number of selected channels."""
        return int(len(self.rows))

    @property
    def all_rows(self) -> bool:
        """Whether every stored channel is selected, in order (no row gather needed)."""
        return self.n_channels == self.n_stored_channels


def sensor_geometry(channels: object) -> np.ndarray:
    """Position and orientation of each channel, BrainOmni's convention.

    Parameters
    ----------
    channels : pandas.DataFrame
        A channel table (columns ``type, x, y, z, ox, oy, oz, gx, gy, gz, coil_type``).

    Returns
    -------
    sensor_pos : numpy.ndarray of float32, shape (n_channels, 6)
        ``x, y, z`` in metres (0 where unknown), then the orientation: the planar gradient
        direction ``gx, gy, gz`` for planar gradiometers (coil type containing ``PLANAR``, or
        a non-zero gradient direction), the coil normal ``ox, oy, oz`` for magnetometers and
        axial gradiometers, zeros for EEG and iEEG.
    """
    table = channels  # a DataFrame; typed loosely to keep pandas out of the signature
    xyz = np.nan_to_num(table[["x", "y", "z"]].to_numpy(np.float64), nan=0.0)  # type: ignore[index]
    normal = np.nan_to_num(table[["ox", "oy", "oz"]].to_numpy(np.float64), nan=0.0)  # type: ignore[index]
    gradient = np.nan_to_num(table[["gx", "gy", "gz"]].to_numpy(np.float64), nan=0.0)  # type: ignore[index]
    types = np.asarray(table["type"], dtype=str)  # type: ignore[index]
    coil = np.char.upper(np.asarray(table["coil_type"], dtype=str))  # type: ignore[index]
    planar = (types == "grad") & ((np.char.find(coil, "PLANAR") >= 0) | (np.abs(gradient).sum(axis=1) > 0))
    meg = np.isin(types, ["mag", "grad"])
    orientation = np.where(planar[:, None], gradient, np.where(meg[:, None], normal, 0.0))
    return np.concatenate([xyz, orientation], axis=1).astype(np.float32)


def sensor_frames(channels: object) -> tuple[np.ndarray, np.ndarray]:
    """Which channels have a usable position, and in which frame.

    Parameters
    ----------
    channels : pandas.DataFrame
        A channel table (columns ``x, y, z, frame``).

    Returns
    -------
    pos_mask : numpy.ndarray of bool, shape (n_channels,)
        True where ``x, y, z`` are finite and the ``frame`` is one of
        :data:`~brainfm.data.channels.FRAME_IDS` (stores written before frames were checked
        hold NaN where the position is unknown, so the mask follows from the positions).
    frame_ids : numpy.ndarray of int64, shape (n_channels,)
        The frame id where ``pos_mask`` is True, else -1.
    """
    table = channels  # a DataFrame; typed loosely to keep pandas out of the signature
    xyz = table[["x", "y", "z"]].to_numpy(np.float64)  # type: ignore[index]
    frames = np.array([frame_id(f) for f in table["frame"].astype(str)], dtype=np.int64)  # type: ignore[index]
    mask = np.isfinite(xyz).all(axis=1) & (frames >= 0)
    return mask, np.where(mask, frames, -1).astype(np.int64)


def read_layout(
    recording: StoredRecording,
    index: int,
    channel_types: tuple[str, ...],
    channel_vocabulary: Vocabulary,
    region_vocabulary: Vocabulary,
) -> RecordingLayout:
    """Read the layout of one stored recording.

    Parameters
    ----------
    recording : StoredRecording
        The recording.
    index : int
        Its position in the loader's recording list.
    channel_types : tuple of str
        Channel types to keep (others are not loaded).
    channel_vocabulary, region_vocabulary : Vocabulary
        Vocabularies for ``channel_ids`` and ``region_ids``; unknown names get ``<unk>``.

    Returns
    -------
    layout : RecordingLayout
        The layout (with no channel when none of the recording's channels has a kept type).
    """
    channels = recording.channels
    keep = channels["type"].isin(channel_types).to_numpy()
    rows = np.flatnonzero(keep).astype(np.int64)
    selected = channels.iloc[rows]
    stats = recording.stats.to_numpy(np.float64)[rows]  # (C, 4): StoredRecording.stats has the STAT_NAMES columns
    names = selected["name"].astype(str).tolist()
    types = selected["type"].astype(str).tolist()
    spans = np.zeros((0, 2), dtype=np.int64)
    events: dict[str, np.ndarray] = {}
    if recording.attrs.get("event_descriptions"):
        table = recording.events
        events = {
            "onset_s": table["onset_s"].to_numpy(np.float64),
            "duration_s": table["duration_s"].to_numpy(np.float64),
            "description": table["description"].astype(str).to_numpy(),
        }
        spans = bad_spans(events["onset_s"], events["duration_s"], events["description"], recording.sfreq)
    encoding = recording.attrs.get("signal_encoding", {})
    chunk_times = int(encoding.get("chunk_times") or recording.signal.chunks[1])
    subject = recording.subject
    pos_mask, frame_ids = sensor_frames(selected)
    return RecordingLayout(
        index=index,
        recording_id=recording.id,
        dataset=recording.dataset,
        subject=f"{recording.dataset}/{subject if subject not in (None, '') else recording.id}",
        sfreq=recording.sfreq,
        n_times=recording.n_times,
        chunk_times=chunk_times,
        n_stored_channels=recording.n_channels,
        rows=rows,
        names=names,
        types=types,
        sensor_pos=np.where(pos_mask[:, None], sensor_geometry(selected), np.float32(0.0)),
        sensor_type=sensor_type_ids(types, selected["coil_type"].astype(str).tolist()),
        pos_mask=pos_mask,
        frame_ids=frame_ids,
        channel_ids=np.array(channel_vocabulary.ids(channel_key(n, t) for n, t in zip(names, types, strict=True)), dtype=np.int64),
        region_ids=np.array(region_vocabulary.ids(region_key(r) for r in selected["region"]), dtype=np.int64),
        good=(selected["status"].to_numpy() == "good"),
        stats=stats,
        bad_spans=spans,
        events=events,
        subject_source=recording.subject_source,
    )
