"""The ``brainfm retrieve`` YAML config as typed dataclasses, validated with jsonargparse.

One config file describes one run. Stage 1 (a modality adapter) has a ``data`` section;
stage 2 (the shared projection over frozen stage-1 adapters) has a ``shared`` section instead.
Every section is a dataclass below; :func:`load_run_config` checks the YAML against them with
jsonargparse (the library behind brainfm's LightningCLI configs), so a misspelt key fails with
"Did you mean ...?", a value of the wrong type names the key, what is allowed and what arrived,
and cross-field rules live in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from brainfm._check import suggest
from brainfm.downstream.retrieval.adapter import AdapterConfig
from brainfm.errors import ConfigError

__all__ = [
    "BackboneConfig",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "RunConfig",
    "SharedConfig",
    "TrainConfig",
    "load_run_config",
]

# AdapterConfig fields a config may set: channels, samples and voxels come from the data,
# the output width from the concept embeddings.
_FROM_DATA = ("n_chans", "n_times", "n_voxels", "out_dim")


@dataclass
class DataConfig:
    """Where the trials and their concept embeddings come from (stage 1)."""

    layout: Literal["store", "things_eeg2", "things_meg"] = "store"
    """``store``: event-locked trials of a brainfm store; ``things_eeg2`` / ``things_meg``: the
    preprocessed files of those datasets (``docs/retrieval.md``)."""
    store: str | None = None
    """Store folder (layout ``store``)."""
    root: str | None = None
    """Folder with one ``sub-XX`` folder of preprocessed files per subject (THINGS layouts)."""
    images: str | None = None
    """Folder holding ``training_images/`` and ``test_images/`` (one folder per concept;
    THINGS layouts): the image and concept of every trial come from their sorted names."""
    subjects: list[str] | None = None
    """THINGS layouts: subject folders to load (None: every ``sub-*`` folder)."""
    targets: Literal["image", "concept"] = "image"
    """THINGS layouts: key of the embeddings, the image id (file name without extension, as the
    reference) or the concept name."""
    embeddings: str | None = None
    """Concept embeddings file (NPZ, NPY, HDF5) keyed by concept (or image) id."""
    text_model: str | None = None
    """Instead of ``embeddings``: a sentence-embedding model (name in the local Hugging Face cache,
    or a folder) that embeds ``text_template`` of every concept name; nothing is downloaded."""
    text_template: str = "This picture is {concept}"
    """Text embedded per concept (``{concept}`` is replaced; the reference's template)."""
    pattern: str | None = None
    """Regex with one group extracting the concept id from an event description (store)."""
    tmin: float = 0.0
    """Trial start relative to the event (s)."""
    tmax: float = 1.0
    """Trial end relative to the event (s), exclusive."""
    normalization: str = "zscore"
    """Load-time normalisation of store trials (``docs/loading.md``)."""
    channel_types: list[str] | None = None
    """Channel types loaded from a store (None: the brain channels)."""
    split: Literal["concepts", "recordings"] = "concepts"
    """Store layout: hold out a share of the concepts (never seen in training, the reference's
    protocol) or of the recordings (every concept seen, new sessions: for few-concept data)."""
    test_fraction: float = 0.2
    """Share of the concepts (or recordings) held out; THINGS layouts use their own test set."""
    split_seed: int = 42
    """Seed of the held-out draw."""
    average_test_repetitions: bool = True
    """Average a subject's test trials of one concept into one item (the reference's protocol)."""

    def __post_init__(self) -> None:
        if self.layout == "store" and self.store is None:
            raise ConfigError("data.store is required with data.layout 'store'.")
        if self.layout != "store":
            missing = [k for k in ("root", "images") if getattr(self, k) is None]
            if missing:
                raise ConfigError(f"data.{missing[0]} is required with data.layout {self.layout!r}.")
        if (self.embeddings is None) == (self.text_model is None):
            raise ConfigError("Give exactly one of data.embeddings (a file) and data.text_model (text embeddings).")
        if self.text_model is not None and self.layout != "store" and self.targets != "concept":
            raise ConfigError("data.text_model embeds concept names: set data.targets to 'concept'.")
        if "{concept}" not in self.text_template:
            raise ConfigError(f"data.text_template must contain '{{concept}}', got {self.text_template!r}.")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"data.test_fraction must be between 0 and 1, got {self.test_fraction}.")
        if self.tmax <= self.tmin:
            raise ConfigError(f"data.tmax ({self.tmax}) must be after data.tmin ({self.tmin}).")


