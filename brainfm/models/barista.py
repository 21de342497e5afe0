"""BaRISTA: a small spatiotemporal transformer for intracranial EEG (``specs/barista.md`` §6).

Every token is one 250-ms patch (512 samples at 2048 Hz) of one channel::

    signal (B, C, T)                    T = 12 * 512 for a 3-s window (per-window z-scored)
    -> patches (B, C, 12, 512)
    -> temporal encoder, shared        5 dilated residual conv blocks, 1 -> 5 -> 5 -> 5 -> 5 -> 1 ch
    -> temporal pooler                 Linear(512 -> 64, no bias): one 64-d latent per patch
    -> tokens (B, 12*C, 64)            time-major: token t*C + c is patch t of channel c
    -> + spatial embedding             channel coordinates, atlas parcel or lobe (same at all t)
    -> 12 pre-norm layers              RMSNorm, attention with RoPE (position = patch index t),
                                       GeGLU MLP; final RMSNorm
    -> features (B, 12*C, 64)

The patch encoder belongs to the backbone (a recipe has no separate tokenizer). The spatial
scale is ``spatial_scale``: ``coords`` (three 200-row tables summed, one per integer
millimetre coordinate, ``Batch.sensor_pos`` + ``coord_offset_mm``), ``parcels`` (the region
vocabulary, ``Batch.region_ids``; ids 0 and 1, no region or unknown, give the zero vector) or
``lobes`` (regions mapped to the 21 lobe ids of :mod:`brainfm.data.atlas`, 0 -> zero vector).
Padding channels (``channel_mask`` False) are never attended to; each window attends only
within itself. Checkpoints that users obtained from the reference load through
:func:`brainfm.models.barista_keys.load_reference_state_dict`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from brainfm.data.atlas import N_LOBE_IDS, lobe_ids
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.models.base import Backbone
from brainfm.nn.attention import SelfAttention
from brainfm.nn.data_facts import DataFacts
from brainfm.nn.feedforward import GatedFeedForward
from brainfm.nn.rope import RotaryEmbedding
from brainfm.tokenizers.base import Tokenizer

__all__ = ["BaristaBackbone", "DilatedConvEncoder"]

_IEEG = {"seeg", "ecog", "dbs"}
N_COORD_BINS = 200


class _ResidualBlock(nn.Module):
    """conv -> layer norm over time (no affine) -> GELU -> conv -> layer norm -> GELU, plus residual."""

    def __init__(self, c_in: int, c_out: int, dilation: int, project: bool, time_norm: bool) -> None:
        super().__init__()
        # "same" padding: kernel 3 with dilation d keeps the length
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=dilation, dilation=dilation)
        self.projector = nn.Conv1d(c_in, c_out, 1) if project else None
        self.time_norm = time_norm

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) if self.time_norm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, c_in, P) -> (N, c_out, P)
        residual = x if self.projector is None else self.projector(x)
        h = F.gelu(self._norm(self.conv1(x)))
        h = F.gelu(self._norm(self.conv2(h)))
        return h + residual


class DilatedConvEncoder(nn.Module):
    """TS2Vec-style dilated residual convolutions applied to each patch as a univariate series.

    Parameters
    ----------
    channels : list of int
        Channel counts, input first (``[1, 5, 5, 5, 5, 1]``: 5 blocks).
    time_norm : bool
        Layer norm over time inside the blocks (the reference); False only to measure the
        receptive field of the convolutions (the norm mixes all samples of a patch).
    """

    def __init__(self, channels: list[int] | None = None, time_norm: bool = True) -> None:
        super().__init__()
        channels = [1, 5, 5, 5, 5, 1] if channels is None else list(channels)
        n_blocks = len(channels) - 1
        self.blocks = nn.ModuleList(
            _ResidualBlock(channels[i], channels[i + 1], 2**i, channels[i] != channels[i + 1] or i == n_blocks - 1,
                           time_norm)
            for i in range(n_blocks)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def receptive_field(self) -> int:
        """Samples of input that one output sample sees: 1 + 4 * sum(dilations) (125)."""
        return 1 + sum(4 * 2**i for i in range(len(self.blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, P) -> (N, 1, P)."""
        for block in self.blocks:
            x = block(x)
        return x


