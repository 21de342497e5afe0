"""Reuse large arrays once nothing else holds them.

A fresh allocation of a few MiB or more is served by ``mmap`` and handed back to the kernel
when freed, so every use pays one page fault per 4 KiB page on first touch: for a batch of
256 windows x 64 channels x 512 samples (33.5 MB) that is about as long as decoding it.
Reusing the memory avoids it, but only when the previous user is done with it.

Whether anyone else still uses an array is read from its reference count: a numpy view
keeps its ``base`` alive, and ``torch.from_numpy`` keeps the array alive through the
tensor's storage, which every tensor view and every autograd or DataLoader reference
shares. So an array held only by one of the lists below is free. The count an unshared
array has is measured once at import (interpreters differ in how they count the
references of a call), through the same function that later checks it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

__all__ = ["SignalBuffers", "held_elsewhere"]


def _count(items: list[Any], i: int) -> int:
    return sys.getrefcount(items[i])


#: Reference count of an item held by its list only, as :func:`_count` sees it.
_UNSHARED = _count([np.empty(0)], 0)


def held_elsewhere(items: list[Any], i: int) -> bool:
    """Whether ``items[i]`` is referenced by anything besides the list (views and tensors count).

    Parameters
    ----------
    items : list
        The list holding the object.
    i : int
        Its position.

    Returns
    -------
    held : bool
        False when only the list holds it (it may then be reused).
    """
    return _count(items, i) > _UNSHARED


class SignalBuffers:
    """A few float32 buffers for batch signals, each reused once its batch is gone.

    Meant for the process that consumes the batches (DataLoader with ``num_workers=0``): a
    caller that keeps a batch keeps its buffer, and the next batch gets another one, so a
    batch is never overwritten while anything still references its signal.

    Parameters
    ----------
    n_buffers : int
        Buffers kept for reuse (a training loop holds one or two batches at a time).
    """

    def __init__(self, n_buffers: int = 3) -> None:
        self.n_buffers = int(n_buffers)
        self._buffers: list[np.ndarray] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"n_buffers": self.n_buffers, "_buffers": []}

    def empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised float32 tensor of ``shape``, in reused memory when a buffer is free.

        Parameters
        ----------
        shape : tuple of int
            The tensor shape.

        Returns
        -------
        tensor : torch.Tensor
            Contiguous float32; its memory is not reused while the tensor (or any view of
            it) is alive.
        """
        numel = int(np.prod(shape))
        free = [i for i in range(len(self._buffers)) if not held_elsewhere(self._buffers, i)]
        fitting = [i for i in free if self._buffers[i].size >= numel]
        if fitting:
            buffer = self._buffers[min(fitting, key=lambda i: self._buffers[i].size)]
        else:
            buffer = np.empty(numel, dtype=np.float32)
            if len(self._buffers) < self.n_buffers:
                self._buffers.append(buffer)
            elif free:  # replace a free buffer that is too small
                self._buffers[free[0]] = buffer
        return torch.from_numpy(buffer[:numel].reshape(shape))
