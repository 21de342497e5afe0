"""A pretrained backbone and a classification head, trained together or with the backbone frozen.

``BackboneClassifier`` is what probes, full fine-tuning and LoRA share (``brainfm evaluate``'s
``probe``/``finetune`` models and ``brainfm finetune``): the checkpoint's ``features(batch)``
(B, N, D) go through a :class:`~brainfm.downstream.decoding.heads.ClassificationHead`.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from brainfm.downstream.decoding.backbone import FeatureBackbone
from brainfm.downstream.decoding.frozen_outputs import OutputStore, cache_frozen_outputs
from brainfm.downstream.decoding.lora import apply_lora
from brainfm.downstream.decoding.optim import freeze_parameters
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch

__all__ = ["ADAPTATIONS", "BackboneClassifier"]

#: How the backbone is adapted: not at all (a probe), every weight, or LoRA updates of its attention.
ADAPTATIONS = ("frozen", "full", "lora")


class BackboneClassifier(nn.Module):
    """A backbone (a private copy) and a head.

    Parameters
    ----------
    backbone : FeatureBackbone
        The pretrained model; it is copied, so the caller's stays as it was.
    head : torch.nn.Module
        (B, N, D) features -> (B, n_outputs) logits.
    adaptation : "frozen" | "full" | "lora"
        frozen: only the head trains (a probe); full: every weight; lora: the head and LoRA updates
        of the attention projections (:func:`~brainfm.downstream.decoding.lora.apply_lora`).
    rank : int
        Rank of the LoRA updates.
    frozen_outputs : OutputStore | None
        With ``lora``: remember the outputs of the backbone's frozen parts here (shared by every
        copy; :mod:`~brainfm.downstream.decoding.frozen_outputs`), so later epochs and other
        classifiers of the same checkpoint reuse them. None computes them at every step.
    freeze : list of str | None
        With ``full``: :func:`fnmatch.fnmatchcase` patterns on the backbone's parameter names kept
        frozen (BaRISTA's protocol freezes its tokenizer: ``"*.temporal_encoder.*"``,
        ``"*.temporal_pooler.*"``, ``"*.spatial_embeddings.*"``); a pattern matching nothing is an error.
    """

    def __init__(self, backbone: FeatureBackbone, head: nn.Module, adaptation: Literal["frozen", "full", "lora"] = "full",
                 rank: int = 4, frozen_outputs: OutputStore | None = None, freeze: list[str] | None = None) -> None:
        super().__init__()
        if adaptation not in ADAPTATIONS:
            raise ValueError(f"Invalid value for the 'adaptation' parameter. Allowed values are {ADAPTATIONS}, "
                             f"but got {adaptation!r} instead.")
        self.backbone = copy.deepcopy(backbone)
        self.adaptation = adaptation
        if adaptation == "frozen":
            self.backbone.requires_grad_(False)
        elif adaptation == "lora":
            wrapped = apply_lora(self.backbone, rank)
            if not wrapped:
                raise ValueError("The backbone has no attention projection for LoRA; use adaptation: full.")
            if frozen_outputs is not None:
                cache_frozen_outputs(self.backbone, frozen_outputs)
        if freeze:
            if adaptation != "full":
                raise ConfigError(f"freeze patterns apply to adaptation 'full', not {adaptation!r}.")
            freeze_parameters(self.backbone, list(freeze))
        self.head = head

    def train(self, mode: bool = True) -> BackboneClassifier:
        """Train the head; the backbone stays in evaluation mode (no masking, noise or codebook updates)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, batch: Batch) -> torch.Tensor:
        """(B, n_outputs) logits of a batch."""
        if self.adaptation == "frozen":
            with torch.no_grad():
                features = self.backbone.features(batch)  # (B, N, D)
            return self.head(features.float())
        return self.head(self.backbone.features(batch))
