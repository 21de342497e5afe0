"""MEG-GPT (Huang et al. 2025, arXiv:2510.18080): next-token transformer over per-sample tokens.

An adaptation of the paper's TensorFlow model (spec ``meg-gpt.md`` §5) written from the
specification; what differs from the reference: channels are embedded by their name in the
store's channel vocabulary (``Batch.channel_ids``) rather than by position in a fixed list of
52 parcels, so sensor-space recordings with different montages share one model; rows of the
first layer that see no key give exactly zero (one of the reference behaviours); recordings
never seen in training get no recording embedding.

Shapes (paper configuration): tokens (B, C = 52, S = 80) ->
embeddings token + position + channel + recording, each a table then Linear(D -> D),
(B, C, 80, D = 400) -> dropout -> 4 layers of PASSTA time attention (80 -> 40, then 40 -> 40)
with post-norm residual and feed-forward blocks -> (B, C, 40, D) -> Linear(D -> n_tokens).

``profile: meggpt-v0`` style stacks (the PyTorch re-release, spec §8) are the same model with
``norm: pre``, per-layer ``layers`` (patch lengths, output lengths, a band) and GELU.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from brainfm._check import check_option, ensure_int
from brainfm.errors import ConfigError
from brainfm.models.base import Backbone
from brainfm.nn.data_facts import DataFacts
from brainfm.nn.dropout import FastDropout
from brainfm.nn.feedforward import FeedForward
from brainfm.nn.passta import PASSTA

__all__ = ["MEGGPT", "MEGGPT_PRESETS"]


#: Named sizes (``--size``), as ``MEGGPT`` keyword arguments (the YAML presets hold the same).
MEGGPT_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tiny": {"d_model": 64, "n_heads": 4, "n_layers": 2, "ff_dim": 128, "dropout": 0.1},
    "meggpt-v0": {
        "context": 100, "d_model": 256, "n_heads": 4, "ff_dim": 1024, "activation": "gelu", "dropout": 0.2,
        "norm": "pre", "patch_collapse": "head_mixing", "embedding_projections": False,
        "layers": [{"n_out": 100, "patch_length": 1, "n_unpatched": 0, "band": 8},
                   {"n_out": 80, "patch_length": 4, "n_unpatched": 0},
                   {"n_out": 80, "patch_length": 4, "n_unpatched": 0},
                   {"n_out": 64, "patch_length": 8, "n_unpatched": 0},
                   {"n_out": 16, "patch_length": 8, "n_unpatched": 0}],
    },
}


class _Block(nn.Module):
    """One decoder layer: PASSTA then feed-forward, each with a residual, post- or pre-norm."""

    def __init__(self, attention: PASSTA, d_model: int, ff_dim: int, activation: str, dropout: float,
                 norm: str) -> None:
        super().__init__()
        self.attention, self.norm = attention, norm
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        # Linear -> act -> Linear -> Dropout, with the cheaper CPU masks of brainfm.nn.dropout
        self.ff = FeedForward(d_model, ff_dim, activation, dropout, fast_dropout=True)
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor, channel_mask: torch.Tensor | None) -> torch.Tensor:
        n_out = self.attention.n_out
        if self.norm == "post":  # x = LN(x[-L:] + a); x = LN(x + FF(x))
            x = self.norm1(x[:, :, -n_out:] + self.dropout(self.attention(x, channel_mask)))
            return self.norm2(x + self.ff(x))
        x = x[:, :, -n_out:] + self.dropout(self.attention(self.norm1(x), channel_mask))
        return x + self.ff(self.norm2(x))


class MEGGPT(Backbone):
    """MEG-GPT decoder: token/position/channel/recording embeddings, PASSTA layers, token head.

    Sizes the data fixes (``n_tokens``, ``n_channels``, ``n_recordings``) may be left None: they
    are then taken from the tokenizer and the data facts by :meth:`check_data` before training
    and recorded in the config, so checkpoints rebuild the same shapes.

    Parameters
    ----------
    n_tokens : int | None
        Vocabulary (the tokenizer's ``vocab_size``, token 0 = unknown).
    n_channels : int | None
        Rows of the channel table (the store's channel-vocabulary size; 52 parcels in the paper).
    n_recordings : int | None
        Rows of the recording table (recordings of the data module, ``Batch.recording_ids``).
    context : int
        Input tokens per channel S (80 = 320 ms at 250 Hz).
    d_model, n_heads, n_layers, ff_dim : int
        Width, heads, layers (when ``layers`` is None), feed-forward width.
    activation : "leaky_relu" | "gelu" | "relu"
        Feed-forward activation (LeakyReLU slope 0.2).
    dropout : float
        On the embeddings, attention outputs and feed-forward outputs.
    n_latent, patch_length, n_unpatched : int
        Paper stack: every layer outputs the last ``n_latent`` steps, patches of ``patch_length``,
        ``n_unpatched`` unpatched keys.
    layers : list of dict | None
        Per-layer ``n_out``, ``patch_length``, ``n_unpatched`` and optional ``band`` (overrides the
        paper stack; the re-release profile).
    patch_collapse : "per_patch" | "head_mixing"
        See :class:`~brainfm.nn.passta.PASSTA`.
    norm : "post" | "pre"
        Post-norm (paper) or pre-norm (re-release) blocks.
    channel_attention : bool
        Attention across channels in every layer (off in the paper).
    channel_skip_prob : float
        Probability of skipping channel attention for a training batch.
    recording_dim : int | None
        Width of the recording table before its Linear (None: ``d_model``; 66 in the re-release).
    recording_dropout : float
        Probability of leaving out a window's recording embedding in training (0 in the paper).
    embedding_projections : bool
        A Linear(D -> D) after the token, position and channel tables (paper); the re-release has none.
    """

    generative = True

    def __init__(self, n_tokens: int | None = None, n_channels: int | None = None, n_recordings: int | None = None,
                 context: int = 80, d_model: int = 400, n_heads: int = 4, n_layers: int = 4, ff_dim: int = 400,
                 activation: Literal["leaky_relu", "gelu", "relu"] = "leaky_relu", dropout: float = 0.2,
                 n_latent: int = 40, patch_length: int = 4, n_unpatched: int = 16,
                 layers: list[dict[str, int | None]] | None = None,
                 patch_collapse: Literal["per_patch", "head_mixing"] = "per_patch",
                 norm: Literal["post", "pre"] = "post", channel_attention: bool = False,
                 channel_skip_prob: float = 0.0, recording_dim: int | None = None,
                 recording_dropout: float = 0.0, embedding_projections: bool = True) -> None:
        super().__init__()
        self.context, self.d_model = ensure_int("context", context), ensure_int("d_model", d_model)
        check_option("activation", activation, ("leaky_relu", "gelu", "relu"))
        self.norm = check_option("norm", norm, ("post", "pre"))
        if layers is None:
            layers = [{"n_out": n_latent, "patch_length": patch_length, "n_unpatched": n_unpatched}] * n_layers
        self.recording_dropout = float(recording_dropout)
        self.tokens = self.channels = self.recordings = None  # embedding tables, built by _build
        self._sizes = {"n_tokens": n_tokens, "n_channels": n_channels, "n_recordings": n_recordings}
        self._recording_dim = recording_dim or d_model
        def projection() -> nn.Module:
            return nn.Linear(d_model, d_model) if embedding_projections else nn.Identity()

        self.token_proj, self.position_proj, self.channel_proj = projection(), projection(), projection()
        self.position = nn.Parameter(torch.empty(context, d_model))  # (S, D)
        nn.init.xavier_uniform_(self.position)
        self.recording_proj = nn.Linear(self._recording_dim, d_model)
        self.dropout = FastDropout(dropout)
        blocks, n_in = [], self.context
        for i, spec in enumerate(layers):
            unknown = set(spec) - {"n_out", "patch_length", "n_unpatched", "band"}
            if unknown or "n_out" not in spec:
                raise ConfigError(f"layers[{i}] needs n_out (and may give patch_length, n_unpatched, band); "
                                  f"got {sorted(spec)}.")
            attention = PASSTA(d_model, n_heads, n_in, int(spec["n_out"]), int(spec.get("patch_length") or 1),
                               int(spec.get("n_unpatched") or 0), patch_collapse, spec.get("band"),
                               channel_attention, channel_skip_prob)
            blocks.append(_Block(attention, d_model, ff_dim, activation, dropout, self.norm))
            n_in = int(spec["n_out"])
        self.blocks = nn.ModuleList(blocks)
        self.n_out = n_in
        self.head: nn.Linear | None = None
        if all(v is not None for v in self._sizes.values()):
            self._build()

    # -- sizes fixed by the data -----------------------------------------------------------------

    def _build(self) -> None:
        n_tokens, n_channels, n_recordings = (ensure_int(k, v) for k, v in self._sizes.items())
        self.tokens = nn.Embedding(n_tokens, self.d_model)
        self.channels = nn.Embedding(n_channels, self.d_model)
        self.recordings = nn.Embedding(n_recordings, self._recording_dim)
        self.head = nn.Linear(self.d_model, n_tokens)
        self.register_buffer("seen", torch.zeros(n_recordings, dtype=torch.bool))  # trained recordings
        if hasattr(self, "_config"):
            self._config.update(self._sizes)

    @property
    def n_tokens(self) -> int:
        """Vocabulary size (0 before the sizes are known)."""
        return int(self._sizes["n_tokens"] or 0)

    @property
    def feature_dim(self) -> int:
        """Width D of :meth:`features`."""
        return self.d_model

    def check_data(self, facts: DataFacts, tokenizer: Any = None) -> None:
        """Take the vocabulary, channel table and recording count from the data, or refuse data that does not fit.

        Parameters
        ----------
        facts : DataFacts
            The training data's facts (``recording_types`` lists every recording).
        tokenizer : Tokenizer | None
            The sample tokenizer (its ``vocab_size`` is the token vocabulary).
        """
        needed = {"n_tokens": getattr(tokenizer, "vocab_size", None), "n_channels": facts.vocabulary_size,
                  "n_recordings": len(facts.recording_types)}
        if needed["n_tokens"] is None and self._sizes["n_tokens"] is None:
            raise ConfigError("MEGGPT needs a sample tokenizer (model.tokenizer) or n_tokens.")
        if self.head is None:
            self._sizes = {k: self._sizes[k] if self._sizes[k] is not None else v for k, v in needed.items()}
            self._build()
            return
        if needed["n_tokens"] is not None and needed["n_tokens"] != self._sizes["n_tokens"]:
            raise ConfigError(f"The tokenizer has {needed['n_tokens']} tokens, the model's vocabulary "
                              f"{self._sizes['n_tokens']}: use the tokenizer the model was trained with.")
        for key, what, fix in (("n_recordings", "recordings", "--data.datasets to select fewer"),
                               ("n_channels", "channel names", "--data.freeze_vocabulary true")):
            if needed[key] > self._sizes[key]:
                raise ConfigError(f"The data has {needed[key]} {what}, more than the {self._sizes[key]} the "
                                  f"model's {key[2:]} embedding holds; use {fix}, or a model with {key} >= "
                                  f"{needed[key]}.")

    # -- the model ------------------------------------------------------------------------------

    def embed(self, tokens: torch.Tensor, channel_ids: torch.Tensor, recording_ids: torch.Tensor | None) -> torch.Tensor:
        """Summed embeddings (B, C, S, D) of tokens (B, C, S); no recording term where ``recording_ids`` is None or -1."""
        if self.head is None:
            raise ConfigError("MEGGPT's vocabulary, channel and recording sizes are unknown: give them or call "
                              "check_data(facts, tokenizer) first.")
        b, c, s = tokens.shape
        if s > self.context:
            raise ConfigError(f"{s} input tokens per channel exceed the model's context of {self.context}.")
        x = self.token_proj(self.tokens(tokens))  # (B, C, S, D), a fresh tensor: the sums below are in place
        x.add_(self.position_proj(self.position[:s]))  # (S, D) broadcast over B, C
        per_channel = self.channel_proj(self.channels(channel_ids))  # (B, C, D)
        if recording_ids is not None:
            use = recording_ids >= 0
            if self.training:
                self.seen[recording_ids[use]] = True
                if self.recording_dropout:
                    use &= torch.rand(use.shape, device=use.device) >= self.recording_dropout
            else:
                use &= self.seen[recording_ids.clamp_min(0)]
            r = self.recording_proj(self.recordings(recording_ids.clamp_min(0)))  # (B, D)
            per_channel = per_channel + (r * use[:, None].to(r.dtype))[:, None]  # (B, C, D)
        x.add_(per_channel[:, :, None])  # (B, C, 1, D) broadcast over S
        return self.dropout(x)

    def hidden(self, tokens: torch.Tensor, channel_ids: torch.Tensor, recording_ids: torch.Tensor | None = None,
               channel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output (B, C, n_out, D) of tokens (B, C, context)."""
        if tokens.shape[-1] != self.context:
            raise ConfigError(f"MEGGPT reads exactly {self.context} tokens per channel, got {tokens.shape[-1]}.")
        x = self.embed(tokens, channel_ids, recording_ids)
        for block in self.blocks:
            x = block(x, channel_mask)  # (B, C, n_out of the layer, D)
        return x

    def forward(self, tokens: torch.Tensor, channel_ids: torch.Tensor, recording_ids: torch.Tensor | None = None,
                channel_mask: torch.Tensor | None = None, last: int | None = None) -> torch.Tensor:
        """Next-token logits (B, C, n_out, n_tokens) for tokens (B, C, context): index q predicts token
        ``context - n_out + q + 1``; ``last`` keeps only the last positions."""
        x = self.hidden(tokens, channel_ids, recording_ids, channel_mask)
        assert self.head is not None
        return self.head(x if last is None else x[:, :, -last:])

    def features(self, batch: Any, tokenizer: Any = None) -> torch.Tensor:
        """Decoder outputs as token features (B, N, D), N = chunks x C x n_out, without the recording term.

        The window's tokens are cut into consecutive chunks of ``context`` tokens (the spec's
        zero-shot features take the first ``context`` of an epoch); the recording embedding is
        left out (recordings are transductive).
        """
        tokens = _tokens_of(batch, tokenizer)
        b, c, t = tokens.shape
        n = t // self.context
        if n == 0:
            raise ConfigError(f"Windows of {t} tokens are shorter than MEG-GPT's context of {self.context}: "
                              "use longer windows.")
        chunks = tokens[..., : n * self.context].reshape(b, c, n, self.context).transpose(1, 2).reshape(b * n, c, -1)
        channel_ids = batch.channel_ids.repeat_interleave(n, 0)
        mask = batch.channel_mask.repeat_interleave(n, 0)
        h = self.hidden(chunks, channel_ids, None, mask)  # (B n, C, L, D)
        h = h * mask[:, :, None, None].to(h.dtype)
        return h.reshape(b, n * c * self.n_out, self.d_model)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n_steps: int, channel_ids: torch.Tensor,
                 recording_ids: torch.Tensor | None = None, temperature: float = 1.0, top_p: float | None = None,
                 top_k: int | None = None, allow_oov: bool = False, generator: torch.Generator | None = None,
                 batch_size: int | None = None, tokenizer: Any = None) -> torch.Tensor:
        """Sample continuations (spec §6): each step reads the last ``context`` tokens, samples every channel.

        Parameters
        ----------
        prompt : torch.Tensor of int64, shape (B, C, context)
            Starting tokens.
        n_steps : int
            Tokens to generate per channel.
        channel_ids : torch.Tensor of int64, shape (B, C)
            Channel-vocabulary ids.
        recording_ids : torch.Tensor of int64, shape (B,) | None
            Recording labels to condition on (None or -1: none).
        temperature : float
            Logits are divided by it; 0 is greedy decoding.
        top_p, top_k : float | int | None
            Nucleus / top-k filtering (None: off).
        allow_oov : bool
            Allow token 0 (unknown); by default its logit is -inf.
        generator : torch.Generator | None
            Random source (seeded for reproducible output).
        batch_size : int | None
            Rows sampled together (None: all); the output does not depend on it.
        tokenizer : Tokenizer | None
            Unused (:class:`~brainfm.checkpoint.PretrainedModel` passes it); detokenise the result with it.

        Returns
        -------
        tokens : torch.Tensor of int64, shape (B, C, n_steps)
            The generated tokens, without the prompt.
        """
        b, c, s = prompt.shape
        if s != self.context:
            raise ConfigError(f"The prompt has {s} tokens per channel; MEG-GPT's context is {self.context}.")
        if channel_ids.shape != (b, c):
            raise ConfigError(f"The prompt has {c} channels but channel_ids has shape {tuple(channel_ids.shape)}.")
        rows = batch_size or b
        # one uniform draw per generated token, fixed up front: the output does not depend on batch_size
        uniform = torch.rand(b, c, n_steps, generator=generator, device=prompt.device, dtype=torch.float64)
        out = []
        for start in range(0, b, rows):
            part = slice(start, start + rows)
            rec = None if recording_ids is None else recording_ids[part]
            out.append(self._sample(prompt[part], channel_ids[part], rec, uniform[part], temperature, top_p, top_k,
                                    allow_oov))
        return torch.cat(out)

    def _sample(self, prompt: torch.Tensor, channel_ids: torch.Tensor, recording_ids: torch.Tensor | None,
                uniform: torch.Tensor, temperature: float, top_p: float | None, top_k: int | None,
                allow_oov: bool) -> torch.Tensor:
        b, c, _ = prompt.shape
        n_steps = uniform.shape[-1]
        tokens = torch.empty(b, c, self.context + n_steps, dtype=torch.long, device=prompt.device)
        tokens[..., : self.context] = prompt
        for step in range(n_steps):
            end = self.context + step
            logits = self(tokens[..., end - self.context: end], channel_ids, recording_ids, last=1)[:, :, 0]
            tokens[..., end] = sample_tokens(logits.float(), temperature, top_p, top_k, allow_oov,
                                             uniform=uniform[..., step])
        return tokens[..., self.context:]


def sample_tokens(logits: torch.Tensor, temperature: float = 1.0, top_p: float | None = None,
                  top_k: int | None = None, allow_oov: bool = False,
                  generator: torch.Generator | None = None, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Sample one token per row of logits (..., V) after temperature, top-k and nucleus filtering.

    Parameters
    ----------
    logits : torch.Tensor, shape (..., V)
        Unnormalised scores.
    temperature : float
        Divisor; 0 returns the argmax (greedy).
    top_p : float | None
        Keep the smallest set of tokens whose probability reaches ``top_p``.
    top_k : int | None
        Keep the ``top_k`` most likely tokens.
    allow_oov : bool
        Allow token 0; otherwise it is never drawn.
    generator : torch.Generator | None
        Random source (when ``uniform`` is None).
    uniform : torch.Tensor, shape (...) | None
        Uniform draws in [0, 1) to invert the filtered distribution with (inverse-CDF sampling).

    Returns
    -------
    tokens : torch.Tensor of int64, shape (...)
        One draw per row.
    """
    logits = logits.clone()
    if not allow_oov:
        logits[..., 0] = -math.inf
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # tokens after the nucleus is full
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -math.inf))
    if uniform is None:
        uniform = torch.rand(logits.shape[:-1], generator=generator, device=logits.device, dtype=torch.float64)
    cdf = F.softmax(logits.double(), dim=-1).cumsum(-1)  # (..., V)
    draw = torch.searchsorted(cdf, (uniform.double() * cdf[..., -1:].squeeze(-1))[..., None], right=True)
    # never past the last token with non-zero probability (float rounding at the top of the CDF)
    last = (cdf < cdf[..., -1:]).sum(-1, keepdim=True)
    return torch.minimum(draw, last).squeeze(-1)


def _tokens_of(batch: Any, tokenizer: Any) -> torch.Tensor:
    """Tokens (B, C, T) of a batch: its cached codes when present, else the tokenizer's (no gradient)."""
    codes = getattr(batch, "codes", None)
    if codes is not None:  # cached by brainfm tokenize; -1 (no code) and masked channels read as token 0
        return codes.long().clamp_min(0).masked_fill(~batch.channel_mask[..., None], 0)
    if tokenizer is None:
        raise ConfigError("MEG-GPT needs a sample tokenizer, or batches with cached codes (brainfm tokenize).")
    with torch.no_grad():
        return tokenizer.encode(batch).long()
