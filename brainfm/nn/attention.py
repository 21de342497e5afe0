"""Multi-head self-attention on PyTorch's fused ``scaled_dot_product_attention`` (SDPA).

One block for every brainfm model: fused ``qkv_proj`` and ``o_proj`` (the names BrainOmni and
BaRISTA checkpoints use), optional rotary positions (:class:`~brainfm.nn.rope.RotaryEmbedding`),
boolean masks where ``True`` means "may attend", and a defined output for rows that see no key
(zeros, never NaN). On GPU SDPA dispatches to flash / memory-efficient kernels; on CPU to its
fused C++ kernel. With attention dropout on the CPU (training) SDPA has no fused kernel and falls
back to its unfused "math" path; :func:`attend` then runs its own unfused path instead, which
skips the math path's all-masked-row checks and draws the dropout mask with
:func:`~brainfm.nn.dropout.keep_mask` (16 random bits per weight instead of a float draw).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from brainfm.nn.dropout import keep_mask, rounded_drop_probability
from brainfm.nn.rope import RotaryEmbedding

__all__ = ["SelfAttention", "attend"]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           dropout: float = 0.0, is_causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """SDPA over heads, with rows that may attend to no key giving zeros.

    Parameters
    ----------
    q : torch.Tensor, shape (B, H, L, d)
        Queries.
    k, v : torch.Tensor, shape (B, H, S, d)
        Keys and values.
    mask : torch.Tensor of bool, shape broadcastable to (B, H, L, S) | None
        True where a query may attend to a key.
    dropout : float
        Dropout on the attention weights (pass 0 outside training).
    is_causal : bool
        Lower-triangular mask (``mask`` must be None).
    scale : float | None
        Logit scale (default ``1/sqrt(d)``).

    Returns
    -------
    out : torch.Tensor, shape (B, H, L, d)
        Attention output; exactly zero on rows whose mask is all False.
    """
    if mask is None and dropout > 0.0 and not is_causal and q.device.type == "cpu":
        return _attend_dropout(q, k, v, dropout, scale)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=is_causal, scale=scale)
    sees_key = mask.any(-1, keepdim=True)  # (..., L, 1)
    safe = mask | ~sees_key  # an empty row attends everywhere, then is zeroed: no NaN
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, dropout_p=dropout, scale=scale)
    return out.masked_fill(~sees_key, 0.0)


def _attend_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float,
                    scale: float | None) -> torch.Tensor:
    """Unmasked attention with dropout on the weights: softmax(q k^T s) * keep / (1 - p) @ v."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    weights = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)  # (B, H, L, S)
    weights = weights * keep_mask(weights.shape, dropout, weights.device)
    return (weights @ v) * (1.0 / (1.0 - rounded_drop_probability(dropout)))  # scale the (L, d) output, not (L, S)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv_proj`` and an ``o_proj``.

    Parameters
    ----------
    dim : int
        Input and output width.
    n_heads : int
        Heads (``dim`` divisible by it).
    bias : bool
        Biases on the projections.
    attn_dropout : float
        Dropout on attention weights, in training only.
    out_dropout : float
        Dropout on the attention output before ``o_proj`` (BaRISTA), in training only.
    rope : RotaryEmbedding | None
        Rotary positions applied to queries and keys (then ``forward`` needs ``positions``).
    """

    def __init__(self, dim: int, n_heads: int, bias: bool = True, attn_dropout: float = 0.0,
                 out_dropout: float = 0.0, rope: RotaryEmbedding | None = None) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}.")
        self.dim, self.n_heads, self.head_dim = dim, n_heads, dim // n_heads
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.o_proj = nn.Linear(dim, dim, bias=bias)
        self.attn_dropout = attn_dropout
        self.out_dropout = nn.Dropout(out_dropout)
        self.rope = rope

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """Attend within each sequence.

        Parameters
        ----------
        x : torch.Tensor, shape (B, L, dim)
            Sequences.
        positions : torch.Tensor, shape (L,) or (B, L) | None
            Positions for RoPE (required when the block has one).
        mask : torch.Tensor of bool, broadcastable to (B, n_heads, L, L) | None
            True where a query may attend to a key (e.g. ``(B, 1, 1, L)`` key padding, or a
            block-diagonal mask for packed samples).
        is_causal : bool
            Causal attention (with ``mask`` None).

        Returns
        -------
        out : torch.Tensor, shape (B, L, dim)
        """
        b, length, _ = x.shape
        q, k, v = self.qkv_proj(x).view(b, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rope is not None:
            if positions is None:
                raise ValueError("This attention block uses RoPE: pass the positions of the sequence.")
            q, k = self.rope(q, positions), self.rope(k, positions)
        out = attend(q, k, v, mask, self.attn_dropout if self.training else 0.0, is_causal)
        out = out.transpose(1, 2).reshape(b, length, self.dim)
        return self.o_proj(self.out_dropout(out))
