"""``FrozenTokenizer``: a trained tokenizer from a checkpoint, frozen, as a stage-2 recipe's tokenizer.

YAML of a foundation-model recipe::

    model:
      tokenizer:
        class_path: brainfm.checkpoint.FrozenTokenizer
        init_args: {checkpoint: runs/tokenizer/last.ckpt}

Its weights are saved inside the stage-2 checkpoint and its config records the inner
tokenizer's class and arguments, so the stage-2 checkpoint rebuilds without the tokenizer file.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from brainfm.checkpoint.load import build_module, load_tokenizer, module_spec
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.nn.data_facts import DataFacts
from brainfm.tokenizers.base import Tokenizer

__all__ = ["FrozenTokenizer"]


class FrozenTokenizer(Tokenizer):
    """A trained tokenizer that is never trained further (no gradients, always in evaluation mode).

    Parameters
    ----------
    checkpoint : str | None
        A checkpoint written by ``brainfm pretrain fit`` for a tokenizer recipe.
    tokenizer : dict | None
        ``{"class_path", "init_args"}`` of the inner tokenizer; given when a stage-2 checkpoint is
        rebuilt (the weights then come from that checkpoint and ``checkpoint`` is not read).
    training_data : dict | None
        The tokenizer checkpoint's training record (recordings and subjects it saw), kept so that
        the leakage guard of downstream evaluation covers the tokenizer too.
    """

    def __init__(self, checkpoint: str | None = None, tokenizer: dict[str, Any] | None = None,
                 training_data: dict[str, Any] | None = None) -> None:
        super().__init__()
        if tokenizer is not None:
            inner = build_module(tokenizer, Tokenizer, f"frozen tokenizer of {checkpoint or 'a checkpoint'}")
        elif checkpoint is not None:
            if not os.path.isfile(checkpoint):
                raise ConfigError(f"The tokenizer checkpoint {checkpoint!r} does not exist: train one with "
                                  "'brainfm pretrain fit --recipe <tokenizer recipe>' and give its path.")
            inner, info = load_tokenizer(checkpoint)
            training_data = info.training_data
        else:
            raise ConfigError("FrozenTokenizer needs 'checkpoint' (a trained tokenizer's checkpoint).")
        if isinstance(inner, FrozenTokenizer):
            inner = inner.inner
        self.inner = inner
        self.checkpoint_path = None if checkpoint is None else str(checkpoint)
        self.training_data = dict(training_data or {})
        self.inner.requires_grad_(False)
        self.inner.eval()

    def get_config(self) -> dict[str, Any]:
        """The checkpoint path, the inner tokenizer's spec and its training record."""
        return {"checkpoint": self.checkpoint_path, "tokenizer": module_spec(self.inner),
                "training_data": self.training_data}

    def train(self, mode: bool = True) -> FrozenTokenizer:
        """Stay in evaluation mode (no channel dropout or noise in a frozen tokenizer)."""
        super().train(False)
        return self

    def __getattr__(self, name: str) -> Any:
        """Everything else (``tokenize``, ``n_windows``, ``quantizer``, ...) from the inner tokenizer."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    @property
    def vocab_size(self) -> int:
        """The inner tokenizer's vocabulary size."""
        return self.inner.vocab_size

    @property
    def fitted(self) -> bool:
        """Whether the inner tokenizer is fitted."""
        return self.inner.fitted

    @property
    def feature_dim(self) -> int:
        """The inner tokenizer's feature width."""
        return self.inner.feature_dim

    def check_data(self, facts: DataFacts) -> None:
        """The inner tokenizer's refusals."""
        self.inner.check_data(facts)

    @torch.no_grad()
    def encode(self, batch: Batch) -> torch.Tensor:
        """The inner tokenizer's tokens (no gradient)."""
        return self.inner.encode(batch)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The inner tokenizer's reconstruction (no gradient)."""
        return self.inner.decode(tokens, batch)

    @torch.no_grad()
    def features(self, batch: Batch) -> torch.Tensor:
        """The inner tokenizer's features (no gradient)."""
        return self.inner.features(batch)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Not trainable: a recipe with a frozen tokenizer needs an objective."""
        raise ConfigError("A FrozenTokenizer is not trained: give the recipe a backbone and an objective.")
