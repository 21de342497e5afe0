"""The Zarr v3 store: writer, reader and checker (format v1, see docs/store-format.md)."""

from brainfm.store.format import FORMAT_VERSION
from brainfm.store.reader import Store, StoredRecording, open_store
from brainfm.store.writer import StoreWriter

__all__ = ["FORMAT_VERSION", "Store", "StoreWriter", "StoredRecording", "open_store"]
