"""Decoding tasks as data: ``configs/downstream/<task>.yaml`` parsed into typed dataclasses.

A task names the store, which recordings to use, where the labels come from (event
descriptions through a mapping, or one label per recording from an identity field or the
source path), the window, the classes, the protocol and the models to compare. A new
dataset is a new YAML file, never new code. Example (``configs/downstream/eegmat_arithmetic.yaml``)::

    name: eegmat_arithmetic
    store: stores/eegmat
    classes: [rest, arithmetic]
    labels:
      recording: {field: task, mapping: {"1": rest, "2": arithmetic}}
    window: {window_s: 4.0}
    protocol: {name: cross_subject, n_folds: 5, seeds: [0, 1, 2]}
    baselines: [bandpower_lr, tangent_lr]

Every key is checked against the dataclasses below: a misspelt key is refused with the
closest allowed one ("Did you mean ...?"), a wrong type or option with what was expected
(jsonargparse validates the values against the typed fields).
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
from brainfm.errors import ConfigError

__all__ = [
    "BASELINES",
    "PROTOCOLS",
    "DecodingTask",
    "LabelConfig",
    "ModelConfig",
    "ProtocolConfig",
    "RecordingLabelConfig",
    "WindowConfig",
    "load_task",
]

#: Protocols of ``brainfm evaluate``.
PROTOCOLS = ("within_session", "cross_run", "cross_subject")
#: Classical baselines (:mod:`brainfm.downstream.decoding.baselines`).
BASELINES = ("bandpower_lr", "tangent_lr", "csp_lda", "cca")


@dataclass
class RecordingLabelConfig:
    """One label per recording, read from its identity or source path."""

    field: str
    """Identity field (dataset, subject, session, task, acquisition, run), source field (path,
    relpath, format) or ``id``."""
    mapping: dict[str, str]
    """Value (or the pattern's first group) -> class name."""
    pattern: str | None = None
    """Regular expression searched in the field's value (None: the value itself)."""
    on_missing: Literal["raise", "warn", "ignore"] = "ignore"
    """Recordings without a label: refuse, or leave out with a warning or silently."""


@dataclass
class LabelConfig:
    """Where labels come from: exactly one of ``events`` or ``recording``."""

    events: dict[str, str] | None = None
    """Event description -> class name (event-locked windows: ``window.tmin``/``tmax``)."""
    recording: RecordingLabelConfig | None = None
    """One label per recording (fixed windows: ``window.window_s``)."""


@dataclass
class WindowConfig:
    """The trial window: event-locked (``tmin``, ``tmax``) or fixed (``window_s``, ``stride_s``)."""

    tmin: float | None = None
    """Start relative to the event onset, in seconds."""
    tmax: float | None = None
    """End relative to the event onset, in seconds (excluded)."""
    window_s: float | None = None
    """Fixed window length in seconds."""
    stride_s: float | None = None
    """Seconds between fixed windows (None: ``window_s``, no overlap)."""
    prune_overlap: list[str] = field(default_factory=list)
    """Classes whose windows are made disjoint: in time order within each recording, a window of one
    of these classes that overlaps an earlier kept window of these classes is dropped (BaRISTA's
    positives, spec §4.6: ``[sentence_onset]``)."""


@dataclass
class ProtocolConfig:
    """How trials are split into training and test folds."""

    name: Literal["within_session", "cross_run", "cross_subject"] = "cross_subject"
    """within_session: k-fold over the trials of each session; cross_run: leave one run out
    within each subject; cross_subject: leave one subject out or k folds grouped by subject."""
    n_folds: int | None = 5
    """Folds (within_session, cross_subject); None with cross_subject: leave one subject out."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: each reshuffles the folds (where they are random) and reseeds every model."""
    val_fraction: float = 0.2
    """Share of each training fold's units held out as validation by models that need it
    (early stopping, learning-rate choice); never the test fold (``split: kfold``)."""
    split: Literal["kfold", "random", "chronological"] = "kfold"
    """within_session only: ``kfold`` (n_folds folds, validation from each training fold), or one
    training/validation/test split per session by ``fractions``: ``random`` (seeded by each seed,
    stratified by class) or ``chronological`` (in time order, the same for every seed). Windows that
    overlap in time stay on one side."""
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """Training, validation and test shares of ``split: random | chronological`` (summing to 1)."""
    balance: Literal["none", "subsample"] = "none"
    """``subsample``: within each session the larger classes are subsampled (seeded by each seed) to
    the size of the smallest before splitting (BaRISTA's class balancing); ``none``: every trial."""


@dataclass
class ModelConfig:
    """A deep or foundation model compared with the baselines."""

    name: str
    """Name in the results table."""
    kind: Literal["zero_shot", "probe", "finetune", "scratch"]
    """zero_shot: frozen features averaged over tokens -> z-score -> logistic regression;
    probe: a trained head on frozen features; finetune: head and backbone (or LoRA) trained;
    scratch: an architecture trained from scratch on the signal."""
    checkpoint: str | None = None
    """A brainfm checkpoint (zero_shot, probe, finetune)."""
    architecture: Literal["eegnet", "functional"] | None = None
    """From-scratch network (scratch)."""
    head: Literal["linear", "mlp"] = "linear"
    """Classification head on the features (probe, finetune)."""
    pooling: Literal["mean", "cls", "flatten", "weighted"] = "mean"
    """How the (B, N, D) features become one vector: mean over tokens, the first token, all of them
    flattened, or a learned weight per token (``weighted``, BaRISTA's readout; one montage)."""
    adaptation: Literal["full", "lora"] = "full"
    """finetune: every weight, or LoRA on the attention projections."""
    lora_rank: int = 4
    """Rank of the LoRA updates."""
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-4])
    """Learning rates tried; the one with the best validation balanced accuracy is kept."""
    max_epochs: int = 30
    """Upper bound on training epochs."""
    patience: int = 5
    """Stop after this many epochs without a better validation balanced accuracy."""
    batch_size: int = 32
    """Trials per step."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    head_lr: float | None = None
    """Learning rate of the new head while the backbone trains at ``lrs`` (None: the same);
    BaRISTA's protocol: 1e-3 against 1e-4."""
    schedule: Literal["constant", "ramp_decay"] = "constant"
    """Per-epoch learning-rate factor: constant, or a linear ramp 0.2x -> 1x over 5 epochs then
    x0.99 per epoch (BaRISTA's protocol)."""
    select_on: Literal["balanced_accuracy", "auroc"] = "balanced_accuracy"
    """Validation metric that picks the learning rate and the epoch and drives early stopping
    (``auroc``: ROC-AUC of the class-1 probability, binary tasks)."""
    freeze: list[str] = field(default_factory=list)
    """finetune with ``adaptation: full``: fnmatch patterns on the backbone's parameter names kept
    frozen (BaRISTA's tokenizer: ``"*.temporal_encoder.*"``, ``"*.temporal_pooler.*"``,
    ``"*.spatial_embeddings.*"``)."""
    features: Literal["quantised", "latents"] = "quantised"
    """What the checkpoint gives: its ``features(batch)`` (a BrainTokenizer's quantised latents), or, for
    a tokenizer-only BrainTokenizer, its latents before the quantiser's L2 normalisation (``latents``,
    which keep their magnitude)."""
    align: Literal["none", "signal", "features"] = "none"
    """Per-subject alignment from each subject's own trials, never labels
    (:mod:`~brainfm.downstream.decoding.alignment`): ``signal``, Euclidean alignment of the input
    (any kind); ``features``, the frozen features standardised per subject (zero_shot, probe)."""


