"""``brainfm retrieve fit|test``: stage 1 (one modality adapter) or stage 2 (the shared projection).

A config (:mod:`~brainfm.downstream.retrieval.run_config`) with a ``data`` section trains one
adapter, the Medformer adapter or a pretrained brainfm backbone, on the training trials and
holds out the dataset's test split or a seeded share of concepts (or recordings). A config with
a ``shared`` section loads the stage-1 runs it names, freezes their adapters and trains the
soft mixture of experts on single-modality batches in round-robin order (spec §5.3), leaving
out every concept any of the runs held out. ``test`` evaluates k-way retrieval per subject on
the held-out trials (per modality in stage 2) and writes ``results.json``, ``results.md`` and
``examples.png``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from brainfm._logging import logger
from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter
from brainfm.downstream.retrieval.backbone_adapter import BackboneAdapter
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.evaluation import k_way_accuracy
from brainfm.downstream.retrieval.paired_data import PairedTrials
from brainfm.downstream.retrieval.retrieval_figure import plot_example_retrievals
from brainfm.downstream.retrieval.run_checkpoint import (
    adapter_spec,
    build_adapter,
    load_run_checkpoint,
    save_run_checkpoint,
)
from brainfm.downstream.retrieval.run_config import RunConfig, load_run_config
from brainfm.downstream.retrieval.shared_projection import SharedProjection, SoftMoE
from brainfm.downstream.retrieval.training import (
    encode,
    seeded_init,
    take_rows,
    train_contrastive,
    train_shared_projection,
)
from brainfm.downstream.retrieval.trial_sources import draw_held_out, held_out_mask, load_trials
from brainfm.errors import ConfigError

__all__ = ["fit", "test"]


def _inputs(trials: PairedTrials, adapter: nn.Module | None, rows: np.ndarray) -> Any:
    """Adapter inputs of ``rows``: the trial tensor, or the Batch for a pretrained backbone."""
    if isinstance(adapter, BackboneAdapter):
        if trials.batch is None:
            raise ConfigError("A pretrained backbone reads sensor geometry from a store: use data.layout 'store'.")
        return take_rows(trials.batch, torch.from_numpy(rows))
    return torch.from_numpy(trials.signals[rows])


def _build_stage1_adapter(config: RunConfig, trials: PairedTrials) -> nn.Module:
    out_dim = trials.embeddings.features.shape[1]
    backbone = config.model.backbone
    if backbone is not None:
        return seeded_init(lambda: BackboneAdapter(backbone.checkpoint, out_dim, freeze=backbone.freeze,
                                                   pooling=backbone.pooling, dropout=backbone.dropout,
                                                   sfreq=trials.sfreq), seed=config.train.seed)
    adapter_config = AdapterConfig(n_chans=trials.signals.shape[1], n_times=trials.signals.shape[2], out_dim=out_dim,
                                   **config.model.medformer)
    return seeded_init(lambda: ModalityAdapter(adapter_config), seed=config.train.seed)


def _training_data(trials: PairedTrials, rows: np.ndarray, source: str | None) -> dict[str, Any]:
    recordings = [] if trials.recordings is None else sorted({str(r) for r in trials.recordings[rows]})
    return {"source": source, "recordings": recordings, "subjects": sorted({str(s) for s in trials.subjects[rows]})}


def _fit_adapter(config: RunConfig) -> Path:
    data = config.data
    trials = load_trials(data, "all" if data.layout == "store" else "train")
    if trials.is_test is None:
        held_out = draw_held_out(trials, data)
        train = np.flatnonzero(~held_out_mask(trials, held_out))
    else:  # a THINGS layout: its own test split, read at test time
        train = np.arange(len(trials))
        held_out = {"unit": "dataset", "ids": []}
    adapter = _build_stage1_adapter(config, trials)
    loss = ContrastiveLoss(config.loss.clip_mode)
    logger.info("training on %d trials of %d concepts; held out: %d %s", train.size,
                np.unique(trials.concepts[train]).size, len(held_out["ids"]), held_out["unit"])
    losses = train_contrastive(
        adapter, loss, _inputs(trials, adapter, train), torch.from_numpy(trials.embeddings.features[trials.concepts[train]]),
        n_steps=config.train.n_steps, batch_size=config.train.batch_size or 100, lr=config.train.lr,
        weight_decay=config.train.weight_decay, grad_clip=config.train.grad_clip, seed=config.train.seed,
    )
    retrieval = {"stage": "adapter", "config": config.to_dict(), "adapter": adapter_spec(adapter),
                 "clip_mode": loss.clip_mode, "held_out": held_out, "losses": losses}
    source = data.store if data.layout == "store" else data.root
    return _save(config, adapter, loss, retrieval, _training_data(trials, train, source))


def _save(config: RunConfig, model: nn.Module, loss: ContrastiveLoss, retrieval: dict[str, Any],
          training_data: dict[str, Any]) -> Path:
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = save_run_checkpoint(output / "model.pt", model, loss, retrieval, training_data)
    (output / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return checkpoint


def _stage1_run(path: str, modality: str) -> tuple[RunConfig, nn.Module, dict[str, Any]]:
    """A stage-1 run named by a stage-2 config: its config, trained adapter and recorded facts."""
    run = load_run_config(path)
    if run.stage != "adapter":
        raise ConfigError(f"shared.adapters.{modality} ({path}) is not a stage-1 config (it has no 'data' section).")
    checkpoint = Path(run.output) / "model.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint} not found: run 'brainfm retrieve fit --config {path}' first.")
    retrieval, _ = load_run_checkpoint(checkpoint)
    adapter = build_adapter(retrieval["adapter"], str(checkpoint))
    load_run_checkpoint(checkpoint, adapter)
    return run, adapter, retrieval


def _fit_shared(config: RunConfig) -> Path:
    shared = config.shared
    adapters, data, held, training = {}, {}, {}, {}
    runs = {m: _stage1_run(path, m) for m, path in shared.adapters.items()}
    # concepts any run held out stay unseen by the shared projection too
    unseen = {c for _, _, r in runs.values() if r["held_out"]["unit"] != "recordings" for c in r["held_out"]["ids"]}
    for modality, (run, adapter, retrieval) in runs.items():
        trials = load_trials(run.data, "all" if run.data.layout == "store" else "train")
        keep = np.ones(len(trials), dtype=bool) if trials.is_test is not None else ~held_out_mask(trials, retrieval["held_out"])
        keep &= ~np.isin(np.array(trials.embeddings.ids, dtype=object)[trials.concepts], list(unseen))
        rows = np.flatnonzero(keep)
        adapters[modality], held[modality] = adapter, retrieval["held_out"]
        data[modality] = (_inputs(trials, adapter, rows), torch.from_numpy(trials.embeddings.features[trials.concepts[rows]]))
        training[modality] = _training_data(trials, rows, run.data.store if run.data.layout == "store" else run.data.root)
        logger.info("%s: %d training trials through its frozen adapter", modality, rows.size)
    widths = {m: int(t.shape[1]) for m, (_, t) in data.items()}
    if len(set(widths.values())) != 1:
        raise ConfigError(f"The stage-1 runs use embeddings of different widths {widths}; stage 2 needs one concept space.")
    batch_size = config.train.batch_size or 250
    short = [m for m, (_, t) in data.items() if t.shape[0] < batch_size]
    if len(short) == len(data):
        raise ConfigError(f"No modality has a full batch of {batch_size} training trials; lower train.batch_size.")
    moe = seeded_init(lambda: SoftMoE(next(iter(widths.values())), shared.n_experts, shared.router_hidden),
                      seed=config.train.seed)
    model = SharedProjection(adapters, moe, frozen_adapters_train_mode=shared.frozen_adapters_train_mode)
    loss = ContrastiveLoss(config.loss.clip_mode)
    history = train_shared_projection(
        model, loss, data, n_epochs=shared.n_epochs, batch_size=batch_size, lr=config.train.lr,
        weight_decay=config.train.weight_decay, grad_clip=config.train.grad_clip, seed=config.train.seed,
    )
    retrieval = {
        "stage": "shared", "config": config.to_dict(), "clip_mode": loss.clip_mode,
        "adapters": {m: adapter_spec(a) for m, a in adapters.items()}, "held_out": held,
        "losses": [v for _, v in history], "loss_modalities": [m for m, _ in history],
    }
    return _save(config, model, loss, retrieval, training)


def fit(config: RunConfig) -> Path:
    """Train a stage-1 adapter or the stage-2 shared projection and save ``<output>/model.pt``.

    Parameters
    ----------
    config : RunConfig
        From :func:`~brainfm.downstream.retrieval.run_config.load_run_config`.

    Returns
    -------
    checkpoint : pathlib.Path
        The brainfm checkpoint of the run.
    """
    return _fit_adapter(config) if config.stage == "adapter" else _fit_shared(config)


def _evaluate(features: np.ndarray, trials: PairedTrials, rows: np.ndarray, config: _EvalView, metric: str,
              figure: Path | None) -> dict[str, Any]:
    """k-way per subject (averaged over subjects, spec §6), items averaged per concept when asked."""
    concepts, subjects = trials.concepts[rows], trials.subjects[rows].astype(str)
    per_subject: dict[str, dict[str, Any]] = {}
    first = None
    for subject in np.unique(subjects):
        mine = subjects == subject
        f, c = features[mine], concepts[mine]
        if config.data_average:
            items = np.unique(c)
            f, c = np.stack([f[c == r].mean(axis=0) for r in items]), items
        targets = trials.embeddings.features[c]
        scores = {int(k): k_way_accuracy(f, targets, k, config.eval.n_trials, seed=config.eval.seed, metric=metric)
                  for k in config.eval.k if k <= len(c)}
        per_subject[str(subject)] = {"n_items": len(c), "k": scores}
        if first is None and config.data_average:
            first = (f, targets, [trials.embeddings.ids[r] for r in c])
    ks = sorted(set.intersection(*(set(s["k"]) for s in per_subject.values())))

    def mean(k: int, key: str) -> float | None:
        values = [s["k"][k][key] for s in per_subject.values()]
        return None if values[0] is None else float(np.mean(values))

    if figure is not None and first is not None:  # one gallery row per query: the first subject's
        plot_example_retrievals(*first, figure, metric=metric)
    return {
        "n_concepts": int(np.unique(concepts).size), "n_items": int(sum(s["n_items"] for s in per_subject.values())),
        "n_subjects": len(per_subject), "k": {k: {"top1": mean(k, "top1"), "top5": mean(k, "top5")} for k in ks},
        "subjects": per_subject,
    }


def _write(output: Path, results: dict[str, Any], sections: dict[str, dict[str, Any]]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2))
    lines = []
    for title, result in sections.items():
        if title:
            lines += [f"## {title}", ""]
        lines += [f"{result['n_items']} test items, {result['n_concepts']} concepts, {result['n_subjects']} subject(s)"
                  " (mean over subjects)", "", "| k | top-1 | top-5 |", "|---|---|---|"]
        for k, r in result["k"].items():
            top5 = "-" if r["top5"] is None else f"{100 * r['top5']:.2f}"
            lines.append(f"| {k} | {100 * r['top1']:.2f} | {top5} |")
        lines.append("")
    (output / "results.md").write_text("\n".join(lines))


def test(config: RunConfig, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a fitted run on its held-out trials; write results and an example figure.

    Parameters
    ----------
    config : RunConfig
        The run's config.
    checkpoint : str | pathlib.Path | None
        The checkpoint; None uses ``<output>/model.pt``.

    Returns
    -------
    results : dict
        Stage 1: ``{"n_concepts", "n_items", "n_subjects", "clip_mode", "k": {k: {"top1", "top5"}},
        "subjects": {...}}`` (top-1 and top-5 averaged over subjects); stage 2: the same per
        modality under ``"modalities"``.
    """
    output = Path(config.output)
    checkpoint = Path(checkpoint) if checkpoint is not None else output / "model.pt"
    retrieval, _ = load_run_checkpoint(checkpoint)
    if retrieval["stage"] != config.stage:
        raise ConfigError(f"{checkpoint} is a {retrieval['stage']} run, but the config describes a {config.stage} run.")
    metric = "cosine" if retrieval["clip_mode"] == "standard" else "dot"
    if config.stage == "adapter":
        adapter = build_adapter(retrieval["adapter"], str(checkpoint))
        load_run_checkpoint(checkpoint, adapter)
        trials = load_trials(config.data, "all" if config.data.layout == "store" else "test")
        rows = np.flatnonzero(held_out_mask(trials, retrieval["held_out"]))
        features = encode(adapter, _inputs(trials, adapter, rows))
        results = _evaluate(features, trials, rows, _EvalView(config, config.data.average_test_repetitions), metric,
                            output / "examples.png")
        results["clip_mode"] = retrieval["clip_mode"]
        _write(output, results, {"": results})
        return results
    adapters = {m: build_adapter(spec, str(checkpoint)) for m, spec in retrieval["adapters"].items()}
    model = SharedProjection(adapters, SoftMoE(_width(adapters), config.shared.n_experts, config.shared.router_hidden))
    load_run_checkpoint(checkpoint, model)
    per_modality = {}
    for modality, path in config.shared.adapters.items():
        run = load_run_config(path)
        trials = load_trials(run.data, "all" if run.data.layout == "store" else "test")
        rows = np.flatnonzero(held_out_mask(trials, retrieval["held_out"][modality]))
        features = encode(_OneModality(model, modality), _inputs(trials, adapters[modality], rows))
        per_modality[modality] = _evaluate(features, trials, rows, _EvalView(config, run.data.average_test_repetitions),
                                           metric, output / f"examples_{modality}.png")
    results = {"clip_mode": retrieval["clip_mode"], "modalities": per_modality}
    _write(output, results, per_modality)
    return results


def _width(adapters: dict[str, nn.Module]) -> int:
    from brainfm.downstream.retrieval.shared_projection import adapter_out_dim

    return adapter_out_dim(next(iter(adapters.values())))


@dataclasses.dataclass
class _EvalView:
    """The evaluation settings with the test-averaging flag of the data being evaluated."""

    run: RunConfig
    data_average: bool

    @property
    def eval(self) -> Any:
        return self.run.eval


class _OneModality(nn.Module):
    def __init__(self, model: SharedProjection, modality: str) -> None:
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, x: Any) -> torch.Tensor:
        return self.model(x, self.modality)
