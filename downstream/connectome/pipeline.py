"""The whole method on a store: nodes -> affinities -> NTF (rank sweep) -> communities -> HDF5.

:class:`ConnectomeConfig` holds every option (``configs/downstream/connectome.yaml`` is its
YAML form); :func:`run_connectome` runs it and :func:`write_connectome` writes the result to
HDF5, readable with plain h5py (layout in ``docs/connectome.md``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from brainfm._logging import logger
from brainfm._version import __version__
from brainfm.downstream.connectome.affinity import affinity_tensor, pair_index
from brainfm.downstream.connectome.communities import (
    Partition,
    adjacency_from_pairs,
    detect_communities,
)
from brainfm.downstream.connectome.nodes import NodeSignals, node_signals
from brainfm.downstream.connectome.ntf import NTFResult, normalize_factors, ntf_hals
from brainfm.downstream.connectome.rank_selection import RankSweep, rank_sweep
from brainfm.errors import ConfigError

__all__ = ["ConnectomeConfig", "ConnectomeResult", "load_connectome_config", "run_connectome", "write_connectome"]


@dataclass
class ConnectomeConfig:
    """Every option of a dynamic-connectome run."""

    recordings: str | None = None
    """Glob on recording ids; default every recording of the store."""
    nodes: Literal["channels", "regions"] = "channels"
    """``channels`` of one montage, or iEEG ``regions`` (mean of a subject's contacts per atlas label)."""
    channel_types: list[str] | None = None
    """Channel types that become nodes; default the brain-signal types."""
    subject_by: Literal["subject", "recording"] = "subject"
    """What the subject mode indexes: subjects (their recordings joined) or single recordings."""
    time_mode: Literal["shared", "concatenated"] = "concatenated"
    """``shared``: event-locked averages on one timeline; ``concatenated``: subjects one after another."""
    events: list[str] | None = None
    """Event descriptions (globs) to align epochs to, in ``shared`` mode."""
    tmin: float = -0.2
    """Epoch start relative to each event, seconds (``shared``)."""
    tmax: float = 1.0
    """Epoch end relative to each event, seconds (``shared``)."""
    sfreq: float | None = None
    """Resample every recording to this rate (Hz); default they must share one."""
    max_seconds: float | None = 120.0
    """Seconds kept per subject in ``concatenated`` mode (the tensor grows with time x pairs)."""
    standardize: bool = True
    """z-score every node within each subject before the affinities."""
    affinity: Literal["coactivation", "gaussian", "sliding_corr"] = "coactivation"
    """Affinity kind."""
    sigma_samples: float = 2.0
    """Gaussian smoothing before the derivative, in samples."""
    window_s: float = 2.0
    """Window of ``sliding_corr``, seconds."""
    rank: int | None = None
    """Fit this rank only (no sweep)."""
    ranks: list[int] = field(default_factory=lambda: list(range(2, 21)))
    """Ranks of the sweep when ``rank`` is not set."""
    n_restarts: int = 10
    """Random restarts per rank."""
    n_iter_max: int = 300
    """Maximum HALS iterations per fit."""
    tol: float = 1e-6
    """Stop a fit when its relative error changes by less than this."""
    min_stability: float = 0.9
    """Restart congruence a rank needs to be chosen."""
    elbow_fraction: float = 0.05
    """Share of the total error reduction a rank must bring to count before the elbow."""
    community_backend: Literal["leiden", "graph_tool"] = "leiden"
    """Community detection backend."""
    n_blocks: int | None = None
    """Report the hierarchy level with the number of communities closest to this (default: finest)."""
    seed: int = 13
    """Seed of the restarts and of community detection."""
    device: str = "cpu"
    """Torch device of the factorisation (``cpu``, ``cuda``)."""

    def __post_init__(self) -> None:
        if self.time_mode == "shared" and not self.events:
            raise ConfigError("time_mode 'shared' needs events (e.g. --events T1 T2 or events: [T1, T2] in the config).")
        if self.tmax <= self.tmin:
            raise ConfigError(f"tmax ({self.tmax}) must be greater than tmin ({self.tmin}).")
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"rank must be positive, got {self.rank}.")
        if self.rank is None and (not self.ranks or min(self.ranks) < 1):
            raise ConfigError(f"ranks must be positive integers, got {self.ranks!r}.")
        if self.n_restarts < 1:
            raise ConfigError(f"n_restarts must be at least 1, got {self.n_restarts}.")


