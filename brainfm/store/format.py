"""Store format v1: names and constants shared by the writer, the reader and the checker.

The format is specified field by field in ``docs/store-format.md``.
"""

from __future__ import annotations

__all__ = [
    "COMPRESSIONS",
    "EVENT_FIELDS",
    "FAILURES_GROUP",
    "FORMAT_VERSION",
    "RECORDINGS_GROUP",
    "REQUIRED_RECORDING_ATTRS",
    "STAT_NAMES",
]

#: The on-disk format version this brainfm writes and reads.
FORMAT_VERSION = 1
RECORDINGS_GROUP = "recordings"
FAILURES_GROUP = "failures"
#: Columns of the ``channel_stats`` array, in order.
STAT_NAMES: tuple[str, ...] = ("mean", "std", "median", "iqr")
#: Columns of the ``events`` array (n_events, 3), in order; ``code`` indexes ``event_descriptions``.
EVENT_FIELDS: tuple[str, ...] = ("onset_s", "duration_s", "code")
#: Signal compressions a store may use (blosc codecs, or none).
COMPRESSIONS: tuple[str, ...] = ("lz4", "zstd", "none")
#: Attributes every complete recording group carries.
REQUIRED_RECORDING_ATTRS: tuple[str, ...] = (
    "complete", "id", "identity", "sfreq", "n_channels", "n_times", "channels",
    "event_descriptions", "event_fields", "source", "provenance", "signal_encoding",
)
