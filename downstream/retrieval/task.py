"""``brainfm retrieve fit|test``: train one modality adapter on store trials, evaluate k-way.

The YAML config has five sections (see ``configs/downstream/retrieval_things_eeg2.yaml``):
``data`` (store, embeddings, event pattern, trial window, concept split), ``model``
(:class:`AdapterConfig` fields; channels and samples come from the data), ``loss``
(``clip_mode``), ``train`` and ``eval``, plus ``output`` (the run folder). ``fit`` holds out a
seeded fraction of the *concepts*, trains on the others and saves ``model.pt`` and the
resolved ``config.yaml``; ``test`` evaluates k-way retrieval on the held-out concepts only and
writes ``results.json``, ``results.md`` and ``examples.png`` (example queries and their
best-ranked concepts, when test repetitions are averaged).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from brainfm._logging import logger
from brainfm._version import __version__
from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.evaluation import k_way_accuracy
from brainfm.downstream.retrieval.paired_data import PairedTrials, load_paired_trials
from brainfm.downstream.retrieval.retrieval_figure import plot_example_retrievals
from brainfm.downstream.retrieval.training import encode, seeded_init, train_contrastive
from brainfm.errors import ConfigError

__all__ = ["fit", "load_config", "test"]

_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "store": None, "embeddings": None, "pattern": None, "tmin": 0.0, "tmax": 1.0,
        "normalization": "zscore", "channel_types": None, "test_fraction": 0.2, "split_seed": 42,
        "average_test_repetitions": True,
    },
    "model": {},
    "loss": {"clip_mode": "standard"},
    "train": {"n_steps": 1000, "batch_size": 100, "lr": 3e-4, "weight_decay": 0.01, "grad_clip": 1.0, "seed": 0},
    "eval": {"k": [2, 4, 10, 50, 100, 200], "n_trials": 10_000, "seed": 42},
}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a retrieval config, fill defaults and reject unknown or missing keys.

    Parameters
    ----------
    path : str | pathlib.Path
        The YAML file.

    Returns
    -------
    config : dict
        Sections ``data``, ``model``, ``loss``, ``train``, ``eval`` and ``output``.
    """
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - {*_DEFAULTS, "output"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; allowed: {sorted({*_DEFAULTS, 'output'})}.")
    config: dict[str, Any] = {}
    model_fields = {f.name for f in dataclasses.fields(AdapterConfig)} - {"n_chans", "n_times"}
    for section, defaults in _DEFAULTS.items():
        given = raw.get(section) or {}
        allowed = model_fields if section == "model" else set(defaults)
        bad = set(given) - allowed
        if bad:
            raise ConfigError(f"{path}: unknown key(s) {sorted(bad)} in '{section}'; allowed: {sorted(allowed)}.")
        config[section] = {**defaults, **given}
    for key in ("store", "embeddings"):
        if config["data"][key] is None:
            raise ConfigError(f"{path}: data.{key} is required.")
    if not 0 < config["data"]["test_fraction"] < 1:
        raise ConfigError(f"{path}: data.test_fraction must be between 0 and 1, got {config['data']['test_fraction']}.")
    config["output"] = raw.get("output", "retrieval_run")
    base = path.parent
    for key in ("store", "embeddings"):  # relative paths are relative to the config file
        config["data"][key] = str((base / config["data"][key]).resolve()) if not Path(config["data"][key]).is_absolute() else config["data"][key]
    if not Path(config["output"]).is_absolute():
        config["output"] = str((base / config["output"]).resolve())
    return config


def _trials(config: dict[str, Any]) -> PairedTrials:
    data = config["data"]
    return load_paired_trials(
        data["store"], data["embeddings"], data["tmin"], data["tmax"], pattern=data["pattern"],
        normalization=data["normalization"], channel_types=data["channel_types"],
    )


def _split(trials: PairedTrials, fraction: float, seed: int) -> np.ndarray:
    """Rows of the held-out concepts: a seeded fraction of the concepts that have trials."""
    present = np.unique(trials.concepts)
    n_test = max(1, round(fraction * present.size))
    if n_test >= present.size:
        raise ConfigError(f"Only {present.size} concept(s) have trials; none would be left for training.")
    return np.sort(np.random.default_rng(seed).permutation(present)[:n_test])


def fit(config: dict[str, Any]) -> Path:
    """Train an adapter on the training concepts and save it with its held-out split.

    Parameters
    ----------
    config : dict
        From :func:`load_config`.

    Returns
    -------
    checkpoint : pathlib.Path
        ``<output>/model.pt``.
    """
    trials = _trials(config)
    test_rows = _split(trials, config["data"]["test_fraction"], config["data"]["split_seed"])
    train = ~np.isin(trials.concepts, test_rows)
    model_args = {k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items()}
    adapter_config = AdapterConfig(n_chans=trials.signals.shape[1], n_times=trials.signals.shape[2], **model_args)
    if adapter_config.out_dim != trials.embeddings.features.shape[1]:
        adapter_config = dataclasses.replace(adapter_config, out_dim=trials.embeddings.features.shape[1])
    train_args = config["train"]
    model = seeded_init(lambda: ModalityAdapter(adapter_config), seed=train_args["seed"])
    loss = ContrastiveLoss(config["loss"]["clip_mode"])
    logger.info("training on %d trials of %d concepts; %d concepts held out", train.sum(), np.unique(trials.concepts[train]).size, test_rows.size)
    losses = train_contrastive(
        model, loss, torch.from_numpy(trials.signals[train]),
        torch.from_numpy(trials.embeddings.features[trials.concepts[train]]),
        n_steps=train_args["n_steps"], batch_size=train_args["batch_size"], lr=train_args["lr"],
        weight_decay=train_args["weight_decay"], grad_clip=train_args["grad_clip"], seed=train_args["seed"],
    )
    output = Path(config["output"])
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / "model.pt"
    torch.save(
        {
            "brainfm_version": __version__,
            "adapter_config": dataclasses.asdict(adapter_config),
            "state_dict": model.state_dict(),
            "loss_state": loss.state_dict(),
            "clip_mode": loss.clip_mode,
            "test_concepts": [trials.embeddings.ids[r] for r in test_rows],
            "losses": losses,
        },
        checkpoint,
    )
    (output / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return checkpoint


def test(config: dict[str, Any], checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a fitted adapter on the held-out concepts; write results and an example figure.

    Parameters
    ----------
    config : dict
        From :func:`load_config`.
    checkpoint : str | pathlib.Path | None
        The checkpoint; None uses ``<output>/model.pt``.

    Returns
    -------
    results : dict
        ``{"n_concepts", "n_trials", "clip_mode", "k": {k: {"top1", "top5"}}}``.
    """
    output = Path(config["output"])
    checkpoint = Path(checkpoint) if checkpoint is not None else output / "model.pt"
    state = torch.load(checkpoint, weights_only=True)
    adapter_args = {k: tuple(v) if isinstance(v, list) else v for k, v in state["adapter_config"].items()}
    model = ModalityAdapter(AdapterConfig(**adapter_args))
    model.load_state_dict(state["state_dict"])
    trials = _trials(config)
    row_of = {c: r for r, c in enumerate(trials.embeddings.ids)}
    test_rows = np.array([row_of[c] for c in state["test_concepts"]])
    held = np.isin(trials.concepts, test_rows)
    features = encode(model, torch.from_numpy(trials.signals[held]))
    concepts = trials.concepts[held]
    if config["data"]["average_test_repetitions"]:
        rows = np.unique(concepts)
        features = np.stack([features[concepts == r].mean(axis=0) for r in rows])
        concepts = rows
    targets = trials.embeddings.features[concepts]
    results: dict[str, Any] = {
        "n_concepts": int(np.unique(concepts).size), "n_items": int(len(concepts)),
        "clip_mode": state["clip_mode"], "k": {},
    }
    metric = "cosine" if state["clip_mode"] == "standard" else "dot"
    for k in config["eval"]["k"]:
        if k <= len(concepts):
            results["k"][int(k)] = k_way_accuracy(features, targets, k, config["eval"]["n_trials"], seed=config["eval"]["seed"], metric=metric)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| k | top-1 | top-5 |", "|---|---|---|"]
    for k, r in results["k"].items():
        top5 = "-" if r["top5"] is None else f"{100 * r['top5']:.2f}"
        lines.append(f"| {k} | {100 * r['top1']:.2f} | {top5} |")
    (output / "results.md").write_text("\n".join(lines) + "\n")
    if config["data"]["average_test_repetitions"]:  # one gallery row per query
        names = [trials.embeddings.ids[r] for r in concepts]
        plot_example_retrievals(features, targets, names, output / "examples.png", metric=metric)
    return results
