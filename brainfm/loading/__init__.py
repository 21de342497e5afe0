"""From the store to training batches: window index, samplers, Batch, the Lightning data module.

This is the first layer that imports torch; it builds only on brainfm's core
(``brainfm.data``, ``brainfm.store``). See ``docs/loading.md``.

``WindowDataLoader`` and ``WindowDataModule`` are imported on first access: they need
Lightning, whose import takes seconds, and DataLoader workers started with ``spawn`` or
``forkserver`` (Python 3.14's default on Linux) import this package to unpickle the dataset.
"""

from typing import Any

from brainfm.loading.batch import PAD_FRAME_ID, PAD_SENSOR_TYPE, Batch, collate_batches
from brainfm.loading.chunks import ChunkReader, configure_worker_threads
from brainfm.loading.dataset import WindowDataset
from brainfm.loading.labels import NO_LABEL, RecordingLabels
from brainfm.loading.layout import RecordingLayout, sensor_geometry
from brainfm.loading.normalization import NORMALIZATIONS, channel_affine, sensortype_normalize_
from brainfm.loading.samplers import SHUFFLES, WindowBatchSampler, epoch_order
from brainfm.loading.splits import SPLIT_UNITS, split_index
from brainfm.loading.vocabulary import Vocabulary, channel_key
from brainfm.loading.windows import WindowIndex, build_window_index

__all__ = [
    "NORMALIZATIONS",
    "NO_LABEL",
    "PAD_FRAME_ID",
    "PAD_SENSOR_TYPE",
    "SHUFFLES",
    "SPLIT_UNITS",
    "Batch",
    "ChunkReader",
    "RecordingLabels",
    "RecordingLayout",
    "Vocabulary",
    "WindowBatchSampler",
    "WindowDataLoader",
    "WindowDataModule",
    "WindowDataset",
    "WindowIndex",
    "build_window_index",
    "channel_affine",
    "channel_key",
    "collate_batches",
    "configure_worker_threads",
    "epoch_order",
    "sensor_geometry",
    "sensortype_normalize_",
    "split_index",
]


def __getattr__(name: str) -> Any:
    if name in ("WindowDataLoader", "WindowDataModule"):
        from brainfm.loading import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'brainfm.loading' has no attribute {name!r}")
