"""Write recordings into a store: complete groups only become visible at the end.

A recording group is created with ``complete: false``, its arrays are written, and the
attribute ``complete: true`` is set last. Readers list only complete groups, so a killed
run never exposes a half-written recording, and the next run overwrites it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from brainfm._logging import logger
from brainfm._version import __version__
from brainfm.data.channels import CHANNEL_COLUMNS, FLOAT_COLUMNS, INT_COLUMNS
from brainfm.data.recording import Recording
from brainfm.data.windows import bad_spans
from brainfm.errors import StoreFormatError
from brainfm.store._json import to_json
from brainfm.store.encoding import (
    bitround,
    bitround_config,
    channel_stats,
    good_samples,
    signal_chunk_times,
    signal_compressors,
)
from brainfm.store.format import (
    COMPRESSIONS,
    EVENT_FIELDS,
    FAILURES_GROUP,
    FORMAT_VERSION,
    RECORDINGS_GROUP,
    STAT_NAMES,
)

__all__ = ["StoreWriter", "software_versions"]


def software_versions() -> dict[str, str]:
    """Versions of brainfm and of the libraries that shape the stored data."""
    import mne
    import numpy
    import zarr

    return {"brainfm": __version__, "mne": mne.__version__, "zarr": zarr.__version__, "numpy": numpy.__version__}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def failure_key(path: str) -> str:
    """Name of the failure entry of a source path."""
    return hashlib.sha1(str(path).encode()).hexdigest()[:20]


class StoreWriter:
    """Create or extend a store and write recordings into it.

    Parameters
    ----------
    path : str | pathlib.Path
        The store folder (created when absent).

    Raises
    ------
    StoreFormatError
        When the folder holds a store of another format version, or a Zarr group that is
        not a brainfm store.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._root = self._open_root()
        self._recordings = self._require_group(RECORDINGS_GROUP)
        self._failures = self._require_group(FAILURES_GROUP)

    def _open_root(self) -> Any:
        """Open the root group, creating it when absent.

        Array jobs (``--shard``) may all start on an empty path at once: the root is written
        in one atomic write with its attributes (Zarr writes a temporary ``*.partial`` file
        and renames it), so a process sees either no store or a complete one.
        """
        import zarr
        from zarr.errors import ContainsGroupError

        metadata = self.path / "zarr.json"
        if not metadata.exists():
            others = [p.name for p in self.path.iterdir() if not p.name.endswith(".partial")] if self.path.is_dir() else []
            if others and not metadata.exists():
                raise StoreFormatError(
                    f"{self.path} exists and is not empty, but holds no Zarr store. Choose a new folder for the store."
                )
            attributes = {"brainfm_format_version": FORMAT_VERSION, "written_by": software_versions(), "created": _now()}
            try:
                return zarr.create_group(str(self.path), attributes=attributes, overwrite=False)
            except ContainsGroupError:
                pass  # another process created it first: open theirs
        root = zarr.open_group(str(self.path), mode="a")
        version = root.attrs.get("brainfm_format_version")
        if version is None:
            raise StoreFormatError(f"{self.path} is a Zarr group but not a brainfm store (no brainfm_format_version).")
        if version != FORMAT_VERSION:
            raise StoreFormatError(
                f"{self.path} is a brainfm store of format version {version}; this brainfm writes "
                f"version {FORMAT_VERSION}. Write into a new store."
            )
        return root

    def _require_group(self, name: str) -> Any:
        from zarr.errors import ContainsGroupError

        try:
            return self._root.require_group(name)
        except ContainsGroupError:  # created by another process between lookup and creation
            return self._root[name]

    def recording_attrs(self, recording_id: str) -> dict[str, Any] | None:
        """Attributes of a stored recording, complete or not, or None when absent."""
        try:
            group = self._recordings[recording_id]  # one metadata read ('in' would be a second)
        except KeyError:
            return None
        return dict(group.attrs)

    def source_hashes(self) -> dict[str, list[str]]:
        """The source sha256 of every complete recording, with the ids stored from it.

        Returns
        -------
        hashes : dict of str to list of str
            sha256 -> sorted recording ids (more than one when the same source was stored twice).
        """
        hashes: dict[str, list[str]] = {}
        for recording_id, group in sorted(self._recordings.groups(), key=lambda item: item[0]):
            attrs = group.attrs
            sha256 = (attrs.get("source") or {}).get("sha256")
            if attrs.get("complete") and sha256:
                hashes.setdefault(sha256, []).append(recording_id)
        return hashes

    def is_up_to_date(self, recording_id: str, sha256: str, config_hash: str) -> bool:
        """Whether the recording is complete and was made from this source and config.

        Parameters
        ----------
        recording_id : str
            The id.
        sha256 : str
            Hash of the source file(s).
        config_hash : str
            Hash of the resolved preprocessing config.

        Returns
        -------
        up_to_date : bool
            True when a re-run would write the same recording.
        """
        attrs = self.recording_attrs(recording_id)
        if not attrs or not attrs.get("complete"):
            return False
        return (
            attrs.get("source", {}).get("sha256") == sha256
            and attrs.get("provenance", {}).get("config_hash") == config_hash
        )

    def write(
        self,
        recording: Recording,
        *,
        chunk_mib: float = 2.0,
        compression: str = "none",
        clevel: int = 5,
        shuffle: str | None = None,
        bitround_keepbits: int | None = None,
    ) -> str:
        """Write one recording; any earlier group of the same id is replaced.

        Parameters
        ----------
        recording : Recording
            The recording.
        chunk_mib : float
            Target uncompressed size of one signal chunk.
        compression : "none" | "lz4" | "zstd"
            Blosc codec of the signal, or none (the default: fastest to load; see
            :func:`~brainfm.store.encoding.signal_compressors` and ``docs/benchmarks.md``).
        clevel : int
            Compression level (1-9).
        shuffle : "shuffle" | "bitshuffle" | None
            Blosc shuffle; None picks bit shuffle after mantissa rounding, byte shuffle otherwise.
        bitround_keepbits : int | None
            Keep this many float32 mantissa bits before compression (lossy); None keeps all.

        Returns
        -------
        recording_id : str
            The id written.
        """
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}.")
        if shuffle is None:
            shuffle = "bitshuffle" if bitround_keepbits is not None else "shuffle"
        compressors, codec = signal_compressors(compression, clevel, shuffle)
        rid = recording.recording_id
        n_channels, n_times = recording.signal.shape
        group = self._recordings.create_group(rid, overwrite=True, attributes={"complete": False, "id": rid})

        chunk_times = signal_chunk_times(n_channels, n_times, chunk_mib)
        signal = group.create_array(
            "signal",
            shape=(n_channels, n_times),
            dtype="float32",
            chunks=(max(n_channels, 1), max(chunk_times, 1)),
            compressors=compressors,
            dimension_names=["channel", "time"],
            # stored samples are always finite: a chunk lost on disk reads as NaN, which
            # `brainfm store check` reports and the loader refuses, instead of silent zeros
            fill_value=float("nan"),
        )
        block = chunk_times * 8
        for start in range(0, n_times, block):
            values = np.asarray(recording.signal[:, start : start + block], dtype=np.float32)
            if bitround_keepbits is not None:
                values = bitround(values, bitround_keepbits)
            signal[:, start : start + values.shape[1]] = values

        # normalisation statistics over the good spans only: artefacts marked BAD would set them
        spans = bad_spans(recording.events["onset_s"].to_numpy(np.float64),
                          recording.events["duration_s"].to_numpy(np.float64),
                          recording.events["description"].astype(str).to_numpy(), recording.sfreq)
        good = good_samples(n_times, spans)
        stats = channel_stats(recording.signal, exclude=spans)
        group.create_array(
            "channel_stats", data=stats.astype(np.float64), dimension_names=["channel", "stat"]
        )
        events = recording.events.sort_values("onset_s", kind="stable")
        descriptions = sorted({str(d) for d in events["description"]})
        code = {d: i for i, d in enumerate(descriptions)}
        table_events = np.column_stack(
            [
                events["onset_s"].to_numpy(np.float64),
                events["duration_s"].to_numpy(np.float64),
                np.array([code[str(d)] for d in events["description"]], dtype=np.float64),
            ]
        ).reshape(len(events), len(EVENT_FIELDS))
        array = group.create_array(
            "events", shape=table_events.shape, dtype="float64", chunks=(max(len(events), 1), len(EVENT_FIELDS)),
            dimension_names=["event", "field"],
        )
        if len(events):
            array[:] = table_events

        channels = recording.channels
        table = {
            col: [float(v) for v in channels[col]] if col in FLOAT_COLUMNS
            else [int(v) for v in channels[col]] if col in INT_COLUMNS
            else [str(v) for v in channels[col]]
            for col in CHANNEL_COLUMNS
        }
        attrs = {
            "id": rid,
            "identity": recording.identity.to_dict(),
            "subject_source": recording.subject_source,
            "sfreq": float(recording.sfreq),
            "n_channels": int(n_channels),
            "n_times": int(n_times),
            "line_freq": recording.line_freq,
            "meas_date": recording.meas_date,
            "channels": table,
            "stat_names": list(STAT_NAMES),
            "stat_samples": int(n_times if good is None or not good.any() else np.count_nonzero(good)),
            "event_descriptions": descriptions,
            "event_fields": list(EVENT_FIELDS),
            "source": recording.source,
            "provenance": {**recording.provenance, "software": software_versions(), "written_at": _now()},
            "signal_encoding": {
                "dtype": "float32",
                "compressor": codec,
                "chunk_times": int(chunk_times),
                "bitround_keepbits": bitround_keepbits,
                "bitround": bitround_config(bitround_keepbits),
            },
        }
        # One metadata write with everything, then the last one: the recording becomes
        # visible to readers only now. (attrs.update() would rewrite zarr.json per key.)
        group.update_attributes(to_json(attrs))
        group.update_attributes({"complete": True})
        self.clear_failure(str(recording.source.get("path", "")))
        logger.debug("stored %s (%d channels x %d samples)", rid, n_channels, n_times)
        return rid

    def update_source(self, recording_id: str, fields: dict[str, Any]) -> None:
        """Add or change fields of a complete recording's ``source`` attribute (one atomic write).

        Parameters
        ----------
        recording_id : str
            The recording.
        fields : dict
            JSON-ready fields, e.g. ``{"stamps": [...]}``.
        """
        group = self._recordings[recording_id]
        source = dict(group.attrs["source"])
        source.update(fields)
        group.update_attributes({"source": to_json(source)})

    def record_failure(self, path: str, error: BaseException | str, recording_id: str | None = None) -> None:
        """Record in the store's manifest that ``path`` could not be stored, and why.

        Parameters
        ----------
        path : str
            The source file.
        error : Exception | str
            The error (its message is what users read).
        recording_id : str | None
            The id the file would have had, when known.
        """
        message = str(error)
        kind = type(error).__name__ if isinstance(error, BaseException) else "Error"
        self._failures.create_group(
            failure_key(path),
            overwrite=True,
            attributes=to_json(
                {"path": str(path), "error": message, "error_type": kind, "recording_id": recording_id, "time": _now()}
            ),
        )

    def clear_failure(self, path: str) -> None:
        """Forget an earlier failure of ``path`` (it has now been stored)."""
        key = failure_key(path)
        if key in self._failures:
            del self._failures[key]
