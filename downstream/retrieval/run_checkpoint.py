"""``model.pt`` of a retrieval run as a brainfm checkpoint (``brainfm.checkpoint``).

The file is written atomically with a digest of its weights and read back with
``torch.load(weights_only=True)``, verified, and loaded strictly (every missing, unexpected or
reshaped tensor is listed). Beside the weights (``model.*``: the adapter or the shared
projection with its frozen adapters; ``loss.*``: the logit scale) its ``"brainfm"`` entry
records, under ``"retrieval"``: the stage, the resolved run config, how to rebuild each
adapter, the contrastive mode, what was held out for testing, and the training losses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brainfm._version import __version__
from brainfm.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    atomic_save,
    load_state_strict,
    read_checkpoint,
    state_digest,
)
from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter
from brainfm.downstream.retrieval.backbone_adapter import BackboneAdapter
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.errors import CheckpointError

__all__ = ["adapter_spec", "build_adapter", "load_run_checkpoint", "save_run_checkpoint"]


def adapter_spec(adapter: nn.Module) -> dict[str, Any]:
    """How to rebuild an adapter (plain values, as the checkpoint records it)."""
    if isinstance(adapter, ModalityAdapter):
        return {"type": "medformer", "config": dataclasses.asdict(adapter.config)}
    if isinstance(adapter, BackboneAdapter):
        return {"type": "backbone", "checkpoint": adapter.checkpoint, "out_dim": adapter.out_dim,
                "freeze": adapter.freeze, "pooling": adapter.pooling, "dropout": adapter.dropout}
    raise TypeError(f"Not a retrieval adapter: {type(adapter).__name__}.")


def build_adapter(spec: dict[str, Any], where: str) -> nn.Module:
    """An untrained adapter of the shape ``spec`` (from :func:`adapter_spec`) records."""
    if spec.get("type") == "medformer":
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
        return ModalityAdapter(AdapterConfig(**config))
    if spec.get("type") == "backbone":
        if not Path(spec["checkpoint"]).is_file():
            raise CheckpointError(
                f"{where} fine-tunes the pretrained model {spec['checkpoint']}, which is needed to rebuild its "
                "architecture and is gone; restore it at that path."
            )
        return BackboneAdapter(spec["checkpoint"], spec["out_dim"], freeze=spec["freeze"], pooling=spec["pooling"],
                               dropout=spec["dropout"])
    raise CheckpointError(f"{where}: unknown adapter type {spec.get('type')!r}.")


def save_run_checkpoint(path: str | Path, model: nn.Module, loss: ContrastiveLoss, retrieval: dict[str, Any],
                        training_data: dict[str, Any]) -> Path:
    """Write a retrieval checkpoint atomically.

    Parameters
    ----------
    path : str | pathlib.Path
        ``<output>/model.pt``.
    model : torch.nn.Module
        The adapter (stage 1) or the shared projection (stage 2).
    loss : ContrastiveLoss
        Its logit scale is saved.
    retrieval : dict
        The run's facts (stage, config, adapters, clip mode, held-out ids, losses).
    training_data : dict
        Where the training trials came from, and their subjects.

    Returns
    -------
    path : pathlib.Path
    """
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state |= {f"loss.{k}": v for k, v in loss.state_dict().items()}
    meta = {
        "format_version": CHECKPOINT_FORMAT_VERSION, "brainfm_version": __version__, "kind": "retrieval",
        "retrieval": retrieval, "training_data": training_data, "state_digest": state_digest(state),
    }
    atomic_save({"state_dict": state, "brainfm": meta}, path)
    return Path(path)


def load_run_checkpoint(path: str | Path, model: nn.Module | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a retrieval checkpoint; fill ``model`` strictly when given.

    Parameters
    ----------
    path : str | pathlib.Path
        The ``model.pt``.
    model : torch.nn.Module | None
        A model of the recorded shape, to load the ``model.*`` weights into.

    Returns
    -------
    retrieval : dict
        The ``"retrieval"`` facts.
    loss_state : dict of str to Tensor
        The ``loss.*`` weights.
    """
    checkpoint = read_checkpoint(path)
    meta = checkpoint["brainfm"]
    if meta.get("kind") != "retrieval":
        raise CheckpointError(
            f"{path} is a brainfm checkpoint but not of a retrieval run (kind {meta.get('kind')!r}); "
            "give the model.pt written by 'brainfm retrieve fit'."
        )
    state = checkpoint["state_dict"]
    if model is not None:
        load_state_strict(model, {k[6:]: v for k, v in state.items() if k.startswith("model.")}, str(path))
    return dict(meta["retrieval"]), {k[5:]: v for k, v in state.items() if k.startswith("loss.")}
