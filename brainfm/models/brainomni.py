"""BrainOmni stage 2: a criss-cross transformer over the frozen BrainTokenizer's latent grid.

Adapted from Xiao et al., "BrainOmni: A Brain Foundation Model for Unified EEG and MEG
Signals" (arXiv:2505.18185), built from spec ``brainomni.md`` §5. Changes from the reference
code: attention dropout only in training (``eval_attn_dropout=True`` restores the reference's
stochastic ``encode``); the blocks are brainfm's shared ones (:mod:`brainfm.nn`); the masked
positions' prediction head lives in :class:`~brainfm.models.masked_token.MaskedTokenObjective`.

Shapes (tiny: D = 256, 8 heads, 12 blocks; 30-s segments: C' = 16 latents, W = 160 steps):

1. tokens: the frozen tokenizer with overlap 0.25 -> features (B, C', W, d_tok) (sum of the
   RVQ codewords) and indices (B, C', W, levels); or cached indices (``Batch.codes``) -> features
2. masking in training (the objective): :func:`~brainfm.models.token_masking.mask_token_grid`
3. + latent-channel embeddings: the tokenizer's C' latent queries (detached), (1, C', 1, d_tok)
4. Linear(d_tok -> D) when the widths differ -> (B, C', W, D)
5. blocks: x += Attn(RMSNorm(x)); x += FF(RMSNorm(x)), Attn = [spatial(x[..., D/2:]),
   temporal(x[..., :D/2])]: temporal attention per latent channel over W steps (RoPE with a
   frequency band per head), spatial attention over the C' latents at each step
6. ``encode`` (features): all blocks but the last, L2-normalised -> (B, C', W, D)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from brainfm._check import check_option, check_range, ensure_int
from brainfm._logging import logger
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.models.base import Backbone
from brainfm.nn.attention import SelfAttention
from brainfm.nn.data_facts import DataFacts
from brainfm.nn.feedforward import FeedForward
from brainfm.nn.rope import RotaryEmbedding
from brainfm.tokenizers.base import Tokenizer

__all__ = ["BrainOmni", "CrissCrossBlock"]


class CrissCrossBlock(nn.Module):
    """Pre-norm block whose attention is temporal on the first half of the features and spatial on the second.

    Parameters
    ----------
    dim : int
        Width D (even; each half D/2 divisible by ``n_heads / 2``).
    n_heads : int
        Heads, half temporal and half spatial.
    dropout : float
        Attention-weight dropout and feed-forward output dropout (training only unless ``eval_attn_dropout``).
    rope_base : float
        RoPE frequency base.
    eval_attn_dropout : bool
        Keep attention dropout in evaluation mode, as the reference code does (parity flag §8 #3).
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.1, rope_base: float = 10_000.0,
                 eval_attn_dropout: bool = False) -> None:
        super().__init__()
        half, heads = dim // 2, n_heads // 2
        self.attn_norm = nn.RMSNorm(dim, eps=1e-6)
        rope = RotaryEmbedding(half // heads, heads, base=rope_base, convention="pairs", per_head_bands=True)
        self.temporal = SelfAttention(half, heads, attn_dropout=dropout, rope=rope)
        self.spatial = SelfAttention(half, heads, attn_dropout=dropout)
        self.ff_norm = nn.RMSNorm(dim, eps=1e-6)
        self.ff = FeedForward(dim, 4 * dim, activation="selu", dropout=dropout, fast_dropout=True)
        self.eval_attn_dropout = eval_attn_dropout

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C', W, D) -> (B, C', W, D) ordered [spatial, temporal] (the reference's swap, kept for its weights)."""
        b, c, w, d = x.shape
        half = d // 2
        temporal = x[..., :half].reshape(b * c, w, half)  # (B C', W, D/2)
        spatial = x[..., half:].transpose(1, 2).reshape(b * w, c, half)  # (B W, C', D/2)
        positions = torch.arange(w, device=x.device)
        temporal = self.temporal(temporal, positions=positions).reshape(b, c, w, half)
        spatial = self.spatial(spatial).reshape(b, w, c, half).transpose(1, 2)  # (B, C', W, D/2)
        return torch.cat([spatial, temporal], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C', W, D) -> (B, C', W, D)."""
        if self.eval_attn_dropout and not self.training:
            # the reference passes dropout to the attention kernel whatever the mode
            for attention in (self.temporal, self.spatial):
                attention.train(True)
            try:
                x = x + self.attention(self.attn_norm(x))
            finally:
                for attention in (self.temporal, self.spatial):
                    attention.train(False)
        else:
            x = x + self.attention(self.attn_norm(x))
        return x + self.ff(self.ff_norm(x))


class BrainOmni(Backbone):
    """BrainOmni's criss-cross transformer (stage 2); sizes as presets in ``configs/pretrain/brainomni/``.

    Parameters
    ----------
    dim : int
        Width D (tiny 256, base 512).
    n_heads : int
        Attention heads per block (tiny 8, base 16), half temporal and half spatial.
    depth : int
        Blocks (12).
    dropout : float
        Dropout (0.1).
    token_dim : int
        Width of the tokenizer's features (256 for the published BrainTokenizer).
    n_latents : int
        Latent channels C' of the tokenizer (16).
    overlap : float
        Window overlap of the tokenizer (0.25: 2-s windows every 1.5 s).
    rope_base : float
        RoPE frequency base.
    eval_attn_dropout : bool
        Reference parity: attention dropout also in evaluation mode (``encode`` becomes stochastic).
    on_unpositioned : "raise" | "warn" | "ignore"
        Good channels without a known position in the training data: refuse before training
        (naming the recordings), or warn, or go on; either way the tokenizer leaves them out.
    """

    def __init__(
        self,
        dim: int = 256,
        n_heads: int = 8,
        depth: int = 12,
        dropout: float = 0.1,
        token_dim: int = 256,
        n_latents: int = 16,
        overlap: float = 0.25,
        rope_base: float = 10_000.0,
        eval_attn_dropout: bool = False,
        on_unpositioned: Literal["raise", "warn", "ignore"] = "raise",
    ) -> None:
        super().__init__()
        self.on_unpositioned = check_option("on_unpositioned", on_unpositioned, ("raise", "warn", "ignore"))
        self.dim, self.n_heads = ensure_int("dim", dim), ensure_int("n_heads", n_heads)
        self.depth, self.token_dim = ensure_int("depth", depth), ensure_int("token_dim", token_dim)
        self.n_latents = ensure_int("n_latents", n_latents)
        if n_heads < 2 or n_heads % 2 or (dim // 2) % (n_heads // 2) or (dim // n_heads) % 2:
            raise ConfigError(f"BrainOmni splits dim ({dim}) and n_heads ({n_heads}) in two halves: n_heads must be "
                              "even and dim / n_heads an even integer.")
        if depth < 2:
            raise ConfigError(f"BrainOmni needs depth >= 2 (encode uses all blocks but the last), got {depth}.")
        check_range("dropout", dropout, 0, 1)
        check_range("overlap", overlap, 0, 1)
        self.overlap = float(overlap)
        self.mask_token = nn.Parameter(torch.randn(token_dim))
        self.projection = nn.Linear(token_dim, dim) if token_dim != dim else nn.Identity()
        self.blocks = nn.ModuleList(
            CrissCrossBlock(dim, n_heads, dropout, rope_base, eval_attn_dropout) for _ in range(depth)
        )
        self.apply(_init_weights)

    @property
    def feature_dim(self) -> int:
        """Width D of :meth:`features`."""
        return self.dim

    # -- the token grid -------------------------------------------------------------------------

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None) -> None:
        """Refuse a recipe without a fitting BrainTokenizer-like tokenizer and stores without channel geometry."""
        if tokenizer is None or not hasattr(tokenizer, "tokenize") or not hasattr(tokenizer, "latent_queries"):
            raise ConfigError(
                "BrainOmni reads the latent grid of a trained BrainTokenizer: set model.tokenizer to "
                "{class_path: brainfm.checkpoint.FrozenTokenizer, init_args: {checkpoint: TOKENIZER.ckpt}}."
            )
        queries = tokenizer.latent_queries  # (C', d_tok)
        if tuple(queries.shape) != (self.n_latents, self.token_dim):
            raise ConfigError(
                f"The tokenizer has {queries.shape[0]} latents of width {queries.shape[1]}, but the backbone expects "
                f"n_latents={self.n_latents}, token_dim={self.token_dim}: set --model.backbone.init_args.n_latents "
                f"{queries.shape[0]} --model.backbone.init_args.token_dim {queries.shape[1]}."
            )
        unpositioned = sorted(rid for rid, n in facts.unpositioned.items() if n > 0)
        if unpositioned and self.on_unpositioned != "ignore":
            message = (
                f"BrainOmni needs the position of every channel, but {len(unpositioned)} recordings have good channels "
                f"without one ({', '.join(f'{rid} ({facts.unpositioned[rid]})' for rid in unpositioned[:10])}"
                f"{', ...' if len(unpositioned) > 10 else ''}). Give them a montage (or drop such channels, e.g. a "
                "bipolar reference) in preprocessing, leave the recordings out with --data.datasets, or set "
                "--model.backbone.init_args.on_unpositioned warn to leave those channels out of the tokens."
            )
            if self.on_unpositioned == "raise":
                raise ConfigError(message)
            logger.warning(message)

    def tokens(self, batch: Batch, tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent grid of a batch: features (B, C', W, d_tok) and code indices (B, C', W, levels).

        Cached codes (``Batch.codes``, written by ``brainfm tokenize`` with this overlap) are
        decoded to their codewords; otherwise the frozen tokenizer encodes the signal.
        """
        codes = batch.codes
        with torch.no_grad():
            if codes is not None:
                expected = tokenizer.n_windows(batch.signal.shape[-1], self.overlap) * tokenizer.steps
                if codes.shape[2] != expected:
                    raise ConfigError(
                        f"The cached codes have {codes.shape[2]} steps per window, but tokenizing "
                        f"{batch.signal.shape[-1]} samples with overlap {self.overlap} gives {expected}: cache them "
                        f"with the backbone's overlap (brainfm tokenize --overlap {self.overlap})."
                    )
                return tokenizer.quantizer.decode(codes), codes
            return tokenizer.tokenize(batch, overlap=self.overlap)

    def embed(self, grid: torch.Tensor, tokenizer: Tokenizer) -> torch.Tensor:
        """Add the latent-channel embeddings and project: (B, C', W, d_tok) -> (B, C', W, D)."""
        latents = tokenizer.latent_queries.detach().to(grid.dtype)  # (C', d_tok)
        return self.projection(grid + latents[None, :, None, :])

    def forward(self, grid: torch.Tensor, tokenizer: Tokenizer, n_blocks: int | None = None) -> torch.Tensor:
        """Run the blocks over a (possibly masked) grid.

        Parameters
        ----------
        grid : torch.Tensor, shape (B, C', W, d_tok)
            Token features.
        tokenizer : Tokenizer
            The frozen tokenizer (its latent queries are the latent-channel embeddings).
        n_blocks : int | None
            Run only the first ``n_blocks`` blocks (None: all).

        Returns
        -------
        hidden : torch.Tensor, shape (B, C', W, D)
        """
        x = self.embed(grid, tokenizer)
        for block in self.blocks[:n_blocks]:
            x = block(x)
        return x

    def encode(self, batch: Batch, tokenizer: Tokenizer) -> torch.Tensor:
        """Features for downstream use (spec §5.8): all blocks but the last, L2-normalised, (B, C', W, D)."""
        grid, _ = self.tokens(batch, tokenizer)
        return F.normalize(self(grid, tokenizer, n_blocks=self.depth - 1), dim=-1, eps=1e-6)

    def features(self, batch: Batch, tokenizer: Tokenizer | None = None) -> torch.Tensor:
        """:meth:`encode` as (B, C' W, D) tokens, latent channel major (token ``c W + w``)."""
        if tokenizer is None:
            raise ConfigError("BrainOmni.features needs the model's tokenizer (load it with brainfm.checkpoint.load_model).")
        return self.encode(batch, tokenizer).flatten(1, 2)


def _init_weights(module: nn.Module) -> None:
    """The reference initialisation: truncated-normal (std 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

