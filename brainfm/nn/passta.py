"""PASSTA: patched, causal time attention of Perceiver-AR style (MEG-GPT spec ``meg-gpt.md`` §5.4).

For one layer with input length S, each channel on its own (channels folded into the batch):

- queries: the last ``n_out`` positions (the Perceiver-AR latents), Linear(D -> D);
- patched keys/values: the S positions cut into P = S / ``patch_length`` patches; each patch's
  steps are collapsed into one vector by a learned linear combination (``patch_collapse``), then
  Linear(D -> 2D) split into K and V;
- unpatched keys/values: the last ``n_unpatched`` positions through their own Linear(D -> 2D);
- keys/values = [P patches || U unpatched]; a query at index q sits at time t = S - n_out + q;
  patch i (steps i p .. i p + p - 1) is visible iff its last step i p + p - 1 <= t, unpatched
  element j (time S - U + j) iff S - U + j <= t (and, with ``band``, patch i only when it lies
  within the ``band`` patches before the query's own patch);
- scaled dot-product attention over the visible keys with a strict boolean mask; a row that sees
  no key returns exactly zero (the reference versions differ here; the spec's brainfm default);
- output Linear(D -> D).

Optional channel attention (off in the published model): channel queries/keys Linear(D -> 2D)
from the query positions, attention across channels at each step with the time attention's
per-head output as values, skipped for a whole batch with probability ``channel_skip_prob`` in
training. The same module with ``patch_length`` 1 .. 8, no unpatched tail and a ``band`` gives
the GASP layers of the PyTorch re-release (spec §8).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from brainfm._check import check_option, ensure_int
from brainfm.errors import ConfigError
from brainfm.nn.attention import attend

__all__ = ["PASSTA", "passta_visibility"]


def passta_visibility(n_in: int, n_out: int, patch_length: int, n_unpatched: int,
                      band: int | None = None) -> torch.Tensor:
    """Which keys each query may see (True: visible), as in spec §5.4.

    Parameters
    ----------
    n_in : int
        Input length S (a multiple of ``patch_length``).
    n_out : int
        Queries: the last ``n_out`` positions.
    patch_length : int
        Steps per patch.
    n_unpatched : int
        Unpatched keys: the last ``n_unpatched`` positions.
    band : int | None
        Patched keys only within ``band`` patches before the query's own patch (None: all).

    Returns
    -------
    visible : torch.Tensor of bool, shape (n_out, n_in // patch_length + n_unpatched)
        Rows are queries, columns ``[patches || unpatched]``.
    """
    n_patches = n_in // patch_length
    t = torch.arange(n_in - n_out, n_in)[:, None]  # (n_out, 1) time of each query
    patch_end = torch.arange(n_patches)[None, :] * patch_length + patch_length - 1  # (1, P)
    patched = patch_end <= t
    if band is not None:
        patched &= torch.arange(n_patches)[None, :] >= t // patch_length - band
    unpatched = torch.arange(n_in - n_unpatched, n_in)[None, :] <= t  # (n_out, U)
    return torch.cat([patched, unpatched], dim=1)


class PASSTA(nn.Module):
    """Patched causal time attention with an unpatched tail and optional channel attention.

    Parameters
    ----------
    d_model : int
        Width D.
    n_heads : int
        Heads (key width D / n_heads).
    n_in : int
        Input length S.
    n_out : int
        Output (query) length, the last ``n_out`` positions.
    patch_length : int
        Steps per patch (1: no patching).
    n_unpatched : int
        Unpatched keys: the last ``n_unpatched`` positions.
    patch_collapse : "per_patch" | "head_mixing"
        ``per_patch``: one learned weight per step of a patch and a bias, shared by every feature
        (the TF reference's Dense(1)); ``head_mixing``: per key-width slice, a Linear over heads x
        steps -> heads (the later TF versions and the PyTorch re-release).
    band : int | None
        Patched keys only within this many patches before the query's own (the re-release's
        sparse band); None: no band.
    channel_attention : bool
        Add attention across channels (spec: optional, off in the published model).
    channel_skip_prob : float
        Probability of skipping channel attention for a whole training batch.
    """

    def __init__(self, d_model: int, n_heads: int, n_in: int, n_out: int, patch_length: int = 4,
                 n_unpatched: int = 16, patch_collapse: Literal["per_patch", "head_mixing"] = "per_patch",
                 band: int | None = None, channel_attention: bool = False, channel_skip_prob: float = 0.0) -> None:
        super().__init__()
        self.d_model, self.n_heads = ensure_int("d_model", d_model), ensure_int("n_heads", n_heads)
        self.n_in, self.n_out = ensure_int("n_in", n_in), ensure_int("n_out", n_out)
        self.patch_length, self.n_unpatched = ensure_int("patch_length", patch_length), ensure_int("n_unpatched", n_unpatched)
        self.patch_collapse = check_option("patch_collapse", patch_collapse, ("per_patch", "head_mixing"))
        if d_model % n_heads or n_in % patch_length or not 0 < n_out <= n_in or not 0 <= n_unpatched <= n_in:
            raise ConfigError(
                f"PASSTA needs d_model divisible by n_heads, n_in divisible by patch_length, 0 < n_out <= n_in "
                f"and 0 <= n_unpatched <= n_in; got d_model={d_model}, n_heads={n_heads}, n_in={n_in}, "
                f"patch_length={patch_length}, n_out={n_out}, n_unpatched={n_unpatched}."
            )
        self.n_patches = n_in // patch_length
        self.query = nn.Linear(d_model, d_model)
        self.patched_kv = nn.Linear(d_model, 2 * d_model)
        self.unpatched_kv = nn.Linear(d_model, 2 * d_model) if n_unpatched else None
        self.out = nn.Linear(d_model, d_model)
        self.collapse: nn.Linear | None = None
        if patch_length > 1:
            width = patch_length if patch_collapse == "per_patch" else n_heads * patch_length
            self.collapse = nn.Linear(width, 1 if patch_collapse == "per_patch" else n_heads)
        self.channel_qk = nn.Linear(d_model, 2 * d_model) if channel_attention else None
        self.channel_skip_prob = float(channel_skip_prob)
        visible = passta_visibility(n_in, n_out, patch_length, n_unpatched, band)
        self.register_buffer("visible", visible, persistent=False)  # (n_out, P + U)
        self.register_buffer("has_key", visible.any(1)[:, None], persistent=False)  # (n_out, 1)
        self.every_row_sees_a_key = bool(visible.any(1).all())
        # every step is both a query and an unpatched key (the re-release's first layer)
        self.fused_qkv = patch_length == 1 and n_unpatched == 0 and n_out == n_in

    def _collapse(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S, D) -> (N, P, D): each patch's steps combined into one vector.

        Both variants are one small matrix product with the patch's rows as they lie in memory
        (no permuted copy of ``x``): the collapse weight is reordered to the (step, head) order of
        ``x.view(N P, p H, kd)`` instead.
        """
        n, _, d = x.shape
        p, h = self.patch_length, self.n_heads
        if self.collapse is None:
            return x
        weight, bias = self.collapse.weight, self.collapse.bias
        if self.patch_collapse == "per_patch":  # weight (1, p): out = sum_j w_j x_j + b
            out = torch.matmul(weight, x.reshape(n * self.n_patches, p, d))  # (N P, 1, D)
            return (out + bias).view(n, self.n_patches, d)
        # weight (H, H p) over (head, step); x.view(N P, p H, kd) holds (step, head) rows
        weight = weight.view(h, h, p).transpose(1, 2).reshape(h, p * h)
        out = torch.matmul(weight, x.reshape(n * self.n_patches, p * h, d // h))  # (N P, H, kd)
        return (out + bias[:, None]).view(n, self.n_patches, d)  # (N, P, D) heads major

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Time attention before heads are merged: (N, S, D) -> (N, H, n_out, D / H), zero rows for no key."""
        n, s, d = x.shape
        if s != self.n_in:
            raise ConfigError(f"PASSTA was built for {self.n_in} input steps, got {s}.")
        h, kd = self.n_heads, d // self.n_heads
        if self.fused_qkv:  # queries and keys read the same S steps: one product for Q, K and V
            weight = torch.cat([self.query.weight, self.patched_kv.weight])  # (3D, D)
            bias = torch.cat([self.query.bias, self.patched_kv.bias])
            q, k, v = F.linear(x, weight, bias).view(n, s, 3, h, kd).permute(2, 0, 3, 1, 4)  # 3 x (N, H, S, kd)
        else:
            q = self.query(x[:, s - self.n_out:]).view(n, self.n_out, h, kd).transpose(1, 2)  # (N, H, L, kd)
            kv = self.patched_kv(self._collapse(x))  # (N, P, 2D)
            if self.unpatched_kv is not None:
                kv = torch.cat([kv, self.unpatched_kv(x[:, s - self.n_unpatched:])], dim=1)  # (N, P + U, 2D)
            k, v = kv.view(n, -1, 2, h, kd).permute(2, 0, 3, 1, 4)  # 2 x (N, H, P + U, kd)
        if self.every_row_sees_a_key:  # no row to zero: SDPA with the boolean mask directly
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.visible)  # (N, H, L, kd)
        return attend(q, k, v, self.visible)  # (N, H, L, kd), exactly zero on rows without a key

    def forward(self, x: torch.Tensor, channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend.

        Parameters
        ----------
        x : torch.Tensor, shape (B, C, S, D)
            Input, channels second.
        channel_mask : torch.Tensor of bool, shape (B, C) | None
            Real channels (keys of channel attention); None: all.

        Returns
        -------
        out : torch.Tensor, shape (B, C, n_out, D)
            Zero on rows that see no key.
        """
        b, c, s, d = x.shape
        a = self.attention(x.reshape(b * c, s, d))  # (B C, H, L, kd)
        if self.channel_qk is not None and not (self.training and torch.rand(()) < self.channel_skip_prob):
            a = self._channel_attention(x, a.view(b, c, self.n_heads, self.n_out, -1), channel_mask)
        # (B C, H, L, kd) -> (B C, L, H, kd): SDPA's CPU/GPU kernels return this layout, so no copy
        a = a.reshape(b * c, self.n_heads, self.n_out, -1).transpose(1, 2).reshape(b, c, self.n_out, d)
        out = self.out(a)  # (B, C, L, D)
        return out if self.every_row_sees_a_key else out * self.has_key.to(out.dtype)

    def _channel_attention(self, x: torch.Tensor, values: torch.Tensor, channel_mask: torch.Tensor | None) -> torch.Tensor:
        """Across channels at each query step; values (B, C, H, L, kd) -> same shape."""
        b, c, h, L, kd = values.shape
        assert self.channel_qk is not None
        qk = self.channel_qk(x[:, :, -L:])  # (B, C, L, 2D)
        cq, ck = qk.view(b, c, L, 2, h, kd).permute(3, 0, 4, 2, 1, 5)  # 2 x (B, H, L, C, kd)
        v = values.permute(0, 2, 3, 1, 4)  # (B, H, L, C, kd)
        mask = None if channel_mask is None else channel_mask[:, None, None, None, :]  # (B, 1, 1, 1, C)
        out = attend(cq, ck, v, mask)  # (B, H, L, C, kd)
        return out.permute(0, 3, 1, 2, 4)  # (B, C, H, L, kd)
