"""A pretrained model from a brainfm checkpoint, seen through the shared interface: ``features(batch) -> (B, N, D)``.

:func:`load_backbone` uses ``brainfm.checkpoint.load_model`` (``PretrainedModel``) when this
brainfm has it; otherwise it rebuilds the checkpoint's tokenizer and uses its
``features(batch)``, or, for a BrainTokenizer, its quantised latents ``tokenize(batch)``
(B, 16, W, dim) read as N = 16 x W tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch

__all__ = ["FeatureBackbone", "load_backbone"]


class FeatureBackbone(nn.Module):
    """``features(batch) -> (B, N, D)`` over a checkpoint's model, with its training record.

    Parameters
    ----------
    model : torch.nn.Module
        A ``PretrainedModel`` or a tokenizer.
    info : object
        The checkpoint's ``CheckpointInfo`` (``training_data``: recordings and subjects).
    """

    def __init__(self, model: nn.Module, info: Any) -> None:
        super().__init__()
        self.model = model
        self.info = info

    def features(self, batch: Batch) -> torch.Tensor:
        """Token features (B, N, D)."""
        if hasattr(self.model, "features"):
            return self.model.features(batch)
        features, _ = self.model.tokenize(batch)  # (B, n_latents, W, D)
        return features.flatten(1, 2)  # (B, n_latents * W, D)

    @property
    def training_data(self) -> dict[str, Any]:
        """What the checkpoint was pretrained on (``recordings``, ``subjects``, ...)."""
        return dict(getattr(self.info, "training_data", {}) or {})


def load_backbone(path: str | Path) -> FeatureBackbone:
    """Load a checkpoint as a feature extractor (evaluation mode, weights as saved).

    Parameters
    ----------
    path : str | pathlib.Path
        A checkpoint written by ``brainfm pretrain fit``.

    Returns
    -------
    backbone : FeatureBackbone
    """
    import brainfm.checkpoint as checkpoint

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Checkpoint not found: {path}. Give a file written by 'brainfm pretrain fit'.")
    load_model = getattr(checkpoint, "load_model", None)
    if load_model is not None:
        model = load_model(path)
        return FeatureBackbone(model, model.info)
    tokenizer, info = checkpoint.load_tokenizer(path)
    if not (hasattr(tokenizer, "features") or hasattr(tokenizer, "tokenize") and "Brain" in type(tokenizer).__name__):
        raise ConfigError(
            f"{path} holds a {type(tokenizer).__name__}, which gives no token features (sample tokenizers give "
            "integer tokens only). Use a BrainTokenizer or foundation-model checkpoint."
        )
    return FeatureBackbone(tokenizer, info)