@dataclass
class BackboneConfig:
    """A brainfm pretrained model as the adapter (``brainfm.checkpoint``)."""

    checkpoint: str
    """Checkpoint written by ``brainfm pretrain fit``."""
    freeze: bool = True
    """Keep the pretrained weights fixed (only the pooling head trains); False fine-tunes them."""
    pooling: Literal["mean", "attention"] = "mean"
    """How the (B, N, D) token features become one vector: their mean, or a learned attention query."""
    dropout: float = 0.1
    """Dropout before the projection to the concept space."""


@dataclass
class ModelConfig:
    """The stage-1 adapter: Medformer (``AdapterConfig`` fields) or a pretrained backbone."""

    backbone: BackboneConfig | None = None
    """Use a brainfm pretrained model instead of the Medformer adapter."""
    medformer: dict[str, Any] = field(default_factory=dict)
    """``AdapterConfig`` fields of the Medformer adapter (``d_model``, ``patch_lens``, ...); the
    defaults are the reference's sizes."""

    def __post_init__(self) -> None:
        if self.backbone is not None and self.medformer:
            raise ConfigError(
                f"model.medformer ({sorted(self.medformer)}) configures the Medformer adapter, which "
                "model.backbone replaces; remove one of them."
            )
        hints = typing.get_type_hints(AdapterConfig)
        allowed = [f.name for f in dataclasses.fields(AdapterConfig) if f.name not in _FROM_DATA]
        for key, value in self.medformer.items():
            if key not in allowed:
                hint = " It comes from the data." if key in _FROM_DATA else suggest(key, allowed)
                raise ConfigError(f"'model.medformer' has no key {key!r}.{hint} Its keys are {allowed}.")
            self.medformer[key] = _check_value(f"model.medformer.{key}", hints[key], value)


@dataclass
class SharedConfig:
    """Stage 2: the shared projection over frozen stage-1 adapters."""

    adapters: dict[str, str]
    """Modality name -> the config file of its stage-1 run (its data, and its ``model.pt``)."""
    n_experts: int = 5
    """Linear experts of the soft mixture."""
    router_hidden: int = 2048
    """Hidden width of the router."""
    frozen_adapters_train_mode: bool = False
    """Leave the frozen adapters in training mode, as the reference does."""
    n_epochs: int = 150
    """Passes over every modality's training trials (the reference: 150)."""

    def __post_init__(self) -> None:
        if not self.adapters:
            raise ConfigError("shared.adapters is empty; name at least one stage-1 run per modality.")


@dataclass
class LossConfig:
    """The contrastive loss."""

    clip_mode: Literal["standard", "brainflora"] = "standard"
    """``standard``: normalised features, exp(learned scale); ``brainflora``: the reference's parity."""


@dataclass
class TrainConfig:
    """Optimisation."""

    n_steps: int = 1000
    """Optimiser steps of stage 1 (stage 2 counts ``shared.n_epochs``)."""
    batch_size: int | None = None
    """Items per batch; None: 100 in stage 1 and 250 in stage 2 (the reference)."""
    lr: float = 3e-4
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    seed: int = 0
    """Seed of the initialisation, batch order, dropout and augmentations."""

    def __post_init__(self) -> None:
        if self.n_steps < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ConfigError(f"train.n_steps and train.batch_size must be positive, got {self.n_steps}, {self.batch_size}.")


@dataclass
class EvalConfig:
    """k-way evaluation (spec §6)."""

    k: list[int] = field(default_factory=lambda: [2, 4, 10, 50, 100, 200])
    """Candidates per trial; values above the number of test items are skipped."""
    n_trials: int = 10_000
    """Sampled trials per k."""
    seed: int = 42
    """Seed of the distractor draws."""

    def __post_init__(self) -> None:
        if not self.k or min(self.k) < 2:
            raise ConfigError(f"eval.k must list values of at least 2, got {self.k}.")


