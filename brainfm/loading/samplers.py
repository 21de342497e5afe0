"""Which windows an epoch visits, in which order, on which rank: the batch sampler.

An epoch is planned in four vectorised steps, identically on every rank from
``(seed, epoch)``:

1. **Selection.** Every window once; or, with ``dataset_weights``, ``epoch_size`` windows
   of which dataset *d* contributes ``round(epoch_size * w_d / sum(w))``, drawn without
   replacement (whole passes plus a random remainder when a dataset is smaller than its share).
2. **Order.** ``"chunk"``: the stored chunks holding the selected windows are shuffled,
   then windows are shuffled within consecutive groups of ``shuffle_chunks`` chunks (a
   shuffle buffer of many chunks), so a batch reads few chunks and a chunk is decoded about
   once. ``"uniform"``: one global permutation. ``"none"``: store order.
3. **Batches.** Consecutive windows in that order; with ``bucket_by_channels`` windows are
   cut per channel count (BrainOmni: a batch holds one channel count, no padding) and
   batches are ordered by the position of their last window.
4. **Shards.** The batch list is split into ``world_size`` contiguous, disjoint blocks,
   one per rank. When the batch count does not divide, ``drop_last`` drops the last
   batches, otherwise the first batches are repeated (as ``DistributedSampler`` pads), so
   every rank runs the same number of steps. Within a rank, batches are interleaved for
   ``num_workers`` DataLoader workers so that each worker receives a contiguous run of
   batches (the DataLoader hands batch *k* to worker *k* mod *n*) and reuses its decoded chunks.

``state_dict()`` holds ``epoch`` and ``position`` (batches already yielded this epoch),
and under ``plan`` every setting that decides which windows land in which batch
(:data:`PLAN_SETTINGS`). A sampler given that state by ``load_state_dict`` yields exactly
the remaining batches of that epoch, then continues with the next epochs as if never
interrupted; it refuses a mid-epoch state planned with other settings, whose remaining
batches would repeat some windows and skip others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np

from brainfm._check import check_option, ensure_int
from brainfm.errors import ConfigError
from brainfm.loading.windows import WindowIndex

__all__ = ["PLAN_SETTINGS", "SHUFFLES", "WindowBatchSampler", "epoch_order"]

SHUFFLES: tuple[str, ...] = ("chunk", "uniform", "none")
#: The settings that decide which windows land in which batch of an epoch on this rank;
#: ``state_dict()["plan"]`` records them and ``load_state_dict`` compares them.
PLAN_SETTINGS: tuple[str, ...] = (
    "batch_size", "shuffle", "shuffle_chunks", "seed", "drop_last", "bucket_by_channels", "dataset_weights",
    "epoch_size", "world_size", "rank", "num_workers", "n_windows",
)
#: What the states saved before ``plan`` existed recorded (checked when ``plan`` is absent).
_LEGACY_SETTINGS: tuple[str, ...] = ("seed", "n_windows", "batch_size", "world_size")


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), 0x6272])


def _dataset_codes(index: WindowIndex) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The datasets that have windows, sorted, and the windows of each, found without string work per window.

    Returns
    -------
    present : list of str
        Names of the datasets with at least one window, sorted.
    members : numpy.ndarray of int64, shape (n_windows,)
        Window indices grouped by dataset (in ``present`` order), ascending within a group.
    bounds : numpy.ndarray of int64, shape (len(present) + 1,)
        ``members[bounds[k]:bounds[k + 1]]`` are the windows of ``present[k]``.
    """
    # Names are compared once per recording; the windows only carry integer codes.
    names, recording_code = np.unique(np.array([str(layout.dataset) for layout in index.layouts], dtype=str),
                                      return_inverse=True)
    window_code = recording_code.reshape(-1)[index.recording] if len(index.layouts) else np.zeros(0, np.int64)
    counts = np.bincount(window_code, minlength=len(names))
    used = np.flatnonzero(counts)
    dense = np.zeros(len(names), dtype=np.int64)
    dense[used] = np.arange(len(used))
    members = np.argsort(dense[window_code], kind="stable").astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(counts[used])]).astype(np.int64)
    return names[used].tolist(), members, bounds


