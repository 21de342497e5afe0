"""Reading and writing checkpoint files: atomic writes, ``weights_only`` reads, verification."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from brainfm.checkpoint.format import state_digest, verify_checkpoint
from brainfm.errors import CheckpointError

__all__ = ["BrainfmCheckpointIO", "atomic_save", "read_checkpoint"]


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.

    A process killed while writing leaves the previous file at ``path`` intact (and at
    worst a ``.tmp`` file beside it, never a truncated checkpoint under the real name).

    Parameters
    ----------
    obj : object
        What to save (plain values and tensors).
    path : path-like
        Destination file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and verify it.

    Parameters
    ----------
    path : path-like
        The file.
    map_location : object
        Passed to :func:`torch.load`.

    Returns
    -------
    checkpoint : dict
        The checkpoint, its ``"brainfm"`` entry verified
        (:func:`~brainfm.checkpoint.format.verify_checkpoint`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values, which brainfm never unpickles "
            f"(torch.load(weights_only=True) refused: {str(exc).splitlines()[0]})."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file): {exc}") from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary.")
    verify_checkpoint(checkpoint, path)
    return checkpoint


class BrainfmCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes with a weight digest; verified ``weights_only`` reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` atomically, recording the digest of its weights."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}.")
        meta = checkpoint.get("brainfm")
        if isinstance(meta, dict):
            meta["state_digest"] = state_digest(checkpoint["state_dict"])
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Read and verify a checkpoint (always ``weights_only=True``)."""
        return read_checkpoint(path, map_location=map_location if map_location is not None else "cpu")