@dataclass
class DecodingTask:
    """A decoding task: data, labels, window, classes, protocol and models."""

    name: str
    """Task name (results and output files)."""
    classes: list[str]
    """Class names; the label of a class is its position in this list."""
    labels: LabelConfig
    """Where labels come from."""
    window: WindowConfig
    """The trial window."""
    store: str | None = None
    """The store (``--store`` overrides it); a relative path is relative to the current folder."""
    description: str = ""
    """One line on what is decoded."""
    select: dict[str, list[str]] = field(default_factory=dict)
    """Identity field -> allowed values (e.g. ``{run: ["04", "08", "12"]}``)."""
    channel_types: list[str] = field(default_factory=lambda: ["eeg"])
    """Channel types to load."""
    normalization: Literal["zscore", "robust", "sensortype", "window", "none"] = "zscore"
    """Load-time normalisation from the store's per-channel statistics, or ``window``: each
    channel z-scored within its trial window (BaRISTA's per-segment z-score)."""
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    """The evaluation protocol."""
    baselines: list[str] = field(default_factory=lambda: ["bandpower_lr", "tangent_lr"])
    """Classical baselines run on the same folds (``BASELINES``); a name with the suffix ``_ea``
    (``tangent_lr_ea``) runs that baseline on trials Euclidean-aligned per subject (``align: signal``)."""
    stimulus_freqs: dict[str, float] | None = None
    """SSVEP: class name -> flicker frequency in Hz (the ``cca`` baseline)."""
    models: list[ModelConfig] = field(default_factory=list)
    """Deep and foundation models."""

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ConfigError(f"Task {self.name!r}: 'classes' needs at least two distinct names, got {self.classes}.")
        if (self.labels.events is None) == (self.labels.recording is None):
            raise ConfigError(f"Task {self.name!r}: give exactly one of labels.events or labels.recording.")
        mapping = self.labels.events if self.labels.events is not None else self.labels.recording.mapping  # type: ignore[union-attr]
        unknown = sorted(set(mapping.values()) - set(self.classes))
        if unknown:
            raise ConfigError(
                f"Task {self.name!r}: labels map to {unknown}, which are not in classes {self.classes}."
                + suggest(unknown[0], self.classes)
            )
        window = self.window
        if self.labels.events is not None and (window.tmin is None or window.tmax is None or window.window_s is not None):
            raise ConfigError(f"Task {self.name!r}: event labels need window.tmin and window.tmax (and no window_s).")
        if self.labels.recording is not None and (window.window_s is None or window.tmin is not None):
            raise ConfigError(f"Task {self.name!r}: recording labels need window.window_s (and no tmin/tmax).")
        for baseline in self.baselines:
            if baseline.removesuffix("_ea") not in BASELINES:
                raise ConfigError(
                    f"Task {self.name!r}: unknown baseline {baseline!r}; allowed: {list(BASELINES)}, each also "
                    "with '_ea' (on Euclidean-aligned trials)." + suggest(baseline, BASELINES)
                )
        if "cca" in self.baselines and not self.stimulus_freqs:
            raise ConfigError(f"Task {self.name!r}: the cca baseline needs stimulus_freqs (class -> Hz).")
        if self.protocol.n_folds is not None and self.protocol.n_folds < 2:
            raise ConfigError(f"Task {self.name!r}: protocol.n_folds must be >= 2 or null, got {self.protocol.n_folds}.")
        if not self.protocol.seeds:
            raise ConfigError(f"Task {self.name!r}: protocol.seeds needs at least one seed.")
        if not 0 < self.protocol.val_fraction < 1:
            raise ConfigError(f"Task {self.name!r}: protocol.val_fraction must be in (0, 1).")
        fractions = self.protocol.fractions
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(f"Task {self.name!r}: protocol.fractions must be three positive shares (training, "
                              f"validation, test) summing to 1, got {fractions}.")
        if self.protocol.split != "kfold" and self.protocol.name != "within_session":
            raise ConfigError(f"Task {self.name!r}: protocol.split {self.protocol.split!r} splits the trials of each "
                              f"session; it needs protocol.name within_session, not {self.protocol.name!r}.")
        unknown = sorted(set(self.window.prune_overlap) - set(self.classes))
        if unknown:
            raise ConfigError(f"Task {self.name!r}: window.prune_overlap names {unknown}, which are not in classes "
                              f"{self.classes}." + suggest(unknown[0], self.classes))
        names = [m.name for m in self.models] + list(self.baselines)
        if len(set(names)) != len(names):
            raise ConfigError(f"Task {self.name!r}: model and baseline names must be unique, got {names}.")
        for model in self.models:
            if model.kind == "scratch" and model.architecture is None:
                raise ConfigError(f"Task {self.name!r}: model {model.name!r} (scratch) needs 'architecture'.")
            if model.kind != "scratch" and model.checkpoint is None:
                raise ConfigError(f"Task {self.name!r}: model {model.name!r} ({model.kind}) needs 'checkpoint'.")
            if model.freeze and (model.kind != "finetune" or model.adaptation != "full"):
                raise ConfigError(f"Task {self.name!r}: model {model.name!r}: 'freeze' needs kind finetune with "
                                  "adaptation full.")
            if model.align == "features" and model.kind not in ("zero_shot", "probe"):
                raise ConfigError(f"Task {self.name!r}: model {model.name!r}: align 'features' standardises frozen "
                                  f"features (zero_shot, probe), not a {model.kind} model; use align 'signal'.")
            if model.select_on == "auroc" and len(self.classes) != 2:
                raise ConfigError(f"Task {self.name!r}: model {model.name!r}: select_on auroc needs two classes, "
                                  f"the task has {len(self.classes)}.")
            if not model.lrs:
                raise ConfigError(f"Task {self.name!r}: model {model.name!r} needs at least one learning rate in 'lrs'.")

    @property
    def label_of(self) -> dict[str, int]:
        """Event description or recording value -> integer label."""
        mapping = self.labels.events if self.labels.events is not None else self.labels.recording.mapping  # type: ignore[union-attr]
        return {key: self.classes.index(name) for key, name in mapping.items()}

    def to_dict(self) -> dict[str, Any]:
        """The task as plain values (saved beside results)."""
        return dataclasses.asdict(self)


