"""PNG figures of a dynamic connectome: time courses, subject loadings, adjacencies, node maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainfm.downstream.connectome.pipeline import ConnectomeResult

__all__ = ["plot_connectome"]


def _community_order(labels: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(labels.size), np.where(labels < 0, labels.max() + 1, labels)))


def plot_connectome(result: ConnectomeResult, folder: str | Path) -> list[Path]:
    """Write the four figures of a result as PNG files.

    ``time_courses.png`` (each component's time loading, events marked), ``subject_loadings.png``,
    ``adjacency.png`` (each component's adjacency with nodes ordered by community, community
    borders drawn) and ``node_map.png`` (nodes at their sensor or contact positions seen from
    above, coloured by community; on a circle when positions are unknown).

    Parameters
    ----------
    result : ConnectomeResult
        A fitted result.
    folder : str | pathlib.Path
        Where to write (created when missing).

    Returns
    -------
    paths : list of pathlib.Path
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nodes = result.nodes
    time_loading, subject_loading, _ = result.factors
    rank = result.rank
    times = nodes.tmin + np.arange(time_loading.shape[0]) / nodes.sfreq
    paths = []

    fig, axes = plt.subplots(rank, 1, figsize=(10, 1.4 * rank + 0.8), sharex=True, squeeze=False)
    for r, ax in enumerate(axes[:, 0]):
        ax.plot(times, time_loading[:, r], lw=0.7, color=f"C{r % 10}")
        for onset, description in nodes.markers:
            ax.axvline(onset, color="0.4", lw=0.6, ls="--" if description.startswith("start ") else ":")
        ax.set_ylabel(f"#{r}", rotation=0, labelpad=15)
        ax.set_ylim(0, 1.05)
    axes[-1, 0].set_xlabel("time (s)" + (" relative to events" if nodes.time_mode == "shared" else ", subjects in turn"))
    fig.suptitle(f"Component time courses (rank {rank}, relative error {result.error:.3f})")
    fig.tight_layout()
    paths.append(folder / "time_courses.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(nodes.subjects) * rank / 2 + 3), 3.5))
    width = 0.8 / rank
    x = np.arange(len(nodes.subjects))
    for r in range(rank):
        ax.bar(x + r * width - 0.4 + width / 2, subject_loading[:, r], width, label=f"#{r}", color=f"C{r % 10}")
    ax.set_xticks(x, [s.split("/")[-1] for s in nodes.subjects], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("loading (unit max)")
    ax.set_title("Subject loadings per component")
    ax.legend(fontsize=7, ncol=min(rank, 6))
    fig.tight_layout()
    paths.append(folder / "subject_loadings.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    n_cols = min(rank, 4)
    n_rows = int(np.ceil(rank / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.2 * n_rows), squeeze=False)
    for r, ax in enumerate(axes.flat):
        if r >= rank:
            ax.axis("off")
            continue
        labels = result.partitions[r].labels
        order = _community_order(labels)
        ax.imshow(result.adjacency[r][np.ix_(order, order)], cmap="magma", interpolation="nearest")
        borders = np.flatnonzero(np.diff(labels[order])) + 0.5
        for b in borders:
            ax.axhline(b, color="cyan", lw=0.6)
            ax.axvline(b, color="cyan", lw=0.6)
        n_communities = np.unique(labels[labels >= 0]).size
        ax.set_title(f"#{r}: {n_communities} communities", fontsize=9)
        if len(order) <= 40:
            names = [nodes.node_names[i] for i in order]
            ax.set_xticks(range(len(order)), names, rotation=90, fontsize=5)
            ax.set_yticks(range(len(order)), names, fontsize=5)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Adjacency per component, nodes ordered by community")
    fig.tight_layout()
    paths.append(folder / "adjacency.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    xy = nodes.positions[:, :2]
    placed = np.isfinite(xy).all(axis=1)
    if not placed.any():
        angle = 2 * np.pi * np.arange(len(xy)) / max(len(xy), 1)
        xy, placed, where = np.column_stack([np.cos(angle), np.sin(angle)]), np.ones(len(xy), bool), "circle layout"
    else:
        where = f"positions, {nodes.frame or 'unknown'} frame, seen from above"
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.2 * n_rows), squeeze=False)
    for r, ax in enumerate(axes.flat):
        ax.axis("off")
        if r >= rank:
            continue
        labels = result.partitions[r].labels
        strength = result.adjacency[r].sum(axis=1)
        size = 20 + 120 * strength / max(strength.max(), 1e-30)
        colors = [f"C{label % 10}" if label >= 0 else "0.8" for label in labels]
        ax.scatter(xy[placed, 0], xy[placed, 1], s=size[placed], c=[c for c, p in zip(colors, placed, strict=True) if p],
                   edgecolors="k", linewidths=0.3)
        if placed.sum() <= 40:
            for i in np.flatnonzero(placed):
                ax.annotate(nodes.node_names[i], xy[i], fontsize=5, ha="center", va="bottom")
        span = np.ptp(xy[placed], axis=0).max() if placed.sum() > 1 else 1.0
        centre = xy[placed].mean(axis=0)
        ax.set_xlim(centre[0] - 0.6 * span, centre[0] + 0.6 * span)
        ax.set_ylim(centre[1] - 0.6 * span, centre[1] + 0.6 * span)
        ax.set_aspect("equal")
        ax.set_title(f"#{r}", fontsize=9)
    fig.suptitle(f"Communities at node positions\n({where}; size = node strength)", fontsize=9)
    fig.tight_layout()
    paths.append(folder / "node_map.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