def _select(index: WindowIndex, rng: np.random.Generator, dataset_weights: Mapping[str, float] | None,
            epoch_size: int | None) -> np.ndarray:
    n_windows = len(index)
    if dataset_weights is None:
        return np.arange(n_windows, dtype=np.int64)
    present, grouped, bounds = _dataset_codes(index)
    missing = [d for d in present if d not in dataset_weights]
    if missing:
        raise ConfigError(
            f"dataset_weights has no weight for the datasets {missing}; give every dataset a weight "
            f"(0 leaves it out). Weights: {dict(dataset_weights)}."
        )
    weights = np.array([float(dataset_weights[d]) for d in present])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(f"dataset_weights must be non-negative with a positive sum, got {dict(dataset_weights)}.")
    total = n_windows if epoch_size is None else int(epoch_size)
    shares = np.round(total * weights / weights.sum()).astype(np.int64)
    parts = []
    for k, share in enumerate(shares.tolist()):
        members = grouped[bounds[k] : bounds[k + 1]]
        if share == 0:
            continue
        full, remainder = divmod(int(share), len(members))
        picks = [members] * full + [rng.choice(members, size=remainder, replace=False)]
        parts.append(np.concatenate(picks))
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def epoch_order(
    index: WindowIndex,
    *,
    seed: int,
    epoch: int,
    shuffle: Literal["chunk", "uniform", "none"] = "chunk",
    shuffle_chunks: int = 32,
    dataset_weights: Mapping[str, float] | None = None,
    epoch_size: int | None = None,
) -> np.ndarray:
    """The windows of one epoch in visiting order (the same on every rank).

    Parameters
    ----------
    index : WindowIndex
        The windows.
    seed, epoch : int
        Together they fix the order.
    shuffle : "chunk" | "uniform" | "none"
        Ordering (see the module docstring).
    shuffle_chunks : int
        Chunks per shuffle buffer for ``"chunk"``.
    dataset_weights : mapping of str to float | None
        Relative share of each dataset in an epoch; None takes every window once.
    epoch_size : int | None
        Windows per epoch with ``dataset_weights``; None: the number of windows.

    Returns
    -------
    order : numpy.ndarray of int64
        Window indices.
    """
    rng = _epoch_rng(seed, epoch)
    selected = _select(index, rng, dataset_weights, epoch_size)
    if shuffle == "none" or not len(selected):
        return selected
    if shuffle == "uniform":
        return selected[rng.permutation(len(selected))]
    check_option("shuffle", shuffle, SHUFFLES)
    chunk = index.chunk()[selected]
    unique_chunks, inverse = np.unique(chunk, return_inverse=True)
    chunk_rank = rng.permutation(len(unique_chunks))[inverse]  # position of each window's chunk
    buffer = chunk_rank // max(int(shuffle_chunks), 1)
    order = np.lexsort((rng.random(len(selected)), buffer))  # shuffle inside each buffer
    return selected[order]


