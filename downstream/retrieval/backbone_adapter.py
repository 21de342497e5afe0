"""A brainfm pretrained model as the retrieval adapter of a modality (issue 12 item 2).

Instead of the Medformer adapter, any model written by ``brainfm pretrain fit`` can map EEG or
MEG trials into the concept space. It is loaded through the checkpoint API
(``brainfm.checkpoint``; downstream never imports ``brainfm.pretrain``) and answers
``features(batch) -> (B, N, D)``; a small head pools the N token features and projects them:

    batch (B, C, T)  -> pretrained.features   (B, N, D)     frozen (evaluation mode, no gradients)
                                                             or fine-tuned
                     -> pool over N            (B, D)        mean, or one learned attention query
                     -> LayerNorm, dropout, Linear(D -> out_dim)   (B, out_dim)

A tokenizer-only checkpoint works too: its tokenizer's features are used (BrainTokenizer:
the quantised latents, ``(B, C' x steps, D)``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from brainfm._check import check_option
from brainfm.checkpoint import PretrainedModel, load_model
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch

__all__ = ["BackboneAdapter", "load_pretrained"]


def load_pretrained(path: str | Path) -> PretrainedModel:
    """Load a pretrained brainfm model that answers ``features(batch)`` and ``feature_dim``.

    Parameters
    ----------
    path : str | pathlib.Path
        A checkpoint written by ``brainfm pretrain fit`` (read with ``weights_only=True`` and
        verified against its recorded digest).

    Returns
    -------
    model : PretrainedModel
        In evaluation mode, with ``.info`` (what the checkpoint records).
    """
    model = load_model(path)
    try:
        model.feature_dim  # noqa: B018 (a tokenizer without token features raises here)
    except NotImplementedError as exc:
        raise ConfigError(
            f"{path}: its model gives no token features ({exc}); use a BrainTokenizer or foundation-model "
            "checkpoint as a retrieval backbone."
        ) from exc
    return model


class BackboneAdapter(nn.Module):
    """Pooled, projected token features of a pretrained brainfm model.

    Parameters
    ----------
    checkpoint : str | pathlib.Path
        The pretrained model's checkpoint.
    out_dim : int
        Concept-space width.
    freeze : bool
        Keep the pretrained weights fixed and in evaluation mode (only the head trains);
        False fine-tunes them.
    pooling : {"mean", "attention"}
        Mean of the token features, or a softmax-weighted sum scored by one learned query.
    dropout : float
        Dropout before the projection.
    sfreq : float | None
        Sampling rate of the trials; refused when the model was pretrained at another rate.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        out_dim: int,
        freeze: bool = True,
        pooling: Literal["mean", "attention"] = "mean",
        dropout: float = 0.1,
        sfreq: float | None = None,
    ) -> None:
        super().__init__()
        check_option("pooling", pooling, ("mean", "attention"))
        self.pretrained = load_pretrained(checkpoint)
        facts = getattr(self.pretrained.info, "data", None)
        if sfreq is not None and facts is not None and abs(facts.sfreq - sfreq) > 1e-6:
            raise ConfigError(
                f"{checkpoint} was pretrained at {facts.sfreq:g} Hz but the trials are at {sfreq:g} Hz; "
                "preprocess the store at the model's rate (the recipe it was pretrained with)."
            )
        self.checkpoint, self.freeze, self.pooling, self.dropout = str(checkpoint), bool(freeze), pooling, float(dropout)
        self.out_dim = int(out_dim)
        dim = int(self.pretrained.feature_dim)
        if self.freeze:
            self.pretrained.requires_grad_(False)
        self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim)) if pooling == "attention" else None
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, self.out_dim))
        self.train()

    def train(self, mode: bool = True) -> BackboneAdapter:
        """Set training mode; a frozen pretrained model stays in evaluation mode."""
        super().train(mode)
        self.pretrained.train(mode and not self.freeze)
        return self

    def forward(self, batch: Batch) -> torch.Tensor:
        """Concept-space features (B, out_dim) of a batch of trials."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            tokens = self.pretrained.features(batch)  # (B, N, D)
        if self.query is None:
            pooled = tokens.mean(dim=1)  # (B, D)
        else:
            weights = torch.softmax(tokens @ self.query / math.sqrt(tokens.shape[-1]), dim=1)  # (B, N)
            pooled = torch.einsum("bn,bnd->bd", weights, tokens)  # (B, D)
        return self.head(pooled)
