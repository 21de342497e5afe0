"""Rebuilding modules from a checkpoint: classes from their recorded config, weights loaded strictly."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from brainfm.checkpoint.io import read_checkpoint
from brainfm.errors import CheckpointError
from brainfm.nn.config import Configurable, class_path_of
from brainfm.nn.data_facts import DataFacts
from brainfm.tokenizers.base import Tokenizer

__all__ = ["CheckpointInfo", "build_module", "load_state_strict", "load_tokenizer", "module_spec"]

_M = TypeVar("_M", bound=Configurable)


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself (its ``"brainfm"`` entry, typed).

    Attributes
    ----------
    path : str
        The file.
    brainfm_version : str
        Version that wrote it.
    tokenizer : dict
        ``{"class_path", "init_args"}``.
    data : DataFacts | None
        Facts of the training data.
    training_data : dict
        ``store``, ``store_format_version``, ``preprocessing`` (recipe name -> config hashes),
        ``recordings`` and ``subjects`` of the training split.
    epoch, global_step : int
        Training progress when saved.
    backbone, objective : dict
        ``{"class_path", "init_args"}`` of each (empty when the checkpoint has none).
    """

    path: str
    brainfm_version: str
    tokenizer: dict[str, Any]
    data: DataFacts | None = None
    training_data: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    global_step: int = 0
    backbone: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=dict)


def module_spec(module: Configurable) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of a configurable module (as checkpoints store it)."""
    return {"class_path": class_path_of(module), "init_args": module.get_config()}


def build_module(spec: Mapping[str, Any], base: type[_M], where: str) -> _M:
    """Instantiate a module from ``{"class_path", "init_args"}``, only brainfm classes of type ``base``.

    Parameters
    ----------
    spec : mapping
        As written by :func:`module_spec`.
    base : type
        The class it must derive from.
    where : str
        What is being built (for messages, e.g. the checkpoint path).

    Returns
    -------
    module : Configurable
        A new, untrained instance.
    """
    class_path = str(spec.get("class_path", ""))
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name.startswith("brainfm."):
        raise CheckpointError(f"{where}: refusing to build {class_path!r}; checkpoints may only name brainfm classes.")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"{where}: class {class_path!r} does not exist in this brainfm ({exc}).") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(f"{where}: {class_path!r} is not a {base.__name__}.")
    return cls.from_config(dict(spec.get("init_args") or {}))  # type: ignore[return-value]


def load_state_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Load weights, refusing any missing, unexpected or differently shaped tensor (all listed).

    Parameters
    ----------
    module : torch.nn.Module
        The module to fill.
    state_dict : mapping of str to torch.Tensor
        The weights.
    where : str
        Where they come from (for messages).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{name}: checkpoint {tuple(state_dict[name].shape)}, model {tuple(own[name].shape)}"
        for name in set(own) & set(state_dict)
        if tuple(own[name].shape) != tuple(state_dict[name].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {missing}")
        if unexpected:
            parts.append(f"not in the model: {unexpected}")
        if shapes:
            parts.append(f"shapes differ: {shapes}")
        raise CheckpointError(
            f"{where} does not fit {type(module).__name__} ({'; '.join(parts)}). The checkpoint was written "
            "for another model or configuration: use the config it was trained with."
        )
    module.load_state_dict(dict(state_dict), strict=True)


def _submodule_state(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix):]: value for name, value in state_dict.items() if name.startswith(prefix)}


def load_tokenizer(
    path: str | os.PathLike[str], expected: type[Tokenizer] | None = None, map_location: Any = "cpu"
) -> tuple[Tokenizer, CheckpointInfo]:
    """Rebuild the tokenizer of a checkpoint with its trained weights, in evaluation mode.

    Parameters
    ----------
    path : path-like
        A checkpoint written by ``brainfm pretrain fit``.
    expected : type | None
        Refuse a checkpoint whose tokenizer is not of this class.
    map_location : object
        Passed to :func:`torch.load`.

    Returns
    -------
    tokenizer : Tokenizer
        The trained tokenizer.
    info : CheckpointInfo
        What the checkpoint records.
    """
    checkpoint = read_checkpoint(path, map_location=map_location)
    meta = checkpoint["brainfm"]
    spec = meta.get("tokenizer") or {}
    if expected is not None and spec.get("class_path") != f"{expected.__module__}.{expected.__qualname__}":
        raise CheckpointError(
            f"{path} holds a {spec.get('class_path')!r} tokenizer, not the expected "
            f"{expected.__module__}.{expected.__qualname__}."
        )
    tokenizer = build_module(spec, Tokenizer, str(path))
    load_state_strict(tokenizer, _submodule_state(checkpoint["state_dict"], "tokenizer."), f"{path} (tokenizer)")
    tokenizer.eval()
    data = meta.get("data")
    info = CheckpointInfo(
        path=str(path),
        brainfm_version=str(meta.get("brainfm_version")),
        tokenizer=dict(spec),
        data=DataFacts.from_dict(data) if data else None,
        training_data=dict(meta.get("training_data") or {}),
        epoch=int(checkpoint.get("epoch", 0)),
        global_step=int(checkpoint.get("global_step", 0)),
    )
    return tokenizer, info
