"""Token codes stored beside a recording's signal: ``recordings/<id>/codes/<name>``.

``brainfm tokenize`` writes one integer array per recording and tokenizer name (the layout is
in ``docs/store-format.md``). Like a recording group, a codes array becomes visible only when
complete: it is created with the attribute ``complete: false``, filled, and marked
``complete: true`` last, so a killed run never leaves codes that readers take for finished.

Writers take an exclusive lock on the store (:func:`codes_lock`) for the whole run, so two
runs never write codes into one store at once; the lock is a ``flock`` on the root
``zarr.json`` (which no brainfm writer rewrites after creating the store), released by the
operating system when the process ends, killed or not. No file is added to the store.

This module uses numpy and Zarr only (no torch).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from brainfm.errors import StoreFormatError, StoreLockedError, StoreNotFoundError
from brainfm.store._json import to_json
from brainfm.store.format import RECORDINGS_GROUP

__all__ = [
    "CODES_GROUP",
    "CODES_KINDS",
    "CodesArray",
    "check_codes_name",
    "codes_dtype",
    "codes_lock",
    "create_codes",
    "finish_codes",
    "open_codes",
    "store_writable",
]

#: Name of the group, inside each recording group, that holds its code arrays.
CODES_GROUP = "codes"
#: Layouts a codes array can have (attribute ``kind``): one code per sample and channel
#: (``sample``: ``(channel, time)``) or a grid of codes per window (``window``:
#: ``(latent, step, level)``, BrainTokenizer).
CODES_KINDS: tuple[str, ...] = ("sample", "window")
#: Value of samples or steps that hold no code (the tail after the last tokenised window).
NO_CODE = -1


def check_codes_name(name: str) -> str:
    """Refuse a codes name that is not a plain Zarr node name (letters, digits, ``.``, ``-``, ``_``).

    Parameters
    ----------
    name : str
        The name (``--name``).

    Returns
    -------
    name : str
        The same name.
    """
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
    if not name or not set(name) <= allowed or name.startswith(".") or name.startswith("__"):
        raise StoreFormatError(
            f"Invalid codes name {name!r}: use letters, digits, '.', '-' and '_' only (e.g. 'braintokenizer-tiny')."
        )
    return name


def codes_dtype(vocab_size: int) -> str:
    """``int16`` when every code (and -1) fits, else ``int32``.

    Parameters
    ----------
    vocab_size : int
        Number of distinct codes.

    Returns
    -------
    dtype : str
        The numpy dtype name.
    """
    return "int16" if vocab_size <= np.iinfo(np.int16).max else "int32"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def store_writable(path: str | Path) -> None:
    """Refuse a store that this process cannot write, before anything is written.

    Parameters
    ----------
    path : str | pathlib.Path
        The store folder.

    Raises
    ------
    StoreNotFoundError
        When ``path`` holds no store.
    StoreFormatError
        When its recordings cannot be written (read-only file system or permissions).
    """
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreNotFoundError(f"{path} is not a brainfm store (no zarr.json).")
    recordings = path / RECORDINGS_GROUP
    folders = [recordings, *[p for p in recordings.iterdir() if p.is_dir()]] if recordings.is_dir() else [path]
    blocked = [str(p) for p in folders if not os.access(p, os.W_OK)]
    if blocked:
        raise StoreFormatError(
            f"{path} is read-only for this process ({len(blocked)} folders cannot be written, e.g. {blocked[0]}); "
            "nothing was written. Tokenize into a writable copy of the store, or fix its permissions."
        )


@contextlib.contextmanager
def codes_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold the store's exclusive codes-writing lock, or fail at once.

    Parameters
    ----------
    path : str | pathlib.Path
        The store folder.
    what : str
        What the holder does (stored nowhere; for messages).

    Raises
    ------
    StoreLockedError
        When another process holds the lock (another ``brainfm tokenize`` run).
    """
    import fcntl

    metadata = Path(path) / "zarr.json"
    try:
        handle = open(metadata, "rb")  # noqa: SIM115 - held for the lock's lifetime
    except FileNotFoundError as exc:
        raise StoreNotFoundError(f"{path} is not a brainfm store (no zarr.json).") from exc
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreLockedError(
                f"{path} is being written by another 'brainfm tokenize' run (it holds the store's codes lock); "
                f"refusing to {what} at the same time. Wait for that run to finish, then run this again: "
                "recordings it completed are skipped."
            ) from exc
        yield
    finally:
        handle.close()  # releases the lock


