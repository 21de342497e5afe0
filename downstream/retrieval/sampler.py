"""Round-robin single-modality batches for stage-2 training (spec §5.3).

Every batch holds items of one modality only; modalities take turns in a fixed order. A
modality that has no full batch left drops out of the cycle and the others go on, so every
item of every modality is seen once per epoch (incomplete batches are dropped by default, as
in the reference).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from torch.utils.data import Sampler

from brainfm._check import ensure_int

__all__ = ["RoundRobinModalitySampler"]


class RoundRobinModalitySampler(Sampler[list[int]]):
    """Batch sampler over datasets concatenated in the order of ``sizes``.

    Parameters
    ----------
    sizes : mapping of str to int
        Items per modality, in the order of a ``torch.utils.data.ConcatDataset`` of the
        modalities' datasets; batch indices are global indices into that concatenation.
    batch_size : int
        Items per batch.
    shuffle : bool
        Shuffle items within each modality every epoch.
    drop_last : bool
        Drop each modality's last incomplete batch.
    seed : int
        Seed of the shuffling; the epoch (``set_epoch``) is mixed in.

    Attributes
    ----------
    batch_modalities : list of str
        After an iteration, the modality of each batch in order.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        if not sizes:
            raise ValueError("sizes is empty; give the number of items of each modality.")
        self.sizes = {name: ensure_int(f"sizes[{name!r}]", n) for name, n in sizes.items()}
        self.batch_size = ensure_int("batch_size", batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        offsets = np.cumsum([0, *self.sizes.values()])
        self.offsets = dict(zip(self.sizes, offsets[:-1].tolist(), strict=True))
        self.batch_modalities: list[str] = []

    def set_epoch(self, epoch: int) -> None:
        """Use a different shuffle for each epoch (as DistributedSampler does)."""
        self.epoch = ensure_int("epoch", epoch)

    def _batches(self, name: str, rng: np.random.Generator) -> list[list[int]]:
        n = self.sizes[name]
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        order = order + self.offsets[name]
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[i : i + self.batch_size].tolist() for i in range(0, stop, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        queues = {name: self._batches(name, rng) for name in self.sizes}
        self.batch_modalities = []
        while any(queues.values()):
            for name, queue in queues.items():
                if queue:
                    self.batch_modalities.append(name)
                    yield queue.pop(0)

    def __len__(self) -> int:
        if self.drop_last:
            return sum(n // self.batch_size for n in self.sizes.values())
        return sum(-(-n // self.batch_size) for n in self.sizes.values())
