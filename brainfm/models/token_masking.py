"""Masking of a latent token grid and the masked-token loss (BrainOmni spec ``brainomni.md`` §5.3, §5.7).

The grid is the frozen tokenizer's output: continuous features (B, C', W, D) (the sum of the
RVQ codewords of each position) and their code indices (B, C', W, levels), C' latent channels,
W latent steps.

Masking (the reference's ``BrainOmni.forward``):

1. every position is masked independently with probability ``mask_ratio`` (0.5);
2. every masked position first receives the feature of a random position of the minibatch
   (a random permutation of all B C' W positions, so it keeps its own feature only by chance);
3. each masked position is then overwritten, with probability ``mask_token_prob`` (0.8), by
   the learned mask token.

Net effect on masked positions: 80 % mask token, 20 % another position's feature, 0 % its own.
The loss is the cross-entropy of every RVQ level at masked positions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["code_loss", "mask_token_grid", "masked_token_loss"]


def mask_token_grid(
    features: torch.Tensor,
    mask_token: torch.Tensor,
    mask_ratio: float = 0.5,
    mask_token_prob: float = 0.8,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a token grid for masked-token prediction.

    Parameters
    ----------
    features : torch.Tensor, shape (B, C', W, D)
        Token features.
    mask_token : torch.Tensor, shape (D,)
        The learned mask token.
    mask_ratio : float
        Probability that a position is masked.
    mask_token_prob : float
        Probability that a masked position holds the mask token (otherwise another position's feature).
    generator : torch.Generator | None
        Random source (torch's global generator when None).

    Returns
    -------
    masked_features : torch.Tensor, shape (B, C', W, D)
        The input with masked positions replaced.
    masked : torch.Tensor of bool, shape (B, C', W)
        True at masked positions (where the loss is computed).
    """
    b, c, w, d = features.shape
    device = features.device
    masked = torch.rand((b, c, w), generator=generator, device=device) < mask_ratio
    # a random position of the minibatch for every position: (B C' W, D) -> (B, C', W, D)
    permutation = torch.randperm(b * c * w, generator=generator, device=device)
    shuffled = features.reshape(b * c * w, d)[permutation].reshape(b, c, w, d)
    use_token = masked & (torch.rand((b, c, w), generator=generator, device=device) < mask_token_prob)
    out = torch.where(masked[..., None], shuffled, features)
    out = torch.where(use_token[..., None], mask_token.to(features.dtype), out)
    return out, masked


def masked_token_loss(
    logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over masked positions and RVQ levels, and the accuracy of each level.

    Parameters
    ----------
    logits : torch.Tensor, shape (B, C', W, levels, n_codes)
        Predicted code logits.
    targets : torch.Tensor of int64, shape (B, C', W, levels)
        The tokenizer's code indices.
    masked : torch.Tensor of bool, shape (B, C', W)
        Positions that count.

    Returns
    -------
    loss : torch.Tensor
        Mean cross-entropy over masked positions x levels (0 when nothing is masked).
    accuracy : torch.Tensor, shape (levels,)
        Share of masked positions whose code is predicted right, per level (detached).
    """
    if not bool(masked.any()):
        return logits.sum() * 0.0, logits.new_zeros(targets.shape[-1])
    return code_loss(logits[masked], targets[masked])  # (X, levels, n_codes), (X, levels): X masked positions


def code_loss(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every RVQ level at already selected positions, and each level's accuracy.

    Parameters
    ----------
    logits : torch.Tensor, shape (X, levels, n_codes)
        Predicted code logits of X positions (e.g. the masked ones; X > 0).
    targets : torch.Tensor of int64, shape (X, levels)
        Their code indices.

    Returns
    -------
    loss : torch.Tensor
        Mean cross-entropy over positions x levels.
    accuracy : torch.Tensor, shape (levels,)
        Share of positions whose code is predicted right, per level (detached).
    """
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
    accuracy = (logits.detach().argmax(-1) == targets).float().mean(0)
    return loss, accuracy
