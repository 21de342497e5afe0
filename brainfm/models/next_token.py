"""Next-token cross-entropy (MEG-GPT spec §5.5): the pretraining objective of generative backbones.

A window's tokens (B, C, T) are cut into consecutive, non-overlapping sequences of
``context + 1`` tokens (the reference's 81-token runs); inputs are tokens 0 .. context - 1,
targets 1 .. context. The loss is the cross-entropy of the last ``n_loss`` positions over every
real channel (padding and bad channels excluded); top-k accuracies are logged beside it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from brainfm._check import ensure_int
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.models.base import Backbone, Objective
from brainfm.models.meg_gpt import _tokens_of
from brainfm.nn.data_facts import DataFacts
from brainfm.tokenizers.base import Tokenizer

__all__ = ["NextTokenLoss", "sequences_of"]


def sequences_of(tokens: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
    """Cut tokens (B, C, T) into (B n, C, length) consecutive sequences, n = T // length.

    Parameters
    ----------
    tokens : torch.Tensor, shape (B, C, T)
        Token ids.
    length : int
        Tokens per sequence.

    Returns
    -------
    sequences : torch.Tensor, shape (B n, C, length)
        Row ``i n + j`` is the j-th sequence of window i.
    n : int
        Sequences per window.
    """
    b, c, t = tokens.shape
    n = t // length
    if n == 0:
        raise ConfigError(f"Windows of {t} samples are shorter than the {length} tokens a sequence needs "
                          f"(the model's context + 1): use --data.window_s of at least {length} samples.")
    return tokens[..., : n * length].reshape(b, c, n, length).transpose(1, 2).reshape(b * n, c, length), n


class NextTokenLoss(Objective):
    """Cross-entropy of the next token on the trailing positions; top-k accuracy logged.

    Parameters
    ----------
    n_loss : int
        Trailing positions in the loss (8 in the paper, 16 in the re-release).
    top_k : list of int
        Accuracies logged as ``top<k>``.
    label_smoothing : float
        Passed to :func:`torch.nn.functional.cross_entropy` (0 in both references).
    """

    def __init__(self, n_loss: int = 8, top_k: list[int] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.n_loss = ensure_int("n_loss", n_loss)
        self.top_k = list(top_k) if top_k is not None else [1, 5]
        self.label_smoothing = float(label_smoothing)

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None, backbone: Backbone | None) -> None:
        """Refuse windows too short for one sequence, and a loss longer than the model's output.

        Parameters
        ----------
        facts : DataFacts
            The training data's facts.
        tokenizer : Tokenizer | None
            The tokenizer.
        backbone : Backbone | None
            The backbone (``context`` and ``n_out`` attributes).
        """
        context, n_out = getattr(backbone, "context", None), getattr(backbone, "n_out", None)
        if context is None or n_out is None:
            raise ConfigError("NextTokenLoss needs a next-token backbone (model.backbone: brainfm.models.MEGGPT).")
        if facts.n_times < context + 1:
            raise ConfigError(f"Windows of {facts.n_times} samples are shorter than the {context + 1} tokens a "
                              f"training sequence needs (context {context} + 1): raise --data.window_s.")
        if self.n_loss > n_out:
            raise ConfigError(f"n_loss={self.n_loss} exceeds the {n_out} positions the model outputs.")

    def forward(self, batch: Batch, tokenizer: Tokenizer | None = None,
                backbone: Backbone | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy (``loss``) and ``top<k>`` accuracies of one batch."""
        model: Any = backbone
        tokens = _tokens_of(batch, tokenizer)  # (B, C, T)
        sequences, n = sequences_of(tokens, model.context + 1)  # (B n, C, S + 1)
        channel_ids = batch.channel_ids.repeat_interleave(n, 0)
        mask = batch.channel_mask.repeat_interleave(n, 0)  # (B n, C)
        recordings = batch.recording_ids.repeat_interleave(n, 0)
        logits = model(sequences[..., :-1], channel_ids, recordings, mask, last=self.n_loss)  # (B n, C, n_loss, V)
        target = sequences[..., -self.n_loss:]  # (B n, C, n_loss)
        logits, target = logits[mask], target[mask]  # real channels: (M, n_loss, V), (M, n_loss)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                               label_smoothing=self.label_smoothing)
        terms = {"loss": loss}
        with torch.no_grad():
            ranked = logits.topk(max(self.top_k), dim=-1).indices  # (M, n_loss, k)
            hits = ranked == target[..., None]
            for k in self.top_k:
                terms[f"top{k}"] = hits[..., :k].any(-1).float().mean()
        return terms
