"""Results of ``brainfm evaluate`` on disk: Markdown and CSV tables, JSON, and PNG figures.

``<out>/results.md`` (mean +- sd over folds and seeds), ``results.csv`` (one row per model,
fold and seed), ``results.json`` (the ``--json`` document, identical between identical runs),
``timings.json`` (wall times of the run and of every fit), ``task.yaml`` (the resolved task), ``confusion_<model>.png`` (summed over folds and seeds, rows normalised) and
``folds.png`` (balanced accuracy of every fold and seed per model).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from brainfm.downstream.decoding.evaluation import EvaluationResult
from brainfm.downstream.decoding.metrics import METRICS
from brainfm.downstream.decoding.task import DecodingTask

__all__ = ["markdown_table", "write_results"]


def markdown_table(result: EvaluationResult) -> str:
    """The results as a Markdown table, mean +- sd over folds and seeds (AUROC only for binary tasks).

    Parameters
    ----------
    result : EvaluationResult
        From :func:`~brainfm.downstream.decoding.evaluation.evaluate_task`.

    Returns
    -------
    table : str
        A title line and the table.
    """
    metrics = [m for m in METRICS if m != "auroc" or len(result.classes) == 2]
    n_folds = {len(r.folds) for r in result.models.values()}
    lines = [
        f"**{result.task}**, protocol `{result.protocol}`: {result.n_trials} trials, {result.n_subjects} subjects, "
        f"{'/'.join(str(n) for n in sorted(n_folds))} fold x seed runs per model; mean +- sd over them.",
        "",
        "| model | kind | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for name, model in result.models.items():
        cells = []
        for metric in metrics:
            s = model.summary(metric)
            cells.append("n/a" if not np.isfinite(s["mean"]) else f"{s['mean']:.3f} +- {s['sd']:.3f}")
        lines.append(f"| {name} | {model.kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(result: EvaluationResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = []
    names = list(result.models)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 1), 3.5), layout="constrained")
    rng = np.random.default_rng(0)  # jitter of the dots only
    for i, name in enumerate(names):
        values = np.array([f["balanced_accuracy"] for f in result.models[name].folds])
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=12, alpha=0.6)
        ax.hlines(values.mean(), i - 0.3, i + 0.3, color="k")
    ax.axhline(1 / len(result.classes), color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("balanced accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{result.task} ({result.protocol}): every fold and seed", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    path = out / "folds.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    for name, model in result.models.items():
        matrix = np.asarray(model.confusion, dtype=np.float64)
        rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        size = 1.0 + 0.6 * len(result.classes)
        fig, ax = plt.subplots(figsize=(size + 1, size), layout="constrained")
        image = ax.imshow(rows, vmin=0, vmax=1, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=8,
                    color="white" if rows[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(result.classes)), result.classes, rotation=30, ha="right")
        ax.set_yticks(range(len(result.classes)), result.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of true class")
        path = out / f"confusion_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_results(result: EvaluationResult, task: DecodingTask, out: str | Path) -> dict[str, object]:
    """Write tables, JSON, the resolved task and figures into a folder.

    Parameters
    ----------
    result : EvaluationResult
        The evaluation.
    task : DecodingTask
        The task it ran.
    out : str | pathlib.Path
        The folder (created).

    Returns
    -------
    files : dict
        ``markdown``, ``csv``, ``json``, ``timings``, ``task`` paths and ``figures`` (list of paths).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown_table(result))
    (out / "results.json").write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    (out / "timings.json").write_text(json.dumps(result.timings(), indent=2) + "\n")
    (out / "task.yaml").write_text(yaml.safe_dump(task.to_dict(), sort_keys=False))
    with open(out / "results.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["model", "kind", "seed", "fold", "n_train", "n_test", *METRICS])
        for name, model in result.models.items():
            for fold in model.folds:
                writer.writerow([name, model.kind, fold["seed"], fold["fold"], fold["n_train"], fold["n_test"],
                                 *(f"{fold[m]:.6f}" for m in METRICS)])
    figures = _plot(result, out)
    return {"markdown": str(out / "results.md"), "csv": str(out / "results.csv"), "json": str(out / "results.json"),
            "timings": str(out / "timings.json"), "task": str(out / "task.yaml"), "figures": [str(p) for p in figures]}