def load_connectome_config(path: str | Path | None = None, **overrides: Any) -> ConnectomeConfig:
    """Read a connectome YAML (validated against :class:`ConnectomeConfig`'s types), then apply overrides.

    Parameters
    ----------
    path : str | pathlib.Path | None
        A YAML file of :class:`ConnectomeConfig` fields (``configs/downstream/connectome.yaml``
        is the shipped one); ``None`` for the defaults.
    **overrides
        Fields to set on top (``None`` values are ignored), e.g. from command-line flags.

    Returns
    -------
    config : ConnectomeConfig
        The validated configuration.

    Raises
    ------
    brainfm.errors.ConfigError
        When a key is unknown or a value has the wrong type, naming the key and the file.
    """
    import yaml
    from jsonargparse import ArgumentParser

    values: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a connectome config is a mapping of options, got {type(loaded).__name__}.")
        values.update(loaded)
    values.update({key: value for key, value in overrides.items() if value is not None})
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ConnectomeConfig, "connectome")
    try:
        parsed = parser.parse_object({"connectome": values})
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        return instantiate(parsed).connectome
    except ConfigError:
        raise
    except Exception as exc:  # jsonargparse's ArgumentError: a wrong key or type
        known = [f.name for f in dataclasses.fields(ConnectomeConfig)]
        raise ConfigError(f"Invalid connectome config{f' {path}' if path else ''}: {exc}\nKnown keys: {', '.join(known)}.") from exc