class CodesArray:
    """A stored codes array and its attributes (read-only view).

    Attributes
    ----------
    recording_id : str
        The recording.
    name : str
        The codes name.
    attrs : dict
        The array's attributes (``docs/store-format.md``).
    """

    def __init__(self, recording_id: str, name: str, array: Any) -> None:
        self.recording_id, self.name = recording_id, name
        self.array = array
        self.attrs: dict[str, Any] = dict(array.attrs)

    def __repr__(self) -> str:
        return f"<CodesArray {self.recording_id}/{self.name} | {self.attrs.get('kind')} {tuple(self.array.shape)}>"

    @property
    def complete(self) -> bool:
        """Whether the write finished."""
        return bool(self.attrs.get("complete"))

    @property
    def kind(self) -> str:
        """``"sample"`` or ``"window"``."""
        return str(self.attrs.get("kind"))

    @property
    def tokenizer(self) -> dict[str, Any]:
        """``class_path``, ``init_args`` and ``digest`` of the tokenizer that wrote it."""
        return dict(self.attrs.get("tokenizer") or {})


def open_codes(recording_group: Any, recording_id: str, name: str) -> CodesArray | None:
    """The codes array ``name`` of a recording group, complete or not, or None when absent.

    Parameters
    ----------
    recording_group : zarr.Group
        The recording's group.
    recording_id : str
        Its id (for messages).
    name : str
        The codes name.

    Returns
    -------
    codes : CodesArray | None
        The array, or None.
    """
    try:
        array = recording_group[f"{CODES_GROUP}/{name}"]
    except KeyError:
        return None
    return CodesArray(recording_id, name, array)


def create_codes(
    recording_group: Any,
    name: str,
    *,
    shape: tuple[int, ...],
    dtype: str,
    chunks: tuple[int, ...],
    dimension_names: list[str],
    attributes: Mapping[str, Any],
) -> Any:
    """Create (or replace) a codes array with ``complete: false``; fill it, then call :func:`finish_codes`.

    Parameters
    ----------
    recording_group : zarr.Group
        The recording's group (opened for writing).
    name : str
        The codes name.
    shape, chunks : tuple of int
        Array shape and chunk shape.
    dtype : str
        ``int16`` or ``int32``.
    dimension_names : list of str
        Zarr ``dimension_names``.
    attributes : mapping
        JSON-ready attributes; ``complete`` and ``started`` are set here.

    Returns
    -------
    array : zarr.Array
        The new array, filled with -1 (no code).
    """
    from zarr.errors import ContainsGroupError

    try:
        group = recording_group.require_group(CODES_GROUP)
    except ContainsGroupError:  # created meanwhile by another process
        group = recording_group[CODES_GROUP]
    attrs = {**to_json(dict(attributes)), "complete": False, "started": _now(), "host": socket.gethostname(),
             "pid": os.getpid()}
    return group.create_array(
        name, shape=shape, dtype=dtype, chunks=chunks, dimension_names=dimension_names,
        fill_value=NO_CODE, attributes=attrs, overwrite=True,
    )


def finish_codes(array: Any, extra: Mapping[str, Any] | None = None) -> None:
    """Record the last attributes, then mark the array complete (the very last write).

    Parameters
    ----------
    array : zarr.Array
        As returned by :func:`create_codes`, filled.
    extra : mapping | None
        JSON-ready attributes to add first (e.g. timing).
    """
    array.update_attributes(to_json({**(extra or {}), "written_at": _now()}))
    array.update_attributes({"complete": True})
