"""What a brainfm checkpoint holds beside the weights, and how it is verified.

A brainfm checkpoint is a Lightning checkpoint (``state_dict``, optimiser and scheduler
states, loop and sampler positions) with one more entry, ``"brainfm"``:

==========================  =====================================================================
key                         meaning
==========================  =====================================================================
``format_version``          :data:`CHECKPOINT_FORMAT_VERSION` of the writer
``brainfm_version``         brainfm version that wrote it
``tokenizer``               ``{"class_path", "init_args"}`` of the tokenizer
``backbone``, ``objective`` the same, or None
``data``                    :class:`~brainfm.nn.data_facts.DataFacts` of the training data
``training_data``           store path, store format version, preprocessing recipes, and the
                            recordings and subjects of the training split
``rng``                     Python, NumPy and torch random states (exact resume)
``state_digest``            SHA-256 of every weight's name, dtype, shape and bytes
==========================  =====================================================================

Everything is plain Python values and tensors, so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

from brainfm._version import __version__
from brainfm.errors import CheckpointError

__all__ = ["CHECKPOINT_FORMAT_VERSION", "state_digest", "verify_checkpoint"]

#: Version of the ``"brainfm"`` entry; bumped when its meaning changes.
CHECKPOINT_FORMAT_VERSION = 1


def state_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order.

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor
        Weights and buffers.

    Returns
    -------
    digest : str
        Hexadecimal digest.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_checkpoint(checkpoint: Mapping[str, Any], path: object) -> dict[str, Any]:
    """Refuse a checkpoint brainfm did not write, of another format version, or altered since.

    Parameters
    ----------
    checkpoint : mapping
        As loaded.
    path : path-like
        Its file (for messages).

    Returns
    -------
    meta : dict
        The ``"brainfm"`` entry.
    """
    meta = checkpoint.get("brainfm")
    if not isinstance(meta, Mapping):
        raise CheckpointError(
            f"{path} is not a brainfm checkpoint (it has no 'brainfm' entry; keys: {sorted(checkpoint)[:8]}). "
            "Give a checkpoint written by 'brainfm pretrain fit'."
        )
    version = meta.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        age = "an older" if isinstance(version, int) and version < CHECKPOINT_FORMAT_VERSION else "another"
        raise CheckpointError(
            f"{path} was written in {age} checkpoint format (version {version!r}, brainfm "
            f"{meta.get('brainfm_version', '?')}); this brainfm {__version__} reads version "
            f"{CHECKPOINT_FORMAT_VERSION}. Retrain with this version, or load it with the brainfm that wrote it."
        )
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} has no 'state_dict': the file is damaged.")
    expected = meta.get("state_digest")
    actual = state_digest(state)
    if expected != actual:
        raise CheckpointError(
            f"{path} was altered after it was written: the digest of its weights is {actual[:16]}..., "
            f"the digest recorded at save time {str(expected)[:16]}... . Do not use it; load an intact copy."
        )
    return dict(meta)
