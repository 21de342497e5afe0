"""Reuse the outputs of a backbone's frozen parts across epochs, folds and seeds.

Under LoRA only the attention projections train; everything before the first adapted layer
(for a BrainTokenizer: the SEANet encoder that turns every channel window into a latent
sequence, most of the compute) gives the same output for the same input at every step. The
classifier would recompute it for every trial in every epoch of every fold and seed.

:func:`cache_frozen_outputs` gives each largest submodule that holds no trainable weight a
:class:`FrozenOutputs` forward, which remembers its output row by row (a row is one element along the
first dimension, keyed by the bytes of the inputs of that row) and computes only the rows it
has not seen. It steps aside where caching would be wrong:

- when an input needs a gradient (the module sits after a trainable layer),
- in training mode (dropout, noise and masking draw new values at every call),
- when the module is not row-wise: on its first call the output of the first row alone is
  compared with its row of the whole batch, and a module whose rows depend on each other is
  never cached again.

The store of outputs lives outside the module (``copy.deepcopy`` shares it), so every copy of
a backbone in one evaluation (one per fold, seed and learning rate) fills and reads one store.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["FrozenOutputs", "OutputStore", "cache_frozen_outputs"]


class OutputStore:
    """Rows of frozen modules' outputs by module name and input bytes; shared, never copied.

    Parameters
    ----------
    max_bytes : int
        Stop adding rows once the stored outputs and their keys reach this size (lookups go on).
    """

    def __init__(self, max_bytes: int = 1024**3) -> None:
        self.rows: dict[str, dict[bytes, torch.Tensor]] = {}
        self.row_wise: dict[str, bool] = {}
        self.max_bytes = int(max_bytes)
        self.n_bytes = 0
        self.hits = 0
        self.misses = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> OutputStore:
        return self  # every copy of the backbone shares one store

    def __repr__(self) -> str:
        return (f"<OutputStore | {sum(len(r) for r in self.rows.values())} rows of {len(self.rows)} modules, "
                f"{self.n_bytes / 1e6:.1f} MB, {self.hits} hits, {self.misses} misses>")


def _row_keys(args: tuple[torch.Tensor, ...]) -> list[bytes]:
    """One key per row: the bytes of every input's row, with their shapes and dtypes."""
    header = repr([(tuple(a.shape[1:]), str(a.dtype)) for a in args]).encode()
    parts = [a.detach().contiguous().reshape(a.shape[0], -1).view(torch.uint8).numpy() for a in args]
    return [header + b"".join(p[i].tobytes() for p in parts) for i in range(args[0].shape[0])]


class FrozenOutputs:
    """The ``forward`` of a frozen module, with its output rows remembered (see the module docstring).

    Set as the module's instance attribute ``forward``, so the module keeps its class, its
    other methods and its state-dict names; ``copy.deepcopy`` of the backbone copies it along
    with its module and shares the store.

    Parameters
    ----------
    module : torch.nn.Module
        The frozen module; its forward takes tensors with the same first dimension and returns one tensor.
    name : str
        Its name in the store (the same submodule in every copy of the backbone).
    store : OutputStore
        Where the rows live.
    """

    def __init__(self, module: nn.Module, name: str, store: OutputStore) -> None:
        self.module = module
        self.name = name
        self.store = store

    def _compute(self, *args: Any, **kwargs: Any) -> Any:
        return type(self.module).forward(self.module, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``module.forward(*args)``, from the store for the rows it knows."""
        store = self.store
        if (kwargs or self.module.training or not args or store.row_wise.get(self.name) is False
                or not all(isinstance(a, torch.Tensor) and not a.requires_grad for a in args)
                or len({a.shape[0] for a in args}) != 1 or args[0].shape[0] == 0):
            return self._compute(*args, **kwargs)
        keys = _row_keys(args)
        rows = store.rows.setdefault(self.name, {})
        missing = [i for i, key in enumerate(keys) if key not in rows]
        if missing:
            index = torch.as_tensor(missing)
            with torch.no_grad():
                computed = self._compute(*(a[index] for a in args))
                if not isinstance(computed, torch.Tensor) or computed.shape[:1] != (len(missing),):
                    store.row_wise[self.name] = False
                    return self._compute(*args)
                if self.name not in store.row_wise:  # first call: is one row alone what it is in a batch?
                    alone = self._compute(*(a[index[:1]] for a in args))
                    row_wise = alone.shape == computed[:1].shape and torch.allclose(alone, computed[:1], rtol=1e-4,
                                                                                     atol=1e-5)
                    store.row_wise[self.name] = bool(row_wise)
                    if not row_wise:
                        return self._compute(*args)
            store.misses += len(missing)
            for i, out in zip(missing, computed, strict=True):
                if store.n_bytes < store.max_bytes:
                    rows[keys[i]] = out.clone()
                    store.n_bytes += out.numel() * out.element_size() + len(keys[i])
            if len(missing) == len(keys):
                return computed
            fresh = dict(zip(missing, computed, strict=True))
            store.hits += len(keys) - len(missing)
            return torch.stack([fresh[i] if i in fresh else rows[key] for i, key in enumerate(keys)])
        store.hits += len(keys)
        return torch.stack([rows[key] for key in keys])


def cache_frozen_outputs(model: nn.Module, store: OutputStore) -> list[str]:
    """Give every largest submodule of ``model`` without a trainable weight a :class:`FrozenOutputs` forward, in place.

    Parameters
    ----------
    model : torch.nn.Module
        A backbone whose trainable weights are already chosen (e.g. after LoRA).
    store : OutputStore
        Shared by every copy of the backbone.

    Returns
    -------
    wrapped : list of str
        Names of the submodules whose outputs are remembered.
    """
    wrapped: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in list(module.named_children()):
            name = f"{prefix}{child_name}"
            params = list(child.parameters())
            if params and not any(p.requires_grad for p in params):
                child.forward = FrozenOutputs(child, name, store)  # type: ignore[method-assign]
                wrapped.append(name)
            elif any(p.requires_grad for p in params):
                visit(child, f"{name}.")

    visit(model, "")
    return wrapped

