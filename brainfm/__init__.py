"""brainfm: brain-signal foundation models on one data path (EEG, MEG, iEEG).

Importing brainfm is light: heavy modules (zarr, mne, torch) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainfm._version import __version__

if TYPE_CHECKING:
    from brainfm.store import Store

__all__ = ["__version__", "open_store"]


def open_store(path: Any) -> Store:
    """Open a brainfm store read-only (see :func:`brainfm.store.open_store`).

    Parameters
    ----------
    path : str | pathlib.Path
        The store folder.

    Returns
    -------
    store : brainfm.store.Store
        ``list(store)`` gives recording ids; ``store[id]`` a recording.
    """
    from brainfm.store.reader import open_store as _open_store

    return _open_store(path)
