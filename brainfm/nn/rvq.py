"""Residual vector quantisation with EMA codebooks (BrainOmni spec §4.2 step 6).

Each level is a Euclidean codebook: k-means initialisation on the first training batch
(computed in row chunks, so its peak memory stays small), exponential-moving-average updates
of counts and sums with Laplace smoothing, replacement of codes whose EMA count falls below a
threshold by random batch vectors, counts and sums all-reduced across DDP ranks, and the
rotation trick as the gradient estimator in training (the raw codeword in evaluation).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["EuclideanCodebook", "ResidualVQ", "kmeans", "rotation_trick"]

#: Rows per block when computing distances (bounds the (rows, codes) distance matrix).
_CHUNK_ROWS = 8192


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def nearest(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (Euclidean) of every row of ``x``, computed in row blocks.

    Parameters
    ----------
    x : torch.Tensor, shape (M, D)
        Vectors.
    codes : torch.Tensor, shape (K, D)
        Codebook.

    Returns
    -------
    index : torch.Tensor of int64, shape (M,)
    """
    squared = codes.pow(2).sum(1)
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        block = x[start : start + _CHUNK_ROWS]
        # argmin |x - c|^2 = argmin (|c|^2 - 2 x.c); only (rows, K) floats live at once
        out[start : start + _CHUNK_ROWS] = torch.addmm(squared, block, codes.t(), alpha=-2.0).argmin(1)
    return out


