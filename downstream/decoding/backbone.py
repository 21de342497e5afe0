"""A pretrained model from a brainfm checkpoint, seen through the shared interface: ``features(batch) -> (B, N, D)``.

:func:`load_backbone` uses ``brainfm.checkpoint.load_model`` (``PretrainedModel``) when this
brainfm has it; otherwise it rebuilds the checkpoint's tokenizer and uses its
``features(batch)``, or, for a BrainTokenizer, its quantised latents ``tokenize(batch)``
(B, 16, W, dim) read as N = 16 x W tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
    source : "quantised" | "latents"
        ``quantised``: the model's ``features(batch)``; ``latents``: a tokenizer-only BrainTokenizer's
        latents before the quantiser's L2 normalisation and codebooks (``encode_latents``), same shape.
    """

    def __init__(self, model: nn.Module, info: Any, source: Literal["quantised", "latents"] = "quantised") -> None:
        super().__init__()
        self.model = model
        self.info = info
        self.source = source
        if source == "latents" and self._latent_encoder() is None:
            raise ConfigError(f"features: latents needs a tokenizer-only BrainTokenizer checkpoint, got a "
                              f"{type(model).__name__}; use features: quantised.")

    def _latent_encoder(self) -> nn.Module | None:
        """The tokenizer whose ``encode_latents`` gives the unquantised latents, if the model is one."""
        tokenizer = getattr(self.model, "tokenizer", self.model)
        if getattr(self.model, "backbone", None) is not None or not hasattr(tokenizer, "encode_latents"):
            return None
        return tokenizer

    def with_source(self, source: Literal["quantised", "latents"]) -> FeatureBackbone:
        """The same model (shared, not copied) read through another feature source."""
        return self if source == self.source else FeatureBackbone(self.model, self.info, source)

    def features(self, batch: Batch) -> torch.Tensor:
        """Token features (B, N, D)."""
        if self.source == "latents":
            latents, _, _ = self._latent_encoder().encode_latents(batch)  # type: ignore[union-attr]
            return latents.flatten(1, 2)  # (B, n_latents * W', D), latent channel major like the features
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
