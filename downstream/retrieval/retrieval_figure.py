"""A figure of example retrievals: each query trial's best-ranked concepts (issue 12 item 5)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_example_retrievals"]


def plot_example_retrievals(
    brain: np.ndarray,
    concepts: np.ndarray,
    names: Sequence[str],
    path: str | Path,
    n_examples: int = 6,
    top: int = 5,
    metric: str = "cosine",
) -> Path:
    """Save a PNG with one panel per query: its ``top`` best concepts over the whole gallery.

    Parameters
    ----------
    brain : array of shape (n_items, d)
        Brain features of the test items.
    concepts : array of shape (n_items, d)
        Concept features; row i is the truth of brain row i (the gallery).
    names : sequence of str
        Concept name of each row.
    path : str | pathlib.Path
        Output PNG.
    n_examples : int
        Queries shown (the first ones).
    top : int
        Concepts shown per query, best first; the true concept is drawn in another colour,
        and its rank is in the panel title.
    metric : {"cosine", "dot"}
        Similarity used for the ranking.

    Returns
    -------
    path : pathlib.Path
    """
    from matplotlib.figure import Figure

    brain = np.asarray(brain, dtype=np.float64)
    concepts = np.asarray(concepts, dtype=np.float64)
    if metric == "cosine":
        brain = brain / np.maximum(np.linalg.norm(brain, axis=1, keepdims=True), 1e-12)
        concepts = concepts / np.maximum(np.linalg.norm(concepts, axis=1, keepdims=True), 1e-12)
    scores = brain @ concepts.T
    n_examples = min(n_examples, len(brain))
    top = min(top, concepts.shape[0])
    figure = Figure(figsize=(3.2 * n_examples, 0.45 * top + 1.2), layout="constrained")
    axes = figure.subplots(1, n_examples, squeeze=False)[0]
    for query, ax in enumerate(axes):
        order = np.argsort(-scores[query], kind="stable")
        rank = int(np.flatnonzero(order == query)[0]) + 1
        best = order[:top]
        colours = ["tab:green" if j == query else "tab:gray" for j in best]
        ax.barh(np.arange(top)[::-1], scores[query, best], color=colours)
        ax.set_yticks(np.arange(top)[::-1], [str(names[j]) for j in best])
        ax.set_title(f"query: {names[query]}\ntrue concept ranked {rank} of {len(order)}", fontsize=9)
        ax.set_xlabel(metric)
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path
