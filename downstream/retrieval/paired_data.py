"""Trials from a store paired with concept embeddings (issue 12, item 1; spec §3.5).

A trial is an event-locked window ``[onset + tmin, onset + tmax)`` of a store recording. Its
concept is read from the event description, either whole or through a regular expression
with one group (``r"concept/(\\w+)"``). Concept embeddings are supplied by the user, keyed by
concept id:

- ``.npz``: one 1-D array per concept id (the keys);
- ``.npy``: a 2-D array whose row ``i`` is concept id ``"i"``;
- ``.h5`` / ``.hdf5``: datasets ``features`` (n, d) and ``concept_ids`` (n,), or one 1-D
  dataset per concept id at the root.

Events whose concept has no embedding are skipped with a warning that counts them.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from brainfm._logging import warn
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.loading.dataset import WindowDataset
from brainfm.loading.windows import build_window_index
from brainfm.store import open_store

__all__ = ["ConceptEmbeddings", "PairedTrials", "load_concept_embeddings", "load_paired_trials"]


@dataclasses.dataclass
class ConceptEmbeddings:
    """Concept ids and their embeddings, row ``i`` for ``ids[i]``."""

    ids: list[str]
    """Concept ids."""
    features: np.ndarray
    """(n_concepts, d) float32."""

    def __post_init__(self) -> None:
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("Concept ids must be unique; the embeddings file repeats some.")
        if self.features.ndim != 2 or self.features.shape[0] != len(self.ids):
            raise ValueError(f"features must be (n_concepts={len(self.ids)}, d), got {self.features.shape}.")


def load_concept_embeddings(path: str | Path) -> ConceptEmbeddings:
    """Read concept embeddings keyed by concept id from NPZ, NPY or HDF5.

    Parameters
    ----------
    path : str | pathlib.Path
        The file (see the module docstring for the layouts).

    Returns
    -------
    embeddings : ConceptEmbeddings
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Concept embeddings file not found: {path}.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        features = np.load(path, allow_pickle=False)
        if features.ndim != 2:
            raise ConfigError(f"{path}: an .npy embeddings file must be 2-D (n_concepts, d), got {features.shape}.")
        return ConceptEmbeddings([str(i) for i in range(len(features))], features.astype(np.float32))
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            ids = sorted(archive.files)
            return ConceptEmbeddings(ids, _stack(path, [archive[i] for i in ids]))
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as file:
            if "features" in file and "concept_ids" in file:
                ids = [v.decode() if isinstance(v, bytes) else str(v) for v in file["concept_ids"][()]]
                return ConceptEmbeddings(ids, np.asarray(file["features"][()], dtype=np.float32))
            ids = sorted(name for name in file if isinstance(file[name], h5py.Dataset))
            return ConceptEmbeddings(ids, _stack(path, [file[i][()] for i in ids]))
    raise ConfigError(f"{path}: unsupported embeddings file type {suffix!r}; use .npz, .npy, .h5 or .hdf5.")


def _stack(path: Path, rows: list[np.ndarray]) -> np.ndarray:
    if not rows:
        raise ConfigError(f"{path} holds no embeddings.")
    shapes = {np.shape(r) for r in rows}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ConfigError(f"{path}: every concept needs one 1-D embedding of the same length, got shapes {sorted(shapes)}.")
    return np.stack(rows).astype(np.float32)


@dataclasses.dataclass
class PairedTrials:
    """Event-locked trials and the concept each one shows."""

    signals: np.ndarray
    """(n_trials, n_chans, n_times) float32, normalised as asked."""
    concepts: np.ndarray
    """(n_trials,) int64 rows of ``embeddings``."""
    embeddings: ConceptEmbeddings
    """The concept embeddings."""
    subjects: np.ndarray
    """(n_trials,) subject key (``"<dataset>/<subject>"``) of each trial."""
    recordings: np.ndarray | None = None
    """(n_trials,) recording of each trial (store trials)."""
    batch: Batch | None = None
    """Store trials as a :class:`~brainfm.loading.batch.Batch` (sensor geometry, masks), the input
    of a pretrained brainfm backbone; row ``i`` is ``signals[i]``."""
    sfreq: float | None = None
    """Sampling rate of the trials (Hz), when known."""
    is_test: np.ndarray | None = None
    """(n_trials,) bool: the dataset's own test split (THINGS layouts); None: brainfm draws one."""

    def __len__(self) -> int:
        return int(self.signals.shape[0])


def load_paired_trials(
    store: str | Path,
    embeddings: ConceptEmbeddings | str | Path,
    tmin: float,
    tmax: float,
    *,
    pattern: str | None = None,
    normalization: str = "zscore",
    channel_types: list[str] | None = None,
) -> PairedTrials:
    """Cut event-locked trials from a store and pair them with concept embeddings.

    Parameters
    ----------
    store : str | pathlib.Path
        The store folder.
    embeddings : ConceptEmbeddings | str | pathlib.Path
        The embeddings, or their file (:func:`load_concept_embeddings`).
    tmin, tmax : float
        Trial window ``[onset + tmin, onset + tmax)`` in seconds.
    pattern : str | None
        Regular expression with one group that extracts the concept id from an event
        description; None uses the whole description. Descriptions that do not match are
        not trials.
    normalization : str
        Load-time normalisation (see ``brainfm.loading``).
    channel_types : list of str | None
        Channel types to load; None keeps the brain channels.

    Returns
    -------
    trials : PairedTrials
    """
    if not isinstance(embeddings, ConceptEmbeddings):
        embeddings = load_concept_embeddings(embeddings)
    regex = re.compile(pattern) if pattern is not None else None
    if regex is not None and regex.groups != 1:
        raise ConfigError(f"pattern must have exactly one group (the concept id), got {regex.groups}: {pattern!r}.")
    row_of = {concept: row for row, concept in enumerate(embeddings.ids)}
    opened = open_store(store)
    descriptions = sorted({str(d) for rid in opened for d in opened[rid].events["description"]})
    label_map: dict[str, int] = {}
    missing: set[str] = set()
    for description in descriptions:
        if description.upper().startswith("BAD"):
            continue
        match = regex.fullmatch(description) if regex is not None else None
        if regex is not None and match is None:
            continue
        concept = match.group(1) if match is not None else description
        if concept in row_of:
            label_map[description] = row_of[concept]
        else:
            missing.add(concept)
    if missing:
        warn(
            f"{len(missing)} concept(s) in the events of {store} have no embedding and are skipped "
            f"(first: {sorted(missing)[:5]})."
        )
    if not label_map:
        raise ConfigError(
            f"No event of {store} names a concept of the embeddings ({len(embeddings.ids)} ids, e.g. "
            f"{embeddings.ids[:3]}); check pattern={pattern!r} against descriptions like {descriptions[:3]}."
        )
    index = build_window_index(opened, tmin=tmin, tmax=tmax, label_map=label_map, channel_types=channel_types)
    dataset = WindowDataset(index, store, normalization=normalization)
    batch = dataset.__getitems__(np.arange(len(index)))
    # the Batch is sorted by recording and start, like the index; its labels follow the rows
    subjects = np.array(index.subjects, dtype=object)[batch.subject_ids.numpy()]
    recordings = np.array([layout.recording_id for layout in index.layouts], dtype=object)[batch.recording_ids.numpy()]
    return PairedTrials(
        batch.signal.numpy(), batch.labels.numpy().astype(np.int64), embeddings, subjects,
        recordings=recordings, batch=batch, sfreq=float(index.sfreq),
    )
