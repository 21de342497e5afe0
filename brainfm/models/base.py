"""The model interface every pretrained brainfm model answers (DESIGN §3).

A recipe composes a tokenizer (may be None), a :class:`Backbone` and an :class:`Objective`;
``brainfm.pretrain``'s one Lightning module trains whatever it composes. Everything downstream
(``brainfm embed``, probes, fine-tuning, LoRA, zero-shot decoding, retrieval adapters) is written
once against :meth:`Backbone.features`, reached through
:func:`brainfm.checkpoint.load_model` (``PretrainedModel.features``).
"""

from __future__ import annotations

from typing import Any

import torch

from brainfm.loading.batch import Batch
from brainfm.nn.config import Configurable
from brainfm.nn.data_facts import DataFacts
from brainfm.tokenizers.base import Tokenizer

__all__ = ["Backbone", "Objective"]


class Backbone(Configurable):
    """A foundation model's network, from a batch (and its tokenizer) to token features.

    Subclasses implement :attr:`feature_dim` and :meth:`features`; generative ones also
    :meth:`generate`. Constructor arguments are plain values (recorded for checkpoints).
    """

    #: Whether :meth:`generate` is implemented.
    generative: bool = False

    @property
    def feature_dim(self) -> int:
        """Width D of :meth:`features`."""
        raise NotImplementedError

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None) -> None:
        """Refuse data (or a tokenizer) this backbone cannot use, naming the recordings; nothing by default.

        Parameters
        ----------
        facts : DataFacts
            The training data's facts.
        tokenizer : Tokenizer | None
            The recipe's tokenizer.
        """

    def features(self, batch: Batch, tokenizer: Tokenizer | None = None) -> torch.Tensor:
        """Token features for downstream use.

        Parameters
        ----------
        batch : Batch
            The windows.
        tokenizer : Tokenizer | None
            The model's (frozen) tokenizer, when it has one.

        Returns
        -------
        features : torch.Tensor, shape (B, N, D)
            N tokens of width :attr:`feature_dim` per window (the model documents their order).
        """
        raise NotImplementedError

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Generate data (generative backbones only)."""
        raise NotImplementedError(f"{type(self).__name__} is not generative.")


class Objective(Configurable):
    """A pretraining objective: ``objective(batch, tokenizer=..., backbone=...) -> {"loss": ..., ...}``.

    Subclasses implement :meth:`forward`; every returned term is logged, ``"loss"`` is minimised.
    Objectives may hold trainable heads (they are saved with the checkpoint).
    """

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None, backbone: Backbone | None) -> None:
        """Refuse data this objective cannot train on; nothing by default."""

    def forward(self, batch: Batch, tokenizer: Tokenizer | None = None,
                backbone: Backbone | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch (``"loss"``: the total)."""
        raise NotImplementedError
