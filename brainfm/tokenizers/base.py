"""The tokenizer interface (DESIGN §3): ``encode``, ``decode`` and a training ``loss``.

Every tokenizer is an :class:`torch.nn.Module` that the training engine
(``brainfm pretrain fit``) trains through :meth:`Tokenizer.loss`, that ``brainfm tokenize``
applies through :meth:`Tokenizer.encode`, and whose constructor arguments are recorded
(:meth:`Tokenizer.get_config`) so that a checkpoint rebuilds it without unpickling objects.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.nn.config import Configurable
from brainfm.nn.data_facts import DataFacts, first_names

__all__ = ["SampleTokenizer", "Tokenizer", "percent_variance_explained"]


class Tokenizer(Configurable):
    """Base class of brainfm tokenizers.

    Subclasses implement :meth:`encode`, :meth:`decode` and :meth:`loss`, and may restrict
    :attr:`sensor_types` (channel types they can encode) or extend :meth:`check_data`.
    Constructor arguments must be plain values (numbers, strings, lists, dicts): they are
    recorded by :meth:`~brainfm.nn.config.Configurable.get_config` and saved in checkpoints.
    """

    #: Channel types this tokenizer can encode (None: any).
    sensor_types: ClassVar[tuple[str, ...] | None] = None

    #: True when the vocabulary is fixed from token counts over the training data after fitting
    #: (MEG-GPT's refactoring): the engine then sums :meth:`count_tokens_of` over the training
    #: split and calls :meth:`refactor_vocabulary` before every checkpoint it writes.
    counts_vocabulary: ClassVar[bool] = False

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids (codes per level for multi-level tokenizers)."""
        raise NotImplementedError

    @property
    def fitted(self) -> bool:
        """Whether the tokenizer can encode yet (False for a data-fitted tokenizer before it has seen data)."""
        return True

    def set_progress(self, epoch: int, max_epochs: int | None) -> None:
        """Called by the engine at the start of each training epoch (annealing schedules); nothing by default.

        Parameters
        ----------
        epoch : int
            The epoch starting (0-based).
        max_epochs : int | None
            The Trainer's ``max_epochs`` (None or -1 when unbounded).
        """

    def count_tokens_of(self, batch: Batch) -> torch.Tensor:
        """Occurrences of each token id in a batch's good channels (tokenizers with :attr:`counts_vocabulary`).

        Parameters
        ----------
        batch : Batch
            Windows.

        Returns
        -------
        counts : torch.Tensor of int64, shape (n_ids,)
        """
        raise NotImplementedError(f"{type(self).__name__} does not count tokens.")

    def refactor_vocabulary(self, counts: torch.Tensor) -> None:
        """Fix the vocabulary from token counts over the training data (tokenizers with :attr:`counts_vocabulary`).

        Parameters
        ----------
        counts : torch.Tensor, shape (n_ids,)
            Summed :meth:`count_tokens_of` over the training split.
        """
        raise NotImplementedError(f"{type(self).__name__} has no vocabulary to refactor.")

    def check_data(self, facts: DataFacts) -> None:
        """Refuse data this tokenizer cannot encode, naming the recordings.

        Parameters
        ----------
        facts : DataFacts
            The training data's facts.
        """
        if self.sensor_types is None:
            return
        unsupported = set(facts.sensor_types) - set(self.sensor_types)
        if unsupported:
            names = facts.recordings_with(unsupported)
            raise ConfigError(
                f"{type(self).__name__} encodes {list(self.sensor_types)} channels, but the store has "
                f"{sorted(unsupported)} channels in {len(names)} recordings ({first_names(names)}"
                f"). Select the supported types with "
                f"--data.channel_types {list(self.sensor_types)}."
            )

    def encode(self, batch: Batch) -> torch.Tensor:
        """Tokens of a batch.

        Parameters
        ----------
        batch : Batch
            The windows.

        Returns
        -------
        tokens : torch.Tensor of int64
            The token ids; the shape depends on the tokenizer.
        """
        raise NotImplementedError

    def decode(self, tokens: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Reconstruct the signal from tokens.

        Parameters
        ----------
        tokens : torch.Tensor of int64
            As returned by :meth:`encode`.
        batch : Batch
            The batch the tokens came from (geometry, masks).

        Returns
        -------
        signal : torch.Tensor, shape (B, C, T)
            The reconstruction, zeros on masked channels.
        """
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        """Width D of :meth:`features` (tokenizers without continuous features raise)."""
        raise NotImplementedError(f"{type(self).__name__} has no continuous features.")

    def features(self, batch: Batch) -> torch.Tensor:
        """Continuous token features (B, N, D) for downstream use (``brainfm embed``, probes).

        Parameters
        ----------
        batch : Batch
            The windows.

        Returns
        -------
        features : torch.Tensor, shape (B, N, D)
        """
        raise NotImplementedError(
            f"{type(self).__name__} gives discrete tokens only, no continuous features: use a checkpoint "
            "with a backbone (or a BrainTokenizer) for embeddings."
        )

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The training loss and its terms.

        Parameters
        ----------
        batch : Batch
            The windows.

        Returns
        -------
        losses : dict of str to torch.Tensor
            Scalars; ``"loss"`` is the total that is minimised (the others are logged).
        """
        raise NotImplementedError


class SampleTokenizer(Tokenizer):
    """A tokenizer that gives every sample of every channel one token (MEG-GPT's kind).

    Token 0 is reserved for samples outside the vocabulary and for masked channels; a
    tokenizer with ``n_bins`` bins has ``vocab_size = n_bins + 1``. Subclasses implement
    :meth:`tokenize` and :meth:`detokenize` on plain tensors.
    """

    @property
    def alignment_samples(self) -> int:
        """Window starts (in samples) at which :meth:`tokenize` of a window gives the same tokens as
        of the whole recording: 1 when every sample is tokenised on its own."""
        return 1

    def tokenize(self, signal: torch.Tensor) -> torch.Tensor:
        """Token ids (1 .. vocab_size - 1) of every sample of ``signal`` (any shape)."""
        raise NotImplementedError

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Signal values of token ids (token 0 decodes to 0)."""
        raise NotImplementedError

    def encode(self, batch: Batch) -> torch.Tensor:
        """Tokens (B, C, T); 0 on masked channels."""
        tokens = self.tokenize(batch.signal)
        return tokens.masked_fill(~batch.channel_mask[..., None], 0)

    def decode(self, tokens: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Signal (B, C, T) of tokens (B, C, T); 0 on masked channels."""
        return self.detokenize(tokens).masked_fill(~batch.channel_mask[..., None], 0.0)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Mean squared reconstruction error over good channels (``"loss"``) and the percentage
        of variance explained (``"pve"``, :func:`percent_variance_explained`)."""
        reconstruction = self.decode(self.encode(batch), batch)
        mask = batch.channel_mask[..., None].expand_as(batch.signal)
        target = batch.signal[mask]
        error = (reconstruction[mask] - target).pow(2)
        mse = error.mean() if error.numel() else batch.signal.new_zeros(())
        return {"loss": mse, "pve": percent_variance_explained(target, reconstruction[mask]).detach()}


def percent_variance_explained(signal: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """``100 * (1 - |x - x_hat|^2 / |x|^2)`` (MEG-GPT's PVE: 100 for x itself, 0 for zeros).

    Parameters
    ----------
    signal, reconstruction : torch.Tensor
        Same shape.

    Returns
    -------
    pve : torch.Tensor
        A scalar, in percent.
    """
    energy = signal.pow(2).sum()
    error = (signal - reconstruction).pow(2).sum()
    return 100.0 * (1.0 - error / energy.clamp_min(torch.finfo(signal.dtype).tiny))