@dataclass
class ConnectomeResult:
    """A fitted dynamic connectome.

    Attributes
    ----------
    config : ConnectomeConfig
        The options of the run.
    nodes : NodeSignals
        Node names, positions, subjects and markers (the signals themselves included).
    factors : list of numpy.ndarray
        Normalised ``[time (T, R), subject (W', R), pair (P, R)]``; in ``concatenated`` mode the
        subject loading is the mean time loading over each subject's segment (unit maximum).
    adjacency : numpy.ndarray
        ``(R, N, N)`` each component's pair loading as a symmetric matrix.
    partitions : list of Partition
        Communities per component.
    error : float
        Relative reconstruction error of the chosen model.
    stability : float
        Restart congruence of the chosen rank (1.0 for a single fit).
    sweep : RankSweep | None
        The rank sweep, when one ran.
    seconds : dict of str to float
        Wall time of each stage.
    """

    config: ConnectomeConfig
    nodes: NodeSignals
    factors: list[np.ndarray]
    adjacency: np.ndarray
    partitions: list[Partition]
    error: float
    stability: float
    sweep: RankSweep | None
    seconds: dict[str, float]

    @property
    def rank(self) -> int:
        """Number of components."""
        return int(self.factors[0].shape[1])

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary of the run."""
        return {
            "rank": self.rank,
            "relative_error": self.error,
            "stability": self.stability,
            "n_nodes": len(self.nodes.node_names),
            "n_subjects": len(self.nodes.subjects),
            "n_times": int(self.factors[0].shape[0]),
            "time_mode": self.nodes.time_mode,
            "communities": [int(np.unique(p.labels[p.labels >= 0]).size) for p in self.partitions],
            "sweep": None if self.sweep is None else {
                "ranks": self.sweep.ranks, "best_errors": self.sweep.best_errors,
                "stability": self.sweep.stability, "chosen_rank": self.sweep.chosen_rank,
                "seconds": self.sweep.seconds,
            },
            "seconds": self.seconds,
        }


def _tensor(nodes: NodeSignals, config: ConnectomeConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """The (T, W, P) tensor and its mask (None when every pair is observed)."""
    window = max(2, round(config.window_s * nodes.sfreq))
    options = {"kind": config.affinity, "sigma_samples": config.sigma_samples, "window_samples": window}
    n_pairs = len(pair_index(len(nodes.node_names))[0])
    if nodes.time_mode == "shared":
        tensor, mask = affinity_tensor(nodes.signals, nodes.node_mask, **options)
        return tensor, None if mask.all() else mask
    segments = nodes.segments
    tensor = np.empty((segments[-1][1], 1, n_pairs), dtype=np.float32)
    full_mask = None if nodes.node_mask.all() else np.ones(tensor.shape, dtype=bool)
    for w, (start, stop) in enumerate(segments):
        _, mask = affinity_tensor([nodes.signals[w]], nodes.node_mask[w : w + 1], out=tensor[start:stop], **options)
        if full_mask is not None:
            full_mask[start:stop, 0, :] = mask[0]
    return tensor, full_mask


def run_connectome(store: Any, config: ConnectomeConfig | None = None, *, progress: bool = False) -> ConnectomeResult:
    """Run the dynamic-connectome method on a store.

    Parameters
    ----------
    store : brainfm.store.Store | str | pathlib.Path
        A store or its path.
    config : ConnectomeConfig | None
        Options; default :class:`ConnectomeConfig()`.
    progress : bool
        Show progress bars.

    Returns
    -------
    result : ConnectomeResult
        Factors, adjacencies, communities, errors and the rank sweep.
    """
    from brainfm.store.reader import open_store

    config = config or ConnectomeConfig()
    if isinstance(store, str | Path):
        store = open_store(store)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    nodes = node_signals(
        store, nodes=config.nodes, channel_types=config.channel_types, recordings=config.recordings,
        subject_by=config.subject_by, time_mode=config.time_mode, events=config.events, tmin=config.tmin,
        tmax=config.tmax, sfreq=config.sfreq, max_seconds=config.max_seconds, standardize=config.standardize,
    )
    if len(nodes.node_names) < 3:
        raise ConfigError(f"The connectome needs at least 3 nodes; {store.path} gives {nodes.node_names}.")
    seconds["nodes"] = time.perf_counter() - start
    start = time.perf_counter()
    tensor, mask = _tensor(nodes, config)
    seconds["affinity"] = time.perf_counter() - start
    logger.info("affinity tensor %s (%.1f MB)", tensor.shape, tensor.nbytes / 1e6)
    start = time.perf_counter()
    fit_options = {"mask": mask, "n_iter_max": config.n_iter_max, "tol": config.tol, "device": config.device}
    sweep = None
    if config.rank is not None:
        model: NTFResult = min(
            (ntf_hals(tensor, config.rank, seed=config.seed + i, **fit_options) for i in range(config.n_restarts)),
            key=lambda fit: fit.error,
        )
        stability = 1.0
    else:
        sweep = rank_sweep(
            tensor, config.ranks, n_restarts=config.n_restarts, seed=config.seed, min_stability=config.min_stability,
            elbow_fraction=config.elbow_fraction, progress=progress, **fit_options,
        )
        model = sweep.best[sweep.chosen_rank]
        stability = sweep.stability[sweep.ranks.index(sweep.chosen_rank)]
    seconds["ntf"] = time.perf_counter() - start
    time_loading, subject_loading, pair_loading = (f.numpy() for f in normalize_factors(model.factors))
    if nodes.time_mode == "concatenated":
        subject_loading = np.stack([time_loading[a:b].mean(axis=0) for a, b in nodes.segments])
        subject_loading /= np.clip(subject_loading.max(axis=0, keepdims=True), 1e-30, None)
    start = time.perf_counter()
    n_nodes = len(nodes.node_names)
    adjacency = np.stack([adjacency_from_pairs(pair_loading[:, r], n_nodes) for r in range(pair_loading.shape[1])])
    partitions = [
        detect_communities(a, backend=config.community_backend, seed=config.seed, n_blocks=config.n_blocks)
        for a in adjacency
    ]
    seconds["communities"] = time.perf_counter() - start
    return ConnectomeResult(
        config=config, nodes=nodes, factors=[time_loading, subject_loading, pair_loading], adjacency=adjacency,
        partitions=partitions, error=model.error, stability=stability, sweep=sweep, seconds=seconds,
    )


def write_connectome(result: ConnectomeResult, path: str | Path) -> Path:
    """Write a result to HDF5 (atomically: a temporary file renamed at the end).

    Parameters
    ----------
    result : ConnectomeResult
        What :func:`run_connectome` returned.
    path : str | pathlib.Path
        The ``.h5`` file to write.

    Returns
    -------
    path : pathlib.Path
        The written file.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    nodes = result.nodes
    strings = h5py.string_dtype()
    with h5py.File(partial, "w") as h5:
        h5.attrs["brainfm_version"] = __version__
        h5.attrs["config"] = json.dumps(dataclasses.asdict(result.config))
        h5.attrs["rank"] = result.rank
        h5.attrs["relative_error"] = result.error
        h5.attrs["stability"] = result.stability
        h5.attrs["time_mode"] = nodes.time_mode
        h5.attrs["sfreq"] = nodes.sfreq
        h5.attrs["tmin"] = nodes.tmin
        h5.attrs["frame"] = nodes.frame
        h5.create_dataset("nodes/names", data=np.array(nodes.node_names, dtype=object), dtype=strings)
        h5.create_dataset("nodes/positions", data=nodes.positions)
        h5.create_dataset("nodes/mask", data=nodes.node_mask)
        h5.create_dataset("subjects/names", data=np.array(nodes.subjects, dtype=object), dtype=strings)
        h5.create_dataset("subjects/recordings", data=np.array([json.dumps(r) for r in nodes.recordings], dtype=object),
                          dtype=strings)
        h5.create_dataset("subjects/segments", data=np.array(nodes.segments, dtype=np.int64).reshape(-1, 2))
        rows, cols = pair_index(len(nodes.node_names))
        h5.create_dataset("pairs", data=np.column_stack([rows, cols]))
        h5.create_dataset("markers/time_s", data=np.array([m[0] for m in nodes.markers], dtype=np.float64))
        h5.create_dataset("markers/description", data=np.array([m[1] for m in nodes.markers], dtype=object), dtype=strings)
        h5.create_dataset("factors/time", data=result.factors[0])
        h5.create_dataset("factors/subject", data=result.factors[1])
        h5.create_dataset("factors/pair", data=result.factors[2])
        h5.create_dataset("adjacency", data=result.adjacency, compression="gzip")
        for r, partition in enumerate(result.partitions):
            group = h5.create_group(f"communities/{r}")
            group.attrs["backend"] = partition.backend
            group.attrs["chosen_level"] = partition.chosen_level
            if partition.description_length is not None:
                group.attrs["description_length"] = partition.description_length
            if partition.variant is not None:
                group.attrs["variant"] = partition.variant
            if partition.quality is not None:
                group.attrs["modularity"] = partition.quality
            for level, labels in enumerate(partition.levels):
                group.create_dataset(f"level_{level}", data=labels)
        if result.sweep is not None:
            sweep = h5.create_group("sweep")
            sweep.create_dataset("ranks", data=np.array(result.sweep.ranks))
            sweep.create_dataset("errors", data=np.array(result.sweep.errors))
            sweep.create_dataset("stability", data=np.array(result.sweep.stability))
            sweep.attrs["chosen_rank"] = result.sweep.chosen_rank
            sweep.attrs["seconds"] = result.sweep.seconds
    partial.replace(path)
    return path
