"""The brainfm exception hierarchy.

Every error brainfm raises on purpose derives from :class:`BrainFMError` and from the
builtin that best describes it, so callers can catch either (``except FileNotFoundError``
keeps working for a missing store).
"""

from __future__ import annotations

__all__ = [
    "BrainFMError",
    "CheckpointError",
    "ConfigError",
    "ContentNotFetchedError",
    "DataQualityError",
    "DuplicateRecordingError",
    "EventReadError",
    "ExcludedByRecipe",
    "NoDataChannelsError",
    "NonFiniteDataError",
    "ReadError",
    "RecordingTooShortError",
    "SidecarError",
    "StoreFormatError",
    "StoreLockedError",
    "StoreNotFoundError",
    "TruncatedFileError",
    "UnsupportedFormatError",
]


class BrainFMError(Exception):
    """Base class of all brainfm errors."""


class ConfigError(BrainFMError, ValueError):
    """A recipe, config file or argument is invalid."""


class StoreNotFoundError(BrainFMError, FileNotFoundError):
    """The path does not hold a brainfm store (or the recording is absent)."""


class StoreFormatError(BrainFMError, ValueError):
    """The store was written in a format version this brainfm cannot read, or is damaged."""


class StoreLockedError(BrainFMError, BlockingIOError):
    """Another process is writing into the store (``brainfm tokenize``); nothing was written."""


class ReadError(BrainFMError, OSError):
    """A recording file could not be read."""


class UnsupportedFormatError(ReadError):
    """No reader could open the file, although its name looked like a recording."""


class TruncatedFileError(ReadError):
    """A file holds less data than its header declares."""


class ContentNotFetchedError(ReadError):
    """A file is a git-annex/DataLad placeholder (or a broken link): its content was never fetched."""


class EventReadError(ReadError):
    """The events of a recording (stim channel, event file) could not be read."""


class SidecarError(ReadError):
    """A sidecar file (BIDS TSV/JSON, montage, marker or event file) could not be read."""


class DataQualityError(BrainFMError, ValueError):
    """The data were read but cannot be stored as they are."""


class NonFiniteDataError(DataQualityError):
    """The signal contains NaN or infinite samples."""


class RecordingTooShortError(DataQualityError):
    """The recording holds fewer samples than the recipe's steps (or its ``min_duration_s``) need."""


class NoDataChannelsError(DataQualityError):
    """No EEG, MEG or iEEG channel is left to store."""


class ExcludedByRecipe(BrainFMError):
    """The recording holds only channel types the recipe does not keep (not an error)."""


class DuplicateRecordingError(BrainFMError, ValueError):
    """Two source files map to the same recording id."""


class CheckpointError(BrainFMError, ValueError):
    """A checkpoint is from another model or format version, damaged, or does not fit the model."""