def kmeans(x: torch.Tensor, n_codes: int, n_iter: int = 10, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with random initial centres, distances in row blocks.

    Parameters
    ----------
    x : torch.Tensor, shape (M, D)
        Samples.
    n_codes : int
        Centres.
    n_iter : int
        Iterations.
    generator : torch.Generator | None
        Random source (the global one when None).

    Returns
    -------
    centres : torch.Tensor, shape (n_codes, D)
    counts : torch.Tensor, shape (n_codes,)
        Samples assigned to each centre at the last iteration.
    """
    m = x.shape[0]
    pick = torch.randperm(m, generator=generator, device="cpu")[:n_codes] if m >= n_codes else \
        torch.randint(0, m, (n_codes,), generator=generator, device="cpu")
    centres = x[pick.to(x.device)].clone()
    counts = torch.zeros(n_codes, dtype=x.dtype, device=x.device)
    for _ in range(n_iter):
        assign = nearest(x, centres)
        counts = torch.bincount(assign, minlength=n_codes).to(x.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        used = counts > 0
        centres[used] = sums[used] / counts[used, None]
    return centres, counts


def rotation_trick(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Pass ``x``'s gradient to the quantised ``q`` through a rotation (Fifty et al., 2024).

    The forward value is ``q``; backward, the gradient reaches ``x`` through the rotation
    that maps ``x``'s direction onto ``q``'s, scaled by ``|q| / |x|`` (both held constant).

    Parameters
    ----------
    x : torch.Tensor, shape (..., D)
        Encoder output (carries the gradient).
    q : torch.Tensor, shape (..., D)
        Its codeword.

    Returns
    -------
    out : torch.Tensor, shape (..., D)
        Equal to ``q`` in value.
    """
    eps = 1e-8
    x_norm = x.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    u = (x / x_norm).detach()
    q_hat = (q / q_norm).detach()
    w = F.normalize(u + q_hat, dim=-1, eps=eps).detach()
    # R x with R = I - 2 w w^T + 2 q_hat u^T (R maps u onto q_hat)
    rotated = x - 2 * (x * w).sum(-1, keepdim=True) * w + 2 * (x * u).sum(-1, keepdim=True) * q_hat
    rotated = rotated * (q_norm / x_norm).detach()
    # a (numerically) zero input has no direction to rotate: pass the gradient straight through
    straight = x + (q - x).detach()
    return torch.where(x.norm(dim=-1, keepdim=True) > 1e-6, rotated, straight)


class EuclideanCodebook(nn.Module):
    """One EMA codebook.

    Parameters
    ----------
    n_codes : int
        Codebook size.
    dim : int
        Code width.
    decay : float
        EMA decay of counts and sums.
    eps : float
        Laplace smoothing of the counts.
    dead_threshold : float
        Codes whose EMA count falls below this are replaced by random batch vectors.
    kmeans_iters : int
        k-means iterations of the initialisation.
    kmeans_samples : int
        Batch vectors the initialisation samples.
    """

    def __init__(self, n_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-6, dead_threshold: float = 2.0,
                 kmeans_iters: int = 10, kmeans_samples: int = 4096) -> None:
        super().__init__()
        self.n_codes, self.dim = n_codes, dim
        self.decay, self.eps, self.dead_threshold = decay, eps, dead_threshold
        self.kmeans_iters, self.kmeans_samples = kmeans_iters, kmeans_samples
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("embed", torch.zeros(n_codes, dim))
        self.register_buffer("embed_avg", torch.zeros(n_codes, dim))
        self.register_buffer("cluster_size", torch.zeros(n_codes))

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """k-means initialisation from (a sample of) the batch vectors ``x`` (M, D)."""
        if x.shape[0] > self.kmeans_samples:
            x = x[torch.randperm(x.shape[0], device="cpu")[: self.kmeans_samples].to(x.device)]
        centres, counts = kmeans(x.float(), self.n_codes, self.kmeans_iters)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(centres, 0)
            dist.broadcast(counts, 0)
        self.embed.copy_(centres)
        self.embed_avg.copy_(centres * counts[:, None])
        self.cluster_size.copy_(counts)
        self.initted.fill_(True)

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """One EMA step with the batch vectors ``x`` (M, D) and their code ``index`` (M,)."""
        counts = _all_reduce(torch.bincount(index, minlength=self.n_codes).to(self.cluster_size))
        sums = _all_reduce(torch.zeros_like(self.embed_avg).index_add_(0, index, x.to(self.embed_avg)))
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.n_codes * self.eps) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    @torch.no_grad()
    def replace_dead(self, x: torch.Tensor) -> int:
        """Replace codes whose EMA count is below ``dead_threshold`` by random rows of ``x``; returns how many."""
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        rows = torch.randint(0, x.shape[0], (n_dead,), device="cpu").to(x.device)
        samples = x[rows].to(self.embed)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(samples, 0)
        self.embed[dead] = samples
        self.embed_avg[dead] = samples * self.dead_threshold
        self.cluster_size[dead] = self.dead_threshold
        return n_dead

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``x`` (M, D): the codewords (M, D, no gradient) and indices (M,); updates the codebook in training."""
        flat = x.detach().float()
        if self.training and not bool(self.initted):
            self.init_from(flat)
        index = nearest(flat, self.embed)
        quantised = self.embed[index]
        if self.training:
            self.ema_update(flat, index)
            self.replace_dead(flat)
        return quantised.to(x.dtype), index


class ResidualVQ(nn.Module):
    """Residual VQ over ``n_levels`` EMA codebooks.

    Returns the summed quantised vectors (rotation-trick outputs in training, raw codewords
    in evaluation; in evaluation with gradients enabled, the codewords with a straight-through
    gradient, so a frozen-codebook tokenizer can be fine-tuned), the indices ``(..., n_levels)`` and the commitment loss
    ``weight * mean over levels of MSE(r, sg(q))``.

    Parameters
    ----------
    n_levels : int
        Codebooks.
    n_codes : int
        Codes per codebook.
    dim : int
        Code width.
    commitment_weight : float
        Weight of the commitment loss.
    **codebook : dict
        Passed to :class:`EuclideanCodebook` (decay, eps, dead_threshold, kmeans_iters, kmeans_samples).
    """

    def __init__(self, n_levels: int = 4, n_codes: int = 512, dim: int = 256, commitment_weight: float = 0.25,
                 decay: float = 0.99, eps: float = 1e-6, dead_threshold: float = 2.0, kmeans_iters: int = 10,
                 kmeans_samples: int = 4096) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EuclideanCodebook(n_codes, dim, decay, eps, dead_threshold, kmeans_iters, kmeans_samples)
            for _ in range(n_levels)
        )
        self.commitment_weight = commitment_weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = x.shape
        residual = x.reshape(-1, shape[-1])
        out = torch.zeros_like(residual)
        indices, commit = [], []
        for layer in self.layers:
            q, index = layer(residual)
            commit.append(F.mse_loss(residual, q.detach()))
            if self.training:
                q_out = rotation_trick(residual, q)
            elif residual.requires_grad and torch.is_grad_enabled():
                # fine-tuning through a tokenizer kept in evaluation mode (brainfm finetune): the codebooks stay
                # fixed, the codewords' values are passed on, and the gradient goes straight through to the encoder
                q_out = residual + (q - residual).detach()
            else:
                q_out = q
            out = out + q_out
            residual = residual - q.detach()
            indices.append(index)
        loss = self.commitment_weight * torch.stack(commit).mean()
        return out.reshape(shape), torch.stack(indices, -1).reshape(*shape[:-1], len(self.layers)), loss

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Sum of the codewords of ``indices`` (..., n_levels) -> (..., dim).

        The levels' codebooks are stacked into one table and summed by a single
        ``embedding_bag`` (one pass instead of a gather and an add per level).
        """
        levels = len(self.layers)
        table = torch.cat([layer.embed for layer in self.layers])  # (levels * n_codes, dim)
        offsets = torch.arange(levels, device=indices.device) * self.layers[0].embed.shape[0]
        flat = (indices[..., :levels] + offsets).reshape(-1, levels)  # (N, levels) rows of the stacked table
        out = F.embedding_bag(flat, table, mode="sum")  # (N, dim)
        return out.reshape(*indices.shape[:-1], table.shape[1])
