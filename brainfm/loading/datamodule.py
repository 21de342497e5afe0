"""``WindowDataModule``: a Lightning data module that feeds :class:`Batch` objects from a store.

Typical use::

    data = WindowDataModule("store/", window_s=2.0, batch_size=256, num_workers=4)
    data.setup("fit")
    for batch in data.train_dataloader():
        batch = batch.to("cuda", non_blocking=True)

With LightningCLI, link the data facts into the model once (``apply_on="instantiate"``):
``data.n_channels``, ``data.n_times``, ``data.sfreq``, ``data.vocabulary_size``,
``data.n_regions``, ``data.n_subjects``, ``data.n_recordings``, ``data.n_classes``. They are
read from the store on first access, before ``setup``.

Multi-device training: the sampler shards windows by rank itself, so run the Trainer with
``use_distributed_sampler=False``. The training loader is resumable: Lightning saves its
``state_dict`` in checkpoints and a resumed run continues mid-epoch.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from brainfm._check import check_option, check_range, ensure_int
from brainfm._logging import logger
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.loading.codes import CodesLayout, CodesReader, check_codes
from brainfm.loading.dataset import WindowDataset, init_loader_worker, whole_batch_collate
from brainfm.loading.labels import RecordingLabels
from brainfm.loading.normalization import NORMALIZATIONS
from brainfm.loading.samplers import SHUFFLES, WindowBatchSampler
from brainfm.loading.shared_slots import SharedSlots
from brainfm.loading.splits import ON_UNKNOWN_SUBJECT, SPLIT_UNITS, split_index
from brainfm.loading.vocabulary import (
    load_vocabularies,
    save_vocabularies,
    vocabularies_from_dict,
    vocabularies_to_dict,
)
from brainfm.loading.windows import WindowIndex, build_window_index

__all__ = ["WindowDataLoader", "WindowDataModule"]


class WindowDataLoader(torch.utils.data.DataLoader):
    """A DataLoader over a :class:`WindowDataset` driven by a :class:`WindowBatchSampler`, resumable.

    ``state_dict()`` records the position of the last batch the consumer has used: by
    default the batches this loader has *delivered* in the current epoch (workers prefetch
    further; that does not count) minus ``lookahead``; under a Lightning Trainer,
    :class:`WindowDataModule` passes ``progress``, the Trainer's own count of processed
    batches (its loop fetches ahead).

    Parameters
    ----------
    dataset : WindowDataset
        The windows.
    batch_sampler : WindowBatchSampler
        The sampler (its ``num_workers`` should equal this loader's for chunk reuse).
    num_workers : int
        Worker processes (0 reads in the main process).
    pin_memory : bool
        Return batches in pinned memory.
    persistent_workers : bool
        Keep workers (and their chunk caches) alive across epochs.
    prefetch_factor : int | None
        Batches each worker prepares ahead (None: PyTorch's default with workers).
    lookahead : int
        Batches fetched by the consumer but not yet used when it saves a checkpoint.
    progress : callable | None
        Returns how many batches of the current epoch the consumer has finished; when
        given it replaces the delivered count (a Lightning Trainer knows this exactly).
    multiprocessing_context : str | None
        ``"fork"``, ``"spawn"`` or ``"forkserver"``; None: the platform default.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        batch_sampler: WindowBatchSampler,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        lookahead: int = 0,
        progress: Callable[[], int] | None = None,
        multiprocessing_context: str | None = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=whole_batch_collate,
            pin_memory=pin_memory,
            worker_init_fn=init_loader_worker if num_workers > 0 else None,
            persistent_workers=persistent_workers and num_workers > 0,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        )
        self.lookahead = int(lookahead)
        self.progress = progress
        self._progress: dict[str, Any] | None = None
        self._shared_slots: SharedSlots | None = None

    def _start_method(self) -> str:
        context = self.multiprocessing_context
        if context is not None:
            return str(context.get_start_method())
        # the default without fixing it (get_start_method() would)
        return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]

    def _prepare_shared_slots(self) -> None:
        """Give forked workers reusable shared-memory slots for batch signals.

        Persistent workers keep the slots they were forked with; other workers are forked
        anew every epoch and get new slots. Spawned workers cannot inherit them and use a
        fresh shared-memory segment per batch.
        """
        if self.num_workers == 0 or not isinstance(self.dataset, WindowDataset) or self._start_method() != "fork":
            return
        if self._shared_slots is not None and self.persistent_workers and self._iterator is not None:
            return
        index = self.dataset.index
        sampler: WindowBatchSampler = self.batch_sampler  # type: ignore[assignment]
        slot_bytes = sampler.batch_size * max(index.max_channels, 1) * index.window_size_samples * 4
        # in flight per worker (prefetch) + held by the consumer (the current batch and one ahead)
        per_worker = (self.prefetch_factor or 2) + 2
        self._shared_slots = SharedSlots(self.num_workers, per_worker, slot_bytes)
        self.dataset._shared_slots = self._shared_slots

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        sampler: WindowBatchSampler = self.batch_sampler  # type: ignore[assignment]
        self._prepare_shared_slots()
        # Calls iter() on the sampler, which fixes the pass's epoch and first batch at once
        # (whether or not workers have started consuming it).
        iterator = super().__iter__()
        progress = {"epoch": sampler.epoch, "start": sampler._pass_start, "delivered": 0,
                    "n_batches": len(sampler.plan())}
        self._progress = progress
        slots = self._shared_slots
        for batch in iterator:
            if slots is not None:
                slots.release()  # slots of batches the consumer has dropped go back to the workers
            progress["delivered"] += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The sampler state at the last batch the consumer has used.

        Returns
        -------
        state : dict
            See :meth:`WindowBatchSampler.state_dict`.
        """
        sampler: WindowBatchSampler = self.batch_sampler  # type: ignore[assignment]
        state = sampler.state_dict()
        progress = self._progress
        if progress is None:
            return state
        if self.progress is not None:
            position = int(self.progress())  # batches of this epoch the consumer has finished
        else:
            position = progress["start"] + max(progress["delivered"] - self.lookahead, 0)
        if position >= progress["n_batches"]:
            state.update(epoch=progress["epoch"] + 1, position=0)
        else:
            state.update(epoch=progress["epoch"], position=position)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (the next iteration yields the rest of that epoch).

        Parameters
        ----------
        state : mapping
            As saved.
        """
        self.batch_sampler.load_state_dict(state)  # type: ignore[union-attr]
        self._progress = None


