"""In-memory data model: recordings, identities, channel and event tables (no torch)."""

from brainfm.data.channels import (
    CHANNEL_COLUMNS,
    CHANNEL_TYPES,
    DATA_CHANNEL_TYPES,
    SENSOR_TYPE_IDS,
    empty_channel_table,
    shaft_groups,
)
from brainfm.data.recording import EVENT_COLUMNS, IDENTITY_FIELDS, Identity, Recording, empty_events

__all__ = [
    "CHANNEL_COLUMNS",
    "CHANNEL_TYPES",
    "DATA_CHANNEL_TYPES",
    "EVENT_COLUMNS",
    "IDENTITY_FIELDS",
    "SENSOR_TYPE_IDS",
    "Identity",
    "Recording",
    "empty_channel_table",
    "empty_events",
    "shaft_groups",
]
