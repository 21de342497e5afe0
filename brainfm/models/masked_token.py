"""``MaskedTokenObjective``: BrainOmni's masked prediction of every RVQ level (spec ``brainomni.md`` §5.3, §5.7).

Per batch: the backbone's latent grid (features (B, C', W, d_tok), indices (B, C', W, levels))
-> masking (:func:`~brainfm.models.token_masking.mask_token_grid`, the backbone's mask token)
-> backbone blocks (B, C', W, D) -> head Linear(D -> levels x n_codes) at masked positions
-> cross-entropy averaged over masked positions x levels. Logged: ``loss``, ``acc`` (all
levels) and ``acc_level0`` ... (accuracy falls with RVQ depth, paper Fig. 3b).
"""

from __future__ import annotations

import torch
from torch import nn

from brainfm._check import check_range, ensure_int
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.models.base import Backbone, Objective
from brainfm.models.token_masking import code_loss, mask_token_grid, masked_token_loss
from brainfm.nn.data_facts import DataFacts
from brainfm.tokenizers.base import Tokenizer

__all__ = ["MaskedTokenObjective"]


class MaskedTokenObjective(Objective):
    """Masked-token pretraining with a head predicting every RVQ level.

    Parameters
    ----------
    dim : int
        The backbone's width D (the head's input).
    n_codes : int
        Codes per RVQ level of the tokenizer (512).
    n_levels : int
        RVQ levels predicted (4; the reference's ``num_quantizers_used``).
    mask_ratio : float
        Probability that a position is masked (0.5).
    mask_token_prob : float
        Probability that a masked position holds the mask token rather than another position's feature (0.8).
    """

    def __init__(self, dim: int = 256, n_codes: int = 512, n_levels: int = 4, mask_ratio: float = 0.5,
                 mask_token_prob: float = 0.8) -> None:
        super().__init__()
        self.dim, self.n_codes, self.n_levels = ensure_int("dim", dim), ensure_int("n_codes", n_codes), ensure_int("n_levels", n_levels)
        check_range("mask_ratio", mask_ratio, 0, 1)
        check_range("mask_token_prob", mask_token_prob, 0, 1, inclusive=True)
        self.mask_ratio, self.mask_token_prob = float(mask_ratio), float(mask_token_prob)
        self.head = nn.Linear(dim, n_levels * n_codes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None, backbone: Backbone | None) -> None:
        """Refuse a head that does not fit the backbone's width or the tokenizer's codebooks."""
        if backbone is None:
            raise ConfigError("MaskedTokenObjective trains a backbone: set model.backbone (e.g. brainfm.models.BrainOmni).")
        if backbone.feature_dim != self.dim:
            raise ConfigError(f"The objective's dim ({self.dim}) differs from the backbone's ({backbone.feature_dim}): "
                              f"set --model.objective.init_args.dim {backbone.feature_dim}.")
        if tokenizer is not None:
            codes = tokenizer.vocab_size
            levels = getattr(tokenizer, "n_levels", self.n_levels)
            if codes != self.n_codes or self.n_levels > levels:
                raise ConfigError(
                    f"The tokenizer has {levels} levels of {codes} codes; the objective predicts {self.n_levels} levels "
                    f"of {self.n_codes}: set --model.objective.init_args.n_codes {codes} and n_levels <= {levels}."
                )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., levels, n_codes)."""
        return self.head(hidden).unflatten(-1, (self.n_levels, self.n_codes))

    def forward(self, batch: Batch, tokenizer: Tokenizer | None = None, backbone: Backbone | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Masked-token loss of one batch.

        Parameters
        ----------
        batch : Batch
            The windows (``codes`` used when cached).
        tokenizer : Tokenizer | None
            The frozen tokenizer.
        backbone : Backbone | None
            A :class:`~brainfm.models.brainomni.BrainOmni`.
        generator : torch.Generator | None
            Random source of the masking (torch's global generator when None).

        Returns
        -------
        losses : dict of str to torch.Tensor
            ``loss`` (cross-entropy), ``acc`` and ``acc_level<i>`` (detached).
        """
        if backbone is None or tokenizer is None:
            raise ConfigError("MaskedTokenObjective needs a backbone and its tokenizer.")
        grid, targets = backbone.tokens(batch, tokenizer)  # (B, C', W, d_tok), (B, C', W, levels)
        return self.grid_loss(grid, targets, backbone, tokenizer, generator)

    def grid_loss(self, grid: torch.Tensor, targets: torch.Tensor, backbone: Backbone, tokenizer: Tokenizer,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The loss terms of a token grid (as :meth:`forward`, after tokenizing).

        Parameters
        ----------
        grid : torch.Tensor, shape (B, C', W, d_tok)
            Token features.
        targets : torch.Tensor of int64, shape (B, C', W, levels)
            Their code indices.
        backbone : Backbone
            The backbone (``mask_token``; called on the masked grid).
        tokenizer : Tokenizer
            The frozen tokenizer (latent-channel embeddings).
        generator : torch.Generator | None
            Random source of the masking.

        Returns
        -------
        losses : dict of str to torch.Tensor
            As :meth:`forward`.
        """
        targets = targets[..., : self.n_levels]
        masked_grid, masked = mask_token_grid(grid, backbone.mask_token, self.mask_ratio, self.mask_token_prob,
                                              generator=generator)
        hidden = backbone(masked_grid, tokenizer)  # (B, C', W, D)
        if not bool(masked.any()):  # nothing to predict (a tiny grid): a zero loss that keeps the graph
            loss, accuracy = masked_token_loss(self.logits(hidden), targets, masked)
        else:  # the head only where the loss looks: (X, D) -> (X, levels, n_codes)
            loss, accuracy = code_loss(self.logits(hidden[masked]), targets[masked])
        terms = {"loss": loss, "acc": accuracy.mean()}
        terms.update({f"acc_level{level}": accuracy[level] for level in range(self.n_levels)})
        return terms