class WindowDataModule(L.LightningDataModule):
    """Windows of a store as Lightning train/val/test loaders of :class:`~brainfm.loading.batch.Batch`.

    Parameters
    ----------
    store : str | pathlib.Path
        The store folder.
    window_s : float | None
        Fixed window length in seconds; None with ``tmin``/``tmax`` for event-locked windows.
    stride_s : float | None
        Seconds between fixed window starts; None: ``window_s`` (no overlap).
    batch_size : int
        Windows per batch.
    num_workers : int
        DataLoader worker processes (0: read in the main process).
    normalization : "zscore" | "robust" | "sensortype" | "window" | "none"
        Load-time normalisation from stored statistics (:mod:`brainfm.loading.normalization`).
    channel_types : list of str | None
        Channel types to load; None: EEG, MEG and iEEG channels.
    channel_batching : "pad" | "bucket"
        ``"pad"``: batches mix recordings, channels are padded to the widest recording in the
        batch and masked. ``"bucket"``: every batch holds one channel count (BrainOmni).
    shuffle : "chunk" | "uniform" | "none"
        Training order (:mod:`brainfm.loading.samplers`); validation and test are never shuffled.
    shuffle_chunks : int
        Chunks per shuffle buffer for ``"chunk"``.
    seed : int
        Seed of the split and of every epoch's order.
    last_window : "drop" | "shift"
        Policy for the samples after the last full fixed window.
    tmin, tmax : float | None
        Event-locked windows ``[onset + tmin, onset + tmax)`` in seconds.
    label_map : dict of str to int | list of str | None
        Event description -> label for event-locked windows.
    recording_labels : RecordingLabels | None
        One label per recording (fixed windows).
    datasets : list of str | None
        Use only these datasets of the store.
    dataset_weights : dict of str to float | None
        Relative share of each dataset in a training epoch (weighted mixing).
    epoch_size : int | None
        Training windows per epoch with ``dataset_weights``; None: all training windows.
    split_unit : "subject" | "recording" | "window"
        What stays together in the train/val/test split.
    on_unknown_subject : "raise" | "warn" | "ignore"
        Splitting by subject when some recordings have no known subject (stored from a plain
        folder without ``sub-`` names or ``--pattern``): refuse, naming them (the default), or
        warn, or go on; then each such recording counts as its own subject
        (:func:`~brainfm.loading.splits.split_index`).
    val_fraction, test_fraction : float
        Fractions of the units held out.
    drop_last : bool
        Drop incomplete training batches (validation and test keep them).
    pin_memory : bool
        Deliver batches in pinned memory.
    persistent_workers : bool
        Keep workers and their chunk caches alive across epochs.
    prefetch_factor : int | None
        Batches each worker prepares ahead.
    cache_mib : float
        Decoded-chunk cache per process in MiB.
    multiprocessing_context : "fork" | "forkserver" | "spawn" | None
        How worker processes start; None: the platform's default (``fork`` on Linux up to
        Python 3.13, ``forkserver`` from 3.14, ``spawn`` on macOS and Windows). Every method
        delivers the same batches; under ``fork`` the workers write batch signals into
        reused shared-memory slots, under the others into a fresh shared segment per batch.
    vocabulary : str | pathlib.Path | None
        JSON file of the channel and region vocabularies: read (and extended with new names,
        unless ``freeze_vocabulary``) when it exists, written when it does not or when it
        grew. None keeps the vocabularies in memory. Either way they are also saved in
        Lightning checkpoints through :meth:`state_dict`; a loaded checkpoint's
        vocabularies take precedence over the file.
    sensortype_eps : dict of str to float | None
        ``eps`` by channel type for ``normalization="sensortype"``.
    freeze_vocabulary : bool
        Use the saved vocabularies (from ``vocabulary``, or a checkpoint through
        :meth:`load_state_dict`) as they are: channel and region names they lack get
        ``<unk>`` (1) instead of new ids, so ``vocabulary_size`` and ``n_regions`` stay
        those of the pretrained model; an existing file is never rewritten. A region
        vocabulary missing from an older, channel-only file or checkpoint is built from the
        store (not frozen).
    codes : str | None
        Name of cached tokenizer codes (``brainfm tokenize CKPT STORE --name NAME``) to deliver
        as ``Batch.codes``, cut to the same windows as the signal (:mod:`brainfm.loading.codes`).
        Every recording must have them, from one tokenizer, read with this ``normalization``,
        and every window must start on their alignment; otherwise ``setup`` refuses, naming
        the recordings or windows. None: no codes.
    """

    def __init__(
        self,
        store: str | Path,
        window_s: float | None = 2.0,
        stride_s: float | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        *,
        normalization: Literal["zscore", "robust", "sensortype", "window", "none"] = "zscore",
        channel_types: list[str] | None = None,
        channel_batching: Literal["pad", "bucket"] = "pad",
        shuffle: Literal["chunk", "uniform", "none"] = "chunk",
        shuffle_chunks: int = 32,
        seed: int = 0,
        last_window: Literal["drop", "shift"] = "drop",
        tmin: float | None = None,
        tmax: float | None = None,
        label_map: dict[str, int] | list[str] | None = None,
        recording_labels: RecordingLabels | None = None,
        datasets: list[str] | None = None,
        dataset_weights: dict[str, float] | None = None,
        epoch_size: int | None = None,
        split_unit: Literal["subject", "recording", "window"] = "subject",
        on_unknown_subject: Literal["raise", "warn", "ignore"] = "raise",
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        drop_last: bool = False,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        cache_mib: float = 128.0,
        multiprocessing_context: Literal["fork", "forkserver", "spawn"] | None = None,
        vocabulary: str | Path | None = None,
        sensortype_eps: dict[str, float] | None = None,
        freeze_vocabulary: bool = False,
        codes: str | None = None,
    ) -> None:
        super().__init__()
        self.codes = codes
        self._codes_layout: CodesLayout | None = None
        self.store = Path(store)
        self.window_s, self.stride_s = window_s, stride_s
        self.batch_size = ensure_int("batch_size", batch_size)
        self.num_workers = ensure_int("num_workers", num_workers)
        if self.batch_size < 1 or self.num_workers < 0:
            raise ConfigError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}.")
        self.normalization = check_option("normalization", normalization, NORMALIZATIONS)
        self.channel_types = channel_types
        self.channel_batching = check_option("channel_batching", channel_batching, ("pad", "bucket"))
        self.shuffle = check_option("shuffle", shuffle, SHUFFLES)
        self.shuffle_chunks = ensure_int("shuffle_chunks", shuffle_chunks)
        self.seed = ensure_int("seed", seed)
        self.last_window = last_window
        self.tmin, self.tmax, self.label_map = tmin, tmax, label_map
        self.recording_labels = recording_labels
        self.datasets, self.dataset_weights, self.epoch_size = datasets, dataset_weights, epoch_size
        self.split_unit = check_option("split_unit", split_unit, SPLIT_UNITS)
        self.on_unknown_subject = check_option("on_unknown_subject", on_unknown_subject, ON_UNKNOWN_SUBJECT)
        check_range("val_fraction", val_fraction, 0, 1)
        check_range("test_fraction", test_fraction, 0, 1)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must leave training data, got {val_fraction} + {test_fraction}."
            )
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.drop_last, self.pin_memory = bool(drop_last), bool(pin_memory)
        self.persistent_workers, self.prefetch_factor = bool(persistent_workers), prefetch_factor
        self.cache_mib = float(cache_mib)
        if multiprocessing_context is not None:
            check_option("multiprocessing_context", multiprocessing_context, tuple(multiprocessing.get_all_start_methods()))
        self.multiprocessing_context = multiprocessing_context
        self.vocabulary = Path(vocabulary) if vocabulary is not None else None
        self.sensortype_eps = sensortype_eps
        self.freeze_vocabulary = bool(freeze_vocabulary)
        self._index: WindowIndex | None = None
        self._splits: dict[str, WindowIndex] = {}
        self._loaded_vocabularies: dict[str, Any] | None = None  # from load_state_dict

    # -- the index and the facts it gives ------------------------------------------------------

    @property
    def index(self) -> WindowIndex:
        """Every window of the selected recordings (built from the store on first access)."""
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def _build_index(self) -> WindowIndex:
        channel = region = None
        path = self.vocabulary
        if self._loaded_vocabularies is not None:
            channel, region = vocabularies_from_dict(self._loaded_vocabularies)
        elif path is not None and path.is_file():
            channel, region = load_vocabularies(path)
        if self.freeze_vocabulary:
            if channel is None:
                where = f"{path} does not exist" if path is not None else "no vocabulary file is given"
                raise ConfigError(
                    f"freeze_vocabulary=True needs saved vocabularies, but {where} and no checkpoint state was "
                    "loaded. Give vocabulary= the file saved with the pretrained model, load its checkpoint "
                    "(load_state_dict) before the data is indexed, or set freeze_vocabulary=False."
                )
            channel.freeze()
            if region is not None:
                region.freeze()
        sizes = (len(channel) if channel is not None else None, len(region) if region is not None else None)
        index = build_window_index(
            self.store,
            self.window_s,
            self.stride_s,
            last_window=self.last_window,
            tmin=self.tmin,
            tmax=self.tmax,
            label_map=self.label_map,
            recording_labels=self.recording_labels,
            channel_types=self.channel_types,
            datasets=self.datasets,
            channel_vocabulary=channel,
            region_vocabulary=region,
        )
        grown = (len(index.channel_vocabulary), len(index.region_vocabulary)) != sizes
        # A frozen run leaves an existing file (the pretrained model's) as it is.
        if path is not None and (not path.is_file() or (grown and not self.freeze_vocabulary)):
            # Written atomically: every DDP rank builds the same vocabularies and may write them.
            save_vocabularies(path, index.channel_vocabulary, index.region_vocabulary)
            logger.info("vocabularies (%d channel, %d region tokens) written to %s", len(index.channel_vocabulary),
                        len(index.region_vocabulary), path)
        return index

    @property
    def n_channels(self) -> int:
        """Widest recording (channels per window before padding)."""
        return self.index.max_channels

    @property
    def n_times(self) -> int:
        """Samples per window."""
        return self.index.window_size_samples

    @property
    def sfreq(self) -> float:
        """Sampling rate in Hz."""
        return self.index.sfreq

    @property
    def vocabulary_size(self) -> int:
        """Size of the channel vocabulary (``channel_ids`` < this)."""
        return len(self.index.channel_vocabulary)

    @property
    def n_regions(self) -> int:
        """Size of the region vocabulary (``region_ids`` < this)."""
        return len(self.index.region_vocabulary)

    @property
    def n_subjects(self) -> int:
        """Number of subjects (``subject_ids`` < this)."""
        return len(self.index.subjects)

    @property
    def n_recordings(self) -> int:
        """Number of recordings (``recording_ids`` < this)."""
        return len(self.index.layouts)

    @property
    def n_classes(self) -> int:
        """Number of distinct labels (0 without labels)."""
        return len(set(self.index.label_map.values()))

    @property
    def recording_names(self) -> list[str]:
        """Store ids in ``recording_ids`` order."""
        return [layout.recording_id for layout in self.index.layouts]

    @property
    def subjects(self) -> list[str]:
        """Subject keys (``"<dataset>/<subject>"``) in ``subject_ids`` order."""
        return list(self.index.subjects)

    # -- Lightning hooks ---------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Index the store and split it into ``train``, ``val`` and ``test`` windows.

        Parameters
        ----------
        stage : str | None
            Lightning's stage (all splits are made whatever the stage).
        """
        if self._splits:
            return
        if self.codes is not None:
            self._codes_layout = check_codes(self.index, self.store, self.codes, self.normalization)
        fractions = {"train": 1.0 - self.val_fraction - self.test_fraction, "val": self.val_fraction,
                     "test": self.test_fraction}
        self._splits = split_index(self.index, fractions, unit=self.split_unit, seed=self.seed,
                                   on_unknown_subject=self.on_unknown_subject)
        logger.info(
            "split by %s: %s", self.split_unit, {name: len(part) for name, part in self._splits.items()}
        )

    @property
    def codes_layout(self) -> CodesLayout | None:
        """What the cached codes are (tokenizer, setting), after :meth:`setup`; None without ``codes``."""
        if self.codes is not None and not self._splits:
            self.setup()
        return self._codes_layout

    def check_codes_tokenizer(self, spec: Mapping[str, Any]) -> None:
        """Refuse cached codes made by another tokenizer than ``spec``, naming the recordings and the difference.

        Parameters
        ----------
        spec : mapping
            ``class_path``, ``init_args`` and ``digest`` (:func:`brainfm.checkpoint.state_digest` of
            the tokenizer's weights) of the tokenizer the model uses.
        """
        layout = self.codes_layout
        if layout is None:
            return
        stored = dict(layout.attrs.get("tokenizer") or {})
        differ = [k for k in ("class_path", "init_args", "digest") if k in spec and stored.get(k) != spec.get(k)]
        if differ:
            what = "; ".join(f"{k}: codes {stored.get(k)!r}, model {spec.get(k)!r}" for k in differ)
            names = layout.recordings
            raise ConfigError(
                f"The codes {layout.name!r} of {len(names)} recordings ({', '.join(names[:8])}"
                f"{', ...' if len(names) > 8 else ''}) were made by another tokenizer than the model's ({what}). "
                f"Tokenize the store with the model's tokenizer checkpoint under another --name, or drop data.codes."
            )

    def split(self, name: Literal["train", "val", "test"]) -> WindowIndex:
        """The windows of one split (after :meth:`setup`)."""
        if not self._splits:
            self.setup()
        return self._splits[name]

    def make_dataloader(self, split: Literal["train", "val", "test"], *, shuffle: bool | None = None) -> WindowDataLoader:
        """Build the loader of one split.

        Parameters
        ----------
        split : "train" | "val" | "test"
            Which windows.
        shuffle : bool | None
            Shuffle (with :attr:`shuffle`); None: only for ``train``.

        Returns
        -------
        loader : WindowDataLoader
            Yields :class:`~brainfm.loading.batch.Batch` objects.
        """
        index = self.split(split)
        training = split == "train"
        trainer = self.trainer
        # None: the sampler reads them from torch.distributed (0 and 1 when not initialised).
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (None, None)
        sampler = WindowBatchSampler(
            index,
            self.batch_size,
            shuffle=self.shuffle if (training if shuffle is None else shuffle) else "none",
            shuffle_chunks=self.shuffle_chunks,
            seed=self.seed,
            drop_last=self.drop_last and training,
            bucket_by_channels=self.channel_batching == "bucket",
            dataset_weights=self.dataset_weights if training else None,
            epoch_size=self.epoch_size if training else None,
            rank=rank,
            world_size=world_size,
            num_workers=self.num_workers,
        )
        codes = None if self._codes_layout is None else CodesReader(self.store, self._codes_layout)
        dataset = WindowDataset(
            index, self.store, self.normalization, sensortype_eps=self.sensortype_eps, cache_mib=self.cache_mib,
            codes=codes,
        )
        return WindowDataLoader(
            dataset,
            sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            prefetch_factor=self.prefetch_factor,
            multiprocessing_context=self.multiprocessing_context,
            progress=self._processed_batches if (trainer is not None and training) else None,
        )

    def _processed_batches(self) -> int:
        """Training batches of the current epoch the Trainer has processed (for resuming)."""
        return int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)  # type: ignore[union-attr]

    def train_dataloader(self) -> WindowDataLoader:
        """Shuffled training batches, sharded by rank, resumable."""
        return self.make_dataloader("train")

    def val_dataloader(self) -> WindowDataLoader:
        """Validation batches in store order, sharded by rank."""
        return self.make_dataloader("val")

    def test_dataloader(self) -> WindowDataLoader:
        """Test batches in store order, sharded by rank."""
        return self.make_dataloader("test")

    def state_dict(self) -> dict[str, Any]:
        """The channel and region vocabularies, so that a checkpoint restores the same ids.

        Returns
        -------
        state : dict
            :func:`~brainfm.loading.vocabulary.vocabularies_to_dict` output; empty before
            the store is indexed.
        """
        if self._index is None:
            return {}
        return vocabularies_to_dict(self._index.channel_vocabulary, self._index.region_vocabulary)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Use the vocabularies saved in a checkpoint (extended with names they lack unless ``freeze_vocabulary``).

        Parameters
        ----------
        state_dict : dict
            As returned by :meth:`state_dict` (a channel vocabulary alone, from older
            checkpoints, is accepted: the region vocabulary is then built from the store).
        """
        if "channel_vocabulary" in state_dict:
            vocabularies_from_dict(state_dict)  # fail here, not at the first access, on a broken state
            self._loaded_vocabularies = dict(state_dict)
            self._index = None
            self._splits = {}