class WindowBatchSampler:
    """Batches of window indices for one rank, resumable mid-epoch.

    Use it as ``batch_sampler`` of a :class:`torch.utils.data.DataLoader` over a
    :class:`~brainfm.loading.dataset.WindowDataset`. Under a Lightning ``Trainer`` with
    several devices set ``Trainer(use_distributed_sampler=False)``: this sampler shards by
    rank itself.

    Parameters
    ----------
    index : WindowIndex
        The windows.
    batch_size : int
        Windows per batch.
    shuffle : "chunk" | "uniform" | "none"
        Ordering (see the module docstring).
    shuffle_chunks : int
        Chunks per shuffle buffer for ``"chunk"``.
    seed : int
        Seed of every epoch's plan.
    drop_last : bool
        Drop incomplete batches (and, across ranks, batches that do not divide evenly)
        instead of keeping them (and repeating the first batches on the short ranks).
    bucket_by_channels : bool
        Make every batch hold windows of one channel count.
    dataset_weights : mapping of str to float | None
        Relative share of each dataset per epoch.
    epoch_size : int | None
        Windows per epoch with ``dataset_weights``.
    rank, world_size : int | None
        This process's rank and the number of ranks; None reads them from
        ``torch.distributed`` when it is initialised, else 0 and 1.
    num_workers : int
        DataLoader workers to interleave batches for (0 or 1: no interleaving).
    """

    def __init__(
        self,
        index: WindowIndex,
        batch_size: int,
        *,
        shuffle: Literal["chunk", "uniform", "none"] = "chunk",
        shuffle_chunks: int = 32,
        seed: int = 0,
        drop_last: bool = False,
        bucket_by_channels: bool = False,
        dataset_weights: Mapping[str, float] | None = None,
        epoch_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        self.index = index
        self.batch_size = ensure_int("batch_size", batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.shuffle = check_option("shuffle", shuffle, SHUFFLES)
        self.shuffle_chunks = ensure_int("shuffle_chunks", shuffle_chunks)
        self.seed = ensure_int("seed", seed)
        self._drop_last = bool(drop_last)  # not 'drop_last': Lightning must not rebuild this sampler
        self.bucket_by_channels = bool(bucket_by_channels)
        self.dataset_weights = dict(dataset_weights) if dataset_weights is not None else None
        self.epoch_size = epoch_size
        if rank is None or world_size is None:
            rank, world_size = _distributed_rank()
        self.rank, self.world_size = ensure_int("rank", rank), ensure_int("world_size", world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank={rank}, world_size={world_size}.")
        self.num_workers = max(ensure_int("num_workers", num_workers), 1)
        self.epoch = 0
        self.position = 0
        self._resume: int | None = None
        self._complete = False
        #: First batch of the pass the last ``iter()`` started (read by WindowDataLoader).
        self._pass_start = 0
        self._plan_cache: tuple[int, list[np.ndarray]] | None = None

    def __repr__(self) -> str:
        return (
            f"<WindowBatchSampler | rank {self.rank}/{self.world_size}, {len(self)} batches of {self.batch_size}, "
            f"shuffle={self.shuffle!r}, epoch {self.epoch}>"
        )

    # -- planning ----------------------------------------------------------------------------

    def _global_batches(self, epoch: int) -> list[np.ndarray]:
        order = epoch_order(
            self.index, seed=self.seed, epoch=epoch, shuffle=self.shuffle, shuffle_chunks=self.shuffle_chunks,
            dataset_weights=self.dataset_weights, epoch_size=self.epoch_size,
        )
        size = self.batch_size
        if not self.bucket_by_channels:
            n_full = len(order) // size
            batches = [order[i * size : (i + 1) * size] for i in range(n_full)]
            if len(order) % size and not self._drop_last:
                batches.append(order[n_full * size :])
            return batches
        channels = self.index.n_channels[order]
        by_bucket = np.argsort(channels, kind="stable")  # positions in `order`, grouped by channel count
        batches, ends = [], []
        for count in np.unique(channels):
            positions = by_bucket[channels[by_bucket] == count]
            for i in range(0, len(positions), size):
                part = positions[i : i + size]
                if len(part) < size and self._drop_last:
                    continue
                batches.append(order[part])
                ends.append(part[-1])
        return [batches[i] for i in np.argsort(ends, kind="stable")]

    def plan(self, epoch: int | None = None) -> list[np.ndarray]:
        """This rank's batches of an epoch, in the order they are yielded.

        Parameters
        ----------
        epoch : int | None
            The epoch; None: the current one.

        Returns
        -------
        batches : list of numpy.ndarray of int64
            Window indices per batch.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        batches = self._global_batches(epoch)
        n_ranks = self.world_size
        if n_ranks > 1 and batches:
            extra = len(batches) % n_ranks
            if extra and self._drop_last:
                batches = batches[: len(batches) - extra]
            elif extra:
                batches = batches + [batches[i % len(batches)] for i in range(n_ranks - extra)]
            per_rank = len(batches) // n_ranks
            batches = batches[self.rank * per_rank : (self.rank + 1) * per_rank]
        if self.num_workers > 1 and len(batches) > 1:
            streams = np.array_split(np.arange(len(batches)), self.num_workers)
            interleaved = [int(s[i]) for i in range(len(streams[0])) for s in streams if i < len(s)]
            batches = [batches[i] for i in interleaved]
        self._plan_cache = (epoch, batches)
        return batches

    # -- iteration and state -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.plan())

    def __iter__(self) -> Iterator[list[int]]:
        """Start a pass: decide its epoch and first batch now, then yield batches lazily.

        Not a generator function: a DataLoader calls ``iter()`` on its sampler when its
        iterator is made, but runs the generator only when it fetches indices (at once with
        workers, which prefetch; at the first batch without). Moving the epoch on and taking
        a pending resume position here makes both known, in ``epoch`` and ``_pass_start``,
        as soon as ``iter()`` returns, whatever the number of workers.
        """
        # An epoch whose last batch was yielded is complete even when the consumer stops
        # without exhausting the iterator (Lightning stops at len()): the next pass moves on.
        if self._resume is None and self._complete:
            self.epoch += 1
        self._complete = False
        batches = self.plan()
        start = self._resume if self._resume is not None else 0
        # The resume position is dropped once the pass runs, not here: a DataLoader with
        # workers calls iter() twice while making its iterator and runs only the second.
        self.position = start
        self._pass_start = start
        return self._batches(batches, start)

    def _batches(self, batches: list[np.ndarray], start: int) -> Iterator[list[int]]:
        self._resume = None
        for i in range(start, len(batches)):
            self.position = i + 1
            self._complete = self.position == len(batches)
            yield batches[i].tolist()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next iteration (a pending resume position is kept only for that epoch).

        Parameters
        ----------
        epoch : int
            The epoch number.
        """
        epoch = ensure_int("epoch", epoch)
        if epoch != self.epoch or self._complete:
            self._resume = None
            self.position = 0
        self.epoch = epoch
        self._complete = False

    def plan_settings(self) -> dict[str, Any]:
        """The settings that decide this rank's batches (:data:`PLAN_SETTINGS`), JSON-ready.

        Returns
        -------
        settings : dict
            ``num_workers`` as interleaved (0 and 1 both give 1), ``dataset_weights`` as
            floats sorted by dataset, ``n_windows`` the number of windows in the index.
        """
        weights = self.dataset_weights
        return {
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "shuffle_chunks": self.shuffle_chunks,
            "seed": self.seed,
            "drop_last": self._drop_last,
            "bucket_by_channels": self.bucket_by_channels,
            "dataset_weights": {str(k): float(weights[k]) for k in sorted(weights)} if weights is not None else None,
            "epoch_size": None if self.epoch_size is None else int(self.epoch_size),
            "world_size": self.world_size,
            "rank": self.rank,
            "num_workers": self.num_workers,
            "n_windows": len(self.index),
        }

    def state_dict(self) -> dict[str, Any]:
        """``epoch``, ``position`` (batches yielded this epoch) and the settings they refer to.

        A complete epoch is saved as position 0 of the next one.

        Returns
        -------
        state : dict
            JSON-ready: ``epoch``, ``position``, ``plan`` (:meth:`plan_settings`), and
            ``seed``, ``rank``, ``world_size``, ``n_windows``, ``batch_size`` as before ``plan``.
        """
        epoch, position = (self.epoch + 1, 0) if self._complete else (self.epoch, self.position)
        return {
            "epoch": epoch,
            "position": position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "n_windows": len(self.index),
            "batch_size": self.batch_size,
            "plan": self.plan_settings(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next iteration yields the rest of that epoch.

        Parameters
        ----------
        state : mapping
            As returned by :meth:`state_dict`.

        Raises
        ------
        ValueError
            When the state lies inside an epoch (``position`` > 0) and was planned with other
            settings (``state["plan"]``; for a state saved without it, ``seed``, ``n_windows``,
            ``batch_size`` and ``world_size``). A state at an epoch boundary (``position`` 0)
            starts that epoch with this sampler's settings.
        """
        epoch, position = int(state["epoch"]), int(state["position"])
        if position > 0:
            now = self.plan_settings()
            saved = state["plan"] if "plan" in state else {k: state[k] for k in _LEGACY_SETTINGS if k in state}
            differ = [k for k in PLAN_SETTINGS if k in saved and saved[k] != now[k]]
            if differ:
                changes = "; ".join(f"{k}: saved {saved[k]!r}, now {now[k]!r}" for k in differ)
                raise ValueError(
                    f"Cannot resume epoch {epoch} at batch {position}: the saved sampler state was planned with "
                    f"other settings ({changes}), so the batches left would not be the rest of that epoch (some "
                    "windows would repeat, others be skipped). Resume with the same settings as the saved run, "
                    f"or start epoch {epoch} afresh with the new ones: call set_epoch({epoch}) instead of "
                    "load_state_dict, or load the state with position 0."
                )
        self.epoch = epoch
        self.position = position
        self._resume = self.position
        self._complete = False


def _distributed_rank() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
