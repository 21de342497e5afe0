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

__all__ = ["mask_token_grid", "masked_token_loss"]


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
    chosen = logits[masked]  # (X, levels, n_codes), X masked positions
    labels = targets[masked]  # (X, levels)
    n_levels = targets.shape[-1]
    if chosen.shape[0] == 0:
        return logits.sum() * 0.0, logits.new_zeros(n_levels)
    loss = F.cross_entropy(chosen.reshape(-1, chosen.shape[-1]).float(), labels.reshape(-1))
    accuracy = (chosen.detach().argmax(-1) == labels).float().mean(0)
    return loss, accuracy
