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
from brainfm.nn.data_facts import DataFacts, first_names
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
    trained_types : list of str | None
        Channel types the tokenizer was trained on (read from ``checkpoint``); data with other
        types is refused. None: not known (no refusal).
    trained_codes : list of int | None
        Sensor-type codes (EEG 0, MAG 1, GRAD 2) the tokenizer was trained on (read from
        ``checkpoint`` when it records them); data with other codes is refused, so a tokenizer
        trained on CTF axial gradiometers (GRAD) does not take Elekta magnetometers (MAG),
        although both are stored as ``"mag"``. None: not known (no refusal).
    """

    def __init__(self, checkpoint: str | None = None, tokenizer: dict[str, Any] | None = None,
                 training_data: dict[str, Any] | None = None, trained_types: list[str] | None = None,
                 trained_codes: list[int] | None = None) -> None:
        super().__init__()
        if tokenizer is not None:
            inner = build_module(tokenizer, Tokenizer, f"frozen tokenizer of {checkpoint or 'a checkpoint'}")
        elif checkpoint is not None:
            if not os.path.isfile(checkpoint):
                raise ConfigError(f"The tokenizer checkpoint {checkpoint!r} does not exist: train one with "
                                  "'brainfm pretrain fit --recipe <tokenizer recipe>' and give its path.")
            inner, info = load_tokenizer(checkpoint)
            training_data = info.training_data
            if trained_types is None and info.data is not None:
                trained_types = list(info.data.sensor_types)
            if trained_codes is None and info.data is not None and info.data.sensor_codes:
                trained_codes = info.data.codes_present()
        else:
            raise ConfigError("FrozenTokenizer needs 'checkpoint' (a trained tokenizer's checkpoint).")
        if isinstance(inner, FrozenTokenizer):
            inner = inner.inner
        self.inner = inner
        self.checkpoint_path = None if checkpoint is None else str(checkpoint)
        self.training_data = dict(training_data or {})
        self.trained_types = None if trained_types is None else sorted(trained_types)
        self.trained_codes = None if trained_codes is None else sorted(int(c) for c in trained_codes)
        self.inner.requires_grad_(False)
        self.inner.eval()

    def get_config(self) -> dict[str, Any]:
        """The checkpoint path, the inner tokenizer's spec and its training record."""
        return {"checkpoint": self.checkpoint_path, "tokenizer": module_spec(self.inner),
                "training_data": self.training_data, "trained_types": self.trained_types,
                **({"trained_codes": self.trained_codes} if self.trained_codes is not None else {})}

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
        """The inner tokenizer's refusals, and channel types the tokenizer was not trained on (naming the recordings)."""
        self.inner.check_data(facts)
        if self.trained_types is None:
            return
        unseen = set(facts.sensor_types) - set(self.trained_types)
        if unseen:
            names = facts.recordings_with(unseen)
            raise ConfigError(
                f"The tokenizer {self.checkpoint_path or ''} was trained on {self.trained_types} channels only, but the "
                f"store has {sorted(unseen)} channels in {len(names)} recordings ({first_names(names)}"
                f"). Train the tokenizer on data with those types, or select "
                f"--data.channel_types {self.trained_types}."
            )
        if self.trained_codes is None or not facts.sensor_codes:
            return
        unseen_codes = set(facts.codes_present()) - set(self.trained_codes)
        if unseen_codes:
            names = facts.recordings_with_codes(unseen_codes)
            label = {0: "EEG", 1: "MAG", 2: "GRAD"}
            raise ConfigError(
                f"The tokenizer {self.checkpoint_path or ''} was trained on sensor types "
                f"{[label.get(c, c) for c in self.trained_codes]} only, but the store has "
                f"{[label.get(c, c) for c in sorted(unseen_codes)]} channels in {len(names)} recordings "
                f"({first_names(names)}); CTF and KIT axial gradiometers count "
                "as GRAD, Elekta and other magnetometers as MAG. Train the tokenizer on data with those sensors."
            )

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
