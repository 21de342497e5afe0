"""Reuse large arrays once nothing else holds them.

A fresh allocation of a few MiB or more is served by ``mmap`` and handed back to the kernel
when freed, so every use pays one page fault per 4 KiB page on first touch: for a batch of
256 windows x 64 channels x 512 samples (33.5 MB) that is about as long as decoding it.
Reusing the memory avoids it, but only when the previous user is done with it.

Whether anyone still uses a block of memory is followed with weak references, not with
reference counts (``sys.getrefcount`` counts differently from one interpreter to the next:
Python 3.14 borrows references on the stack, free-threaded builds defer them). A
:class:`ReusableMemory` hands its memory out as a *new* numpy array each time, made with
``numpy.frombuffer`` over a ``memoryview``. numpy makes every view of that array point at it
(the chain of bases stops at the first array whose base is not an array), and
``torch.from_numpy`` keeps it alive through the tensor's storage, which every tensor view,
``tensor.numpy()`` array, autograd or DataLoader reference shares. So the array dies, and
its weak reference with it, exactly when the last view or tensor of it is gone.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import torch

__all__ = ["ReusableMemory", "SignalBuffers"]


class ReusableMemory:
    """A block of memory lent out as numpy arrays, free again once every array made from it is gone.

    Parameters
    ----------
    memory : int | memoryview
        A size in bytes (private memory is allocated, untouched until written) or a writable
        memoryview to lend out (e.g. one slot of a shared mapping).
    """

    __slots__ = ("_lent", "_memory", "nbytes")

    def __init__(self, memory: int | memoryview) -> None:
        if isinstance(memory, memoryview):
            self._memory = memory.cast("B")
        else:
            self._memory = memoryview(np.empty(int(memory), dtype=np.uint8))
        self.nbytes = int(self._memory.nbytes)
        self._lent: list[weakref.ref[np.ndarray]] = []

    def __repr__(self) -> str:
        return f"<ReusableMemory | {self.nbytes} bytes, {'in use' if self.in_use else 'free'}>"

    @property
    def in_use(self) -> bool:
        """Whether an array lent by :meth:`array` (or any view or tensor of it) is still alive."""
        self._lent = [ref for ref in self._lent if ref() is not None]
        return bool(self._lent)

    def array(self, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """A new C-contiguous array of ``shape`` over the start of the memory (not initialised).

        Parameters
        ----------
        shape : tuple of int
            The array shape.
        dtype : numpy dtype
            The element type.

        Returns
        -------
        array : numpy.ndarray
            The memory counts as in use while this array, a view of it or a tensor sharing
            it is alive.
        """
        dtype = np.dtype(dtype)
        count = math.prod(shape)  # (numpy.prod costs microseconds on a tuple: this runs per decoded chunk)
        if count * dtype.itemsize > self.nbytes:
            raise ValueError(f"An array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes; "
                             f"this memory holds {self.nbytes}.")
        flat = np.frombuffer(self._memory, dtype=dtype, count=count)  # base: the memoryview, not an array
        self._lent.append(weakref.ref(flat))
        return flat.reshape(shape)


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
        self._buffers: list[ReusableMemory] = []

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
        nbytes = math.prod(shape) * 4
        free = [i for i, buffer in enumerate(self._buffers) if not buffer.in_use]
        fitting = [i for i in free if self._buffers[i].nbytes >= nbytes]
        if fitting:
            buffer = self._buffers[min(fitting, key=lambda i: self._buffers[i].nbytes)]
        else:
            buffer = ReusableMemory(nbytes)
            if len(self._buffers) < self.n_buffers:
                self._buffers.append(buffer)
            elif free:  # replace a free buffer that is too small
                self._buffers[free[0]] = buffer
        return torch.from_numpy(buffer.array(shape))
