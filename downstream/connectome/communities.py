"""Weighted community detection on each component's adjacency.

Backends:

``leiden`` (default; leidenalg + python-igraph)
    Weighted modularity (Reichardt-Bornholdt configuration model) at resolution 1.0: one level.
``graph_tool`` (when graph-tool is importable; it is not on PyPI)
    The nested stochastic block model with edge weights as real-valued covariates following an
    exponential distribution, fitted degree-corrected and not; the variant with the lower
    description length is kept. Every hierarchy level is read, stopping before a level with a
    single block or one block per node.

Edges lighter than ``1e-6`` times the heaviest are dropped before fitting. Nodes without any
edge (e.g. missing in every subject) get the label -1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from brainfm._check import check_option

__all__ = ["COMMUNITY_BACKENDS", "Partition", "adjacency_from_pairs", "detect_communities"]

COMMUNITY_BACKENDS = ("leiden", "graph_tool")
#: Relative weight under which an edge is dropped.
_MIN_RELATIVE_WEIGHT = 1e-6


@dataclass
class Partition:
    """Communities of one graph.

    Attributes
    ----------
    levels : list of numpy.ndarray
        Node labels per hierarchy level, finest first (``leiden``: one level); -1 for nodes
        without edges.
    chosen_level : int
        The level reported as *the* communities.
    backend : str
        Which backend fitted it.
    description_length : float | None
        The SBM's description length (``graph_tool``).
    variant : str | None
        ``"degree-corrected"`` or ``"not degree-corrected"`` (``graph_tool``).
    quality : float | None
        Weighted modularity of the chosen level (``leiden``).
    """

    levels: list[np.ndarray] = field(default_factory=list)
    chosen_level: int = 0
    backend: str = "leiden"
    description_length: float | None = None
    variant: str | None = None
    quality: float | None = None

    @property
    def labels(self) -> np.ndarray:
        """Labels of the chosen level."""
        return self.levels[self.chosen_level]


def adjacency_from_pairs(pair_weights: np.ndarray, n_nodes: int) -> np.ndarray:
    """A symmetric ``(N, N)`` adjacency with zero diagonal from pair weights.

    Parameters
    ----------
    pair_weights : numpy.ndarray
        ``(P,)`` weights in :func:`~brainfm.downstream.connectome.affinity.pair_index` order.
    n_nodes : int
        ``N``, with ``P = N (N - 1) / 2``.

    Returns
    -------
    adjacency : numpy.ndarray
        float32 ``(N, N)``.
    """
    pair_weights = np.asarray(pair_weights, dtype=np.float32)
    if pair_weights.shape != (n_nodes * (n_nodes - 1) // 2,):
        raise ValueError(f"{pair_weights.shape[0]} pair weights do not fit {n_nodes} nodes.")
    rows, cols = np.triu_indices(n_nodes, k=1)
    adjacency = np.zeros((n_nodes, n_nodes), dtype=np.float32)
    adjacency[rows, cols] = pair_weights
    adjacency[cols, rows] = pair_weights
    return adjacency


def _edges(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.triu_indices(adjacency.shape[0], k=1)
    weights = adjacency[rows, cols].astype(np.float64)
    peak = weights.max(initial=0.0)
    keep = weights > _MIN_RELATIVE_WEIGHT * peak if peak > 0 else np.zeros_like(weights, dtype=bool)
    return rows[keep], cols[keep], weights[keep]


def _relabel(labels: np.ndarray, isolated: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 in order of first appearance; isolated nodes -1."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, label in enumerate(labels):
        if not isolated[i]:
            out[i] = seen.setdefault(int(label), len(seen))
    return out


def _leiden(adjacency: np.ndarray, seed: int, resolution: float) -> Partition:
    try:
        import igraph
        import leidenalg
    except ImportError as exc:  # pragma: no cover - both are dependencies
        raise ImportError("The leiden backend needs leidenalg and python-igraph: pip install leidenalg igraph") from exc
    n_nodes = adjacency.shape[0]
    rows, cols, weights = _edges(adjacency)
    graph = igraph.Graph(n=n_nodes, edges=list(zip(rows.tolist(), cols.tolist(), strict=True)))
    graph.es["weight"] = weights.tolist()
    found = leidenalg.find_partition(
        graph, leidenalg.RBConfigurationVertexPartition, weights="weight",
        resolution_parameter=resolution, seed=int(seed),
    )
    isolated = np.asarray(graph.degree()) == 0
    labels = _relabel(np.asarray(found.membership), isolated)
    quality = graph.modularity(found.membership, weights="weight") if weights.size else None
    return Partition(levels=[labels], backend="leiden", quality=quality)


def _graph_tool(adjacency: np.ndarray, seed: int) -> Partition:  # pragma: no cover - needs graph-tool
    import graph_tool.all as gt

    gt.seed_rng(int(seed))
    n_nodes = adjacency.shape[0]
    rows, cols, weights = _edges(adjacency)
    graph = gt.Graph(directed=False)
    graph.add_vertex(n_nodes)
    graph.add_edge_list(np.column_stack([rows, cols]))
    weight = graph.new_edge_property("double")
    weight.a = weights
    isolated = graph.get_total_degrees(graph.get_vertices()) == 0
    best = None
    for degree_corrected in (True, False):
        state = gt.minimize_nested_blockmodel_dl(
            graph,
            state_args={"recs": [weight], "rec_types": ["real-exponential"], "deg_corr": degree_corrected},
        )
        entropy = float(state.entropy())
        if best is None or entropy < best[0]:
            best = (entropy, degree_corrected, state)
    assert best is not None
    entropy, degree_corrected, state = best
    levels = []
    for level in range(len(state.get_levels())):
        labels = np.asarray(state.project_partition(level, 0).a)
        n_blocks = np.unique(labels[~isolated]).size
        if n_blocks <= 1 or n_blocks >= n_nodes:
            break
        levels.append(_relabel(labels, isolated))
    if not levels:
        levels = [_relabel(np.zeros(n_nodes, dtype=np.int64), isolated)]
    return Partition(
        levels=levels, backend="graph_tool", description_length=entropy,
        variant="degree-corrected" if degree_corrected else "not degree-corrected",
    )


def detect_communities(
    adjacency: np.ndarray,
    *,
    backend: Literal["leiden", "graph_tool"] = "leiden",
    seed: int = 13,
    resolution: float = 1.0,
    n_blocks: int | None = None,
) -> Partition:
    """Find the communities of a weighted undirected graph.

    Parameters
    ----------
    adjacency : numpy.ndarray
        Symmetric non-negative ``(N, N)`` weights (the diagonal is ignored).
    backend : str
        ``"leiden"`` or ``"graph_tool"`` (see the module docstring).
    seed : int
        Seed of the backend's random number generator.
    resolution : float
        Resolution of the ``leiden`` modularity.
    n_blocks : int | None
        Choose the level whose number of communities is closest to this; default: the finest
        non-trivial level.

    Returns
    -------
    partition : Partition
        Labels per level and the chosen level.
    """
    check_option("backend", backend, COMMUNITY_BACKENDS)
    adjacency = np.asarray(adjacency)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {adjacency.shape}.")
    if backend == "graph_tool":
        try:
            import graph_tool  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "The graph_tool backend needs graph-tool, which is not on PyPI: install it from conda-forge "
                "(conda install -c conda-forge graph-tool) or your distribution, or use backend='leiden'."
            ) from exc
        partition = _graph_tool(adjacency, seed)
    else:
        partition = _leiden(adjacency, seed, resolution)
    if n_blocks is not None:
        counts = [np.unique(level[level >= 0]).size for level in partition.levels]
        partition.chosen_level = int(np.argmin([abs(c - n_blocks) for c in counts]))
    return partition
