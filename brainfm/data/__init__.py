"""In-memory data model: recordings, identities, channel and event tables (no torch)."""

from brainfm.data.channels import (
    CHANNEL_COLUMNS,
    CHANNEL_TYPES,
    DATA_CHANNEL_TYPES,
    FRAME_IDS,
    SENSOR_TYPE_IDS,
    empty_channel_table,
    frame_id,
    shaft_groups,
)
from brainfm.data.recording import EVENT_COLUMNS, IDENTITY_FIELDS, Identity, Recording, empty_events

__all__ = [
    "CHANNEL_COLUMNS",
    "CHANNEL_TYPES",
    "DATA_CHANNEL_TYPES",
    "EVENT_COLUMNS",
    "FRAME_IDS",
    "IDENTITY_FIELDS",
    "SENSOR_TYPE_IDS",
    "Identity",
    "Recording",
    "empty_channel_table",
    "empty_events",
    "frame_id",
    "shaft_groups",
]
