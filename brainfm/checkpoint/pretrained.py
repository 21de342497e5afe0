"""``load_model``: any checkpoint of ``brainfm pretrain fit`` as one model with ``features(batch)``.

This is the interface everything downstream uses (``brainfm embed``, probes, fine-tuning,
zero-shot decoding, retrieval adapters, generation): it never imports ``brainfm.pretrain``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from brainfm.checkpoint.io import read_checkpoint
from brainfm.checkpoint.load import CheckpointInfo, build_module, load_state_strict
from brainfm.errors import CheckpointError
from brainfm.loading.batch import Batch
from brainfm.models.base import Backbone, Objective
from brainfm.nn.data_facts import DataFacts
from brainfm.tokenizers.base import Tokenizer

__all__ = ["PretrainedModel", "load_model"]


class PretrainedModel(nn.Module):
    """A pretrained tokenizer and/or backbone (and its objective's heads), as trained.

    Parameters
    ----------
    tokenizer : Tokenizer | None
        The recipe's tokenizer.
    backbone : Backbone | None
        The foundation model (None for a tokenizer-only checkpoint).
    objective : Objective | None
        The pretraining objective (its heads, for continued pretraining).
    info : CheckpointInfo
        What the checkpoint records (training data, versions, progress).
    """

    def __init__(self, tokenizer: Tokenizer | None, backbone: Backbone | None, objective: Objective | None,
                 info: CheckpointInfo) -> None:
        super().__init__()
        if tokenizer is None and backbone is None:
            raise CheckpointError(f"{info.path} holds neither a tokenizer nor a backbone.")
        self.tokenizer, self.backbone, self.objective = tokenizer, backbone, objective
        self.info = info

    @property
    def feature_dim(self) -> int:
        """Width D of :meth:`features` (a checkpoint without features is refused, naming it)."""
        if self.backbone is not None:
            return self.backbone.feature_dim
        try:
            return self.tokenizer.feature_dim  # type: ignore[union-attr]
        except NotImplementedError as exc:
            raise CheckpointError(f"{self.info.path}: {exc}") from None

    @property
    def generative(self) -> bool:
        """Whether :meth:`generate` works."""
        return self.backbone is not None and self.backbone.generative

    def features(self, batch: Batch) -> torch.Tensor:
        """Token features (B, N, D) of a batch: the backbone's, else the tokenizer's."""
        if self.backbone is not None:
            return self.backbone.features(batch, self.tokenizer)
        _ = self.feature_dim  # refuses a tokenizer without continuous features, naming the checkpoint
        return self.tokenizer.features(batch)  # type: ignore[union-attr]

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The backbone's ``generate``, given the tokenizer as ``tokenizer=``."""
        if self.backbone is None:
            raise CheckpointError(f"{self.info.path} holds no backbone: it cannot generate.")
        return self.backbone.generate(*args, tokenizer=self.tokenizer, **kwargs)


def load_model(path: str | os.PathLike[str], map_location: Any = "cpu") -> PretrainedModel:
    """Rebuild every module of a ``brainfm pretrain fit`` checkpoint with its weights, in evaluation mode.

    Parameters
    ----------
    path : path-like
        The checkpoint.
    map_location : object
        Passed to :func:`torch.load`.

    Returns
    -------
    model : PretrainedModel
        Tokenizer, backbone and objective as trained; ``model.info.training_data`` names the
        recordings and subjects it was trained on.
    """
    checkpoint = read_checkpoint(path, map_location=map_location)
    meta = checkpoint["brainfm"]
    where = str(path)
    tokenizer = build_module(meta["tokenizer"], Tokenizer, where) if meta.get("tokenizer") else None
    backbone = build_module(meta["backbone"], Backbone, where) if meta.get("backbone") else None
    objective = build_module(meta["objective"], Objective, where) if meta.get("objective") else None
    data = meta.get("data")
    info = CheckpointInfo(
        path=where,
        brainfm_version=str(meta.get("brainfm_version")),
        tokenizer=dict(meta.get("tokenizer") or {}),
        data=DataFacts.from_dict(data) if data else None,
        training_data=dict(meta.get("training_data") or {}),
        epoch=int(checkpoint.get("epoch", 0)),
        global_step=int(checkpoint.get("global_step", 0)),
        backbone=dict(meta.get("backbone") or {}),
        objective=dict(meta.get("objective") or {}),
    )
    model = PretrainedModel(tokenizer, backbone, objective, info)
    # a fine-tuned checkpoint (brainfm finetune) also holds its classification head: not part of the model
    skipped = ("fit_anchor", "head.") if meta.get("finetune") else ("fit_anchor",)
    state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(skipped)}
    load_state_strict(model, state, where)
    return model.eval()