def _dataclass_of(annotation: Any) -> type | None:
    """The dataclass inside ``X``, ``X | None`` or ``list[X]`` annotations, else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation  # type: ignore[return-value]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _dataclass_of(arg)
            if found is not None:
                return found
    return None


def _check_keys(value: Any, cls: type, where: str) -> None:
    """Refuse keys a dataclass does not have, suggesting the closest one (recursively)."""
    if not isinstance(value, dict):
        return
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key, item in value.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {allowed}.{suggest(key, allowed)}")
        inner = _dataclass_of(hints[key])
        if inner is None:
            continue
        items = item if isinstance(item, list) else [item]
        for i, sub in enumerate(items):
            _check_keys(sub, inner, f"{where}.{key}" + (f"[{i}]" if isinstance(item, list) else ""))


def load_task(path: str | Path, *, store: str | Path | None = None) -> DecodingTask:
    """Read and validate a task YAML.

    Parameters
    ----------
    path : str | pathlib.Path
        The YAML file.
    store : str | pathlib.Path | None
        Overrides the task's ``store`` (run the same task on another store).

    Returns
    -------
    task : DecodingTask
        The validated task; ``store`` is an absolute path.
    """
    from jsonargparse import ArgumentParser

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Task file not found: {path}. Shipped tasks live in configs/downstream/.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of task keys, got {type(raw).__name__}.")
    _check_keys(raw, DecodingTask, str(path))
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DecodingTask, "task")
    try:
        namespace = parser.parse_object({"task": raw})
        task: DecodingTask = parser.instantiate(namespace).task
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except Exception as exc:  # jsonargparse's ArgumentError / TypeError: wrong type or option
        text = " ".join(str(exc).split())
        raise ConfigError(f"{path}: {text}") from exc
    if store is not None:
        task.store = str(store)
    if task.store is None:
        raise ConfigError(f"{path}: no store given; set 'store:' in the task or pass --store STORE.")
    task.store = str(Path(task.store).expanduser().resolve())
    return task