@dataclass
class RunConfig:
    """One ``brainfm retrieve`` run: stage 1 (``data``) or stage 2 (``shared``)."""

    data: DataConfig | None = None
    """Stage 1: the trials and embeddings."""
    shared: SharedConfig | None = None
    """Stage 2: the shared projection over stage-1 runs."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Stage 1: the adapter."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The contrastive loss."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    output: str = "retrieval_run"
    """Run folder (``model.pt``, ``config.yaml``, results)."""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.shared is None):
            raise ConfigError(
                "A retrieval config has either a 'data' section (stage 1: one modality adapter) or a "
                "'shared' section (stage 2: the shared projection over stage-1 runs), not both or neither."
            )
        if self.shared is not None and (self.model.backbone is not None or self.model.medformer):
            raise ConfigError("'model' configures a stage-1 adapter; a stage-2 ('shared') config takes none.")

    @property
    def stage(self) -> Literal["adapter", "shared"]:
        """``adapter`` (stage 1) or ``shared`` (stage 2)."""
        return "adapter" if self.data is not None else "shared"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain values (as saved in ``config.yaml`` and the checkpoint)."""
        return dataclasses.asdict(self)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if args:
        return " or ".join(_describe(a) for a in args) if origin in (typing.Union, types.UnionType) else str(hint)
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _check_value(where: str, hint: Any, value: Any) -> Any:
    """``value`` converted to ``hint`` by jsonargparse, or a ConfigError naming ``where``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--value", type=hint)
    try:
        return parser.parse_object({"value": value}).value
    except Exception:
        suggestion = suggest(str(value), typing.get_args(hint)) if isinstance(value, str) else ""
        raise ConfigError(
            f"Invalid value for '{where}'. Allowed values are {_describe(hint)}, but got {value!r} instead.{suggestion}"
        ) from None


def _dataclass_of(hint: Any) -> type | None:
    for member in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(member):
            return member  # type: ignore[return-value]
    return None


def _build(cls: type, given: Any, where: str) -> Any:
    """Instantiate the dataclass ``cls`` from YAML values: unknown keys get the closest field,
    values are checked and converted by jsonargparse, nested sections recurse."""
    label = f"'{where}'" if where else "the top level"
    if not isinstance(given, dict):
        raise ConfigError(f"{label} must be a mapping of keys to values, but got {given!r} instead.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in given.items():
        if key not in names:
            raise ConfigError(f"{label} has no key {key!r}.{suggest(str(key), names)} Its keys are {names}.")
        path = f"{where}.{key}" if where else key
        nested = _dataclass_of(hints[key])
        if nested is not None and isinstance(value, dict):
            kwargs[key] = _build(nested, value, path)
        else:
            kwargs[key] = _check_value(path, hints[key], value)
    return cls(**kwargs)


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a ``brainfm retrieve`` config; relative paths become relative to the file.

    Parameters
    ----------
    path : str | pathlib.Path
        The YAML file.

    Returns
    -------
    config : RunConfig
        Validated, with absolute paths.

    Raises
    ------
    brainfm.errors.ConfigError
        An unknown key (with the closest allowed one), a value of the wrong type or range, or
        sections that do not fit together; the message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Retrieval config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, model, loss, train, eval, output).")
    try:
        config: RunConfig = _build(RunConfig, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = path.parent.resolve()

    def absolute(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        return str((base / value).resolve())

    if config.data is not None:
        for key in ("store", "root", "images", "embeddings"):
            setattr(config.data, key, absolute(getattr(config.data, key)))
        text_model = config.data.text_model
        if text_model is not None and (base / text_model).exists():  # a local model folder
            config.data.text_model = absolute(text_model)
    if config.model.backbone is not None:
        config.model.backbone.checkpoint = absolute(config.model.backbone.checkpoint)
    if config.shared is not None:
        config.shared.adapters = {m: absolute(p) for m, p in config.shared.adapters.items()}
    config.output = absolute(config.output)
    return config