class _Layer(nn.Module):
    """Pre-norm transformer layer: RMSNorm -> attention (RoPE) -> dropout; RMSNorm -> GeGLU MLP."""

    def __init__(self, dim: int, n_heads: int, hidden: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=eps)
        self.attention = SelfAttention(dim, n_heads, bias=True, out_dropout=dropout,
                                       rope=RotaryEmbedding(dim // n_heads, convention="half"))
        self.norm2 = nn.RMSNorm(dim, eps=eps)
        self.mlp = GatedFeedForward(dim, hidden, activation="gelu", dropout=dropout)
        self.inner_dropout = nn.Dropout(dropout)  # after the gated product (spec §6.5)
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.residual_dropout(self.attention(self.norm1(x), positions, mask))
        h, mlp = self.norm2(x), self.mlp
        return x + mlp.dropout(mlp.down_proj(self.inner_dropout(mlp.act(mlp.gate_proj(h)) * mlp.up_proj(h))))


class BaristaBackbone(Backbone):
    """BaRISTA's patch encoder, spatial embedding and RoPE transformer (module docstring).

    Parameters
    ----------
    spatial_scale : "parcels" | "coords" | "lobes"
        Encoding scale of the spatial embedding.
    n_regions : int
        Rows of the parcel table (the region vocabulary size must not exceed it; 121 in the
        released checkpoints).
    dim, n_layers, n_heads, mlp_hidden : int
        Token width (64), layers (12), heads (4), GeGLU width (256).
    patch_size : int
        Samples per patch (512: 250 ms at 2048 Hz).
    sfreq : float
        Sampling rate the model expects (2048 Hz; the ``barista`` preprocessing recipe).
    dropout : float
        Dropout on attention outputs, residual branches and the MLP (0.1).
    norm_eps : float
        RMSNorm epsilon (1e-8).
    encoder_channels : list of int | None
        Channel counts of the temporal encoder (default ``[1, 5, 5, 5, 5, 1]``).
    coord_offset_mm : float
        Added to positions in millimetres before binning them into ``[0, 200)`` (coords scale).
    """

    def __init__(
        self,
        spatial_scale: Literal["parcels", "coords", "lobes"] = "parcels",
        n_regions: int = 121,
        dim: int = 64,
        n_layers: int = 12,
        n_heads: int = 4,
        mlp_hidden: int = 256,
        patch_size: int = 512,
        sfreq: float = 2048.0,
        dropout: float = 0.1,
        norm_eps: float = 1e-8,
        encoder_channels: list[int] | None = None,
        coord_offset_mm: float = 100.0,
    ) -> None:
        super().__init__()
        if spatial_scale not in ("parcels", "coords", "lobes"):
            raise ConfigError(f"Invalid value for the 'spatial_scale' parameter. Allowed values are 'parcels', "
                              f"'coords', 'lobes', but got {spatial_scale!r} instead.")
        self.spatial_scale, self.dim, self.patch_size, self.sfreq = spatial_scale, dim, patch_size, float(sfreq)
        self.region_rows = int(n_regions)
        self.coord_offset_mm = float(coord_offset_mm)
        self.temporal_encoder = DilatedConvEncoder(encoder_channels)
        self.temporal_pooler = nn.Linear(patch_size, dim, bias=False)
        rows = {"parcels": [n_regions], "coords": [N_COORD_BINS] * 3, "lobes": [N_LOBE_IDS]}[spatial_scale]
        self.spatial_embeddings = nn.ModuleList(nn.Embedding(n, dim) for n in rows)  # N(0, 1) init
        if spatial_scale == "lobes":  # region vocabulary id -> lobe id, set from the data facts
            self.register_buffer("region_lobes", torch.zeros(n_regions, dtype=torch.long))
        self.layers = nn.ModuleList(_Layer(dim, n_heads, mlp_hidden, dropout, norm_eps) for _ in range(n_layers))
        self.norm = nn.RMSNorm(dim, eps=norm_eps)

    @property
    def feature_dim(self) -> int:
        """Token width (64)."""
        return self.dim

    # -- data checks ----------------------------------------------------------------------------

    def check_data(self, facts: DataFacts, tokenizer: Tokenizer | None) -> None:
        """Refuse data BaRISTA cannot use, naming the recordings and the fix.

        Also binds the data's region vocabulary to lobes (``spatial_scale="lobes"``).
        """
        if tokenizer is not None:
            raise ConfigError("BaRISTA encodes patches itself: set model.tokenizer to null.")
        if not math.isclose(facts.sfreq, self.sfreq):
            raise ConfigError(f"BaRISTA expects {self.sfreq:g} Hz (512-sample patches of 250 ms) but the store is "
                              f"at {facts.sfreq:g} Hz: preprocess it with the 'barista' recipe.")
        if facts.n_times % self.patch_size:
            raise ConfigError(f"Windows of {facts.n_times} samples are not a whole number of {self.patch_size}-sample "
                              f"patches: set --data.window_s to a multiple of {self.patch_size / self.sfreq:g} s (3.0).")
        other = sorted(rid for rid, types in facts.recording_types.items() if not _IEEG & set(types))
        if other:
            raise ConfigError(f"BaRISTA models intracranial EEG; these recordings have none: {other[:10]}. "
                              "Set --data.channel_types [seeg, ecog, dbs].")
        if facts.n_regions > self.region_rows:
            raise ConfigError(f"The store's region vocabulary has {facts.n_regions} entries but the model's "
                              f"table has {self.region_rows}: set --model.backbone.init_args.n_regions "
                              f"{facts.n_regions} (or more).")
        if self.spatial_scale in ("parcels", "lobes"):
            refuse_without_regions(facts, f"{self.spatial_scale}-scale spatial encoding")
        if self.spatial_scale == "lobes" and facts.regions:
            lobes = torch.tensor(lobe_ids(facts.regions), dtype=torch.long)
            self.region_lobes.zero_()
            self.region_lobes[: len(lobes)] = lobes
        if self.spatial_scale == "coords":
            missing = sorted(rid for rid, n in facts.positioned.items() if n == 0)
            if missing:
                raise ConfigError(f"Coordinate encoding needs electrode positions; these recordings have none: "
                                  f"{missing[:10]}. Add electrodes.tsv / localisation files, or use "
                                  "--model.backbone.init_args.spatial_scale parcels.")

    # -- forward --------------------------------------------------------------------------------

    def spatial_ids(self, batch: Batch) -> list[torch.Tensor]:
        """Integer ids per table, each (B, C); ids whose row gives the zero vector are -1."""
        if self.spatial_scale == "coords":
            mm = batch.sensor_pos[..., :3] * 1000.0 + self.coord_offset_mm
            ids = mm.round().long().clamp(0, N_COORD_BINS - 1)
            known = batch.pos_mask & batch.channel_mask
            return [torch.where(known, ids[..., k], -1) for k in range(3)]
        regions = batch.region_ids
        if self.spatial_scale == "lobes":
            ids = self.region_lobes[regions.clamp(0, self.region_rows - 1)]
            return [torch.where(ids > 0, ids, -1)]
        # 0 no region, 1 unknown region; ids beyond the table (another store's vocabulary) are unknown too
        return [torch.where((regions > 1) & (regions < self.region_rows), regions, -1)]

    def spatial(self, batch: Batch) -> torch.Tensor:
        """Spatial embedding of each channel, (B, C, dim); zeros where unknown."""
        out = torch.zeros(*batch.region_ids.shape, self.dim, device=batch.signal.device)
        for table, ids in zip(self.spatial_embeddings, self.spatial_ids(batch), strict=True):
            out = out + table(ids.clamp_min(0)) * (ids >= 0).unsqueeze(-1)
        return out

    def patch_latents(self, signal: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> pooled patch latents (B, n_patches * C, dim), time-major."""
        b, c, t = signal.shape
        n = t // self.patch_size
        patches = signal[..., : n * self.patch_size].reshape(b * c * n, 1, self.patch_size)
        latents = self.temporal_pooler(self.temporal_encoder(patches).squeeze(1))  # (B*C*n, dim)
        return latents.view(b, c, n, self.dim).transpose(1, 2).reshape(b, n * c, self.dim)

    def tokenize(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch latents, spatial embeddings per token, RoPE positions and token validity.

        Returns
        -------
        latents : torch.Tensor, shape (B, L, dim)
            Pooler outputs, L = n_patches * C (before the spatial embedding).
        spatial : torch.Tensor, shape (B, L, dim)
            The spatial embedding of each token's channel.
        positions : torch.Tensor, shape (L,)
            Patch index of each token (shared by all channels of a patch).
        valid : torch.Tensor of bool, shape (B, L)
            Tokens of real, good channels.
        """
        latents = self.patch_latents(batch.signal)
        n = latents.shape[1] // batch.signal.shape[1]
        spatial = self.spatial(batch).repeat(1, n, 1)  # (B, n*C, dim): channel c at every t
        positions = torch.arange(n, device=latents.device).repeat_interleave(batch.signal.shape[1])
        valid = batch.channel_mask.repeat(1, n)
        return latents, spatial, positions, valid

    def encode(self, tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Run the transformer on tokens (spatial embedding already added); (B, L, dim) -> (B, L, dim)."""
        mask = valid[:, None, None, :]  # (B, 1, 1, L): keys of real channels of the same window
        x = tokens
        for layer in self.layers:
            x = layer(x, positions, mask)
        return self.norm(x) * valid.unsqueeze(-1)

    def features(self, batch: Batch, tokenizer: Tokenizer | None = None) -> torch.Tensor:
        """Token features (B, n_patches * C, 64), time-major; zeros at padding channels."""
        latents, spatial, positions, valid = self.tokenize(batch)
        return self.encode(latents + spatial, positions, valid)


def refuse_without_regions(facts: DataFacts, what: str) -> None:
    """Raise when some iEEG recordings have no channel with a region, naming them.

    Parameters
    ----------
    facts : DataFacts
        The training data's facts.
    what : str
        What needs regions (for the message).
    """
    missing = sorted(rid for rid, n in facts.regioned.items()
                     if n == 0 and _IEEG & set(facts.recording_types.get(rid, [])))
    if missing:
        raise ConfigError(
            f"{what} needs channel regions, but these iEEG recordings have none: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Preprocess them with the 'barista' recipe (its regions step "
            "derives regions from shafts when electrodes.tsv has no atlas labels), or use channel-scale masking "
            "and coordinate encoding."
        )
