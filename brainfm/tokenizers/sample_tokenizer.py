"""MEG-GPT's sample-level tokenizer (spec ``meg-gpt.md`` §4): one learned token per sample.

For windows of L = 200 samples, channels folded into the batch ((B, C, L) -> (B C, L, 1)):

1. a one-layer GRU (``n_units`` 128), hidden state zero at each window start, reads the window;
2. token logits alpha_t = LayerNorm(Linear(h_t)) / 0.1 over K = 128 tokens;
3. token weights: training ``w = tau softmax(alpha) + (1 - tau) onehot(argmax(alpha + g))``
   (g Gumbel noise, or 0), the one-hot term without gradient; evaluation ``onehot(argmax alpha)``;
4. decoder ("token kernels"): Conv1d(K, K, ``kernel`` 10, bias) over w, the K outputs summed:
   each token owns a 10-sample waveform, overlap-added ("same" padding 4 left / 5 right,
   or causal 9 left);
5. loss: mean squared error.

The temperature tau falls linearly from 1 to 0 over the training epochs (tau_e = 1 - e / (E - 1)),
set by the engine at each epoch start. After fitting, :meth:`SampleLevelTokenizer.refactor_vocabulary`
drops unused tokens and relabels the rest 1 .. K' by descending count; label 0 is reserved
for tokens outside the vocabulary (and masked channels) and decodes to the bias alone.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from brainfm._check import check_option, ensure_int
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.tokenizers.base import SampleTokenizer, percent_variance_explained

__all__ = ["SampleLevelTokenizer"]


class SampleLevelTokenizer(SampleTokenizer):
    """MEG-GPT's learned per-sample tokenizer (spec defaults).

    Parameters
    ----------
    n_tokens : int
        Initial vocabulary K.
    n_units : int
        GRU units.
    kernel : int
        Samples of each token's waveform (d_token).
    window : int
        Samples per GRU window (the hidden state restarts at each).
    kernel_padding : "same" | "causal"
        Decoder padding: "same" (paper) or "causal" (PyTorch v0 re-release).
    gumbel_noise : bool
        Gumbel noise in the hard term of the training weights (TensorFlow reference) or none (PyTorch).
    logit_scale : float
        Divisor of the normalised logits (0.1 in both references).
    """

    counts_vocabulary = True

    def __init__(self, n_tokens: int = 128, n_units: int = 128, kernel: int = 10, window: int = 200,
                 kernel_padding: Literal["same", "causal"] = "same", gumbel_noise: bool = True,
                 logit_scale: float = 0.1) -> None:
        super().__init__()
        self.n_tokens = ensure_int("n_tokens", n_tokens)
        self.kernel, self.window = ensure_int("kernel", kernel), ensure_int("window", window)
        self.kernel_padding = check_option("kernel_padding", kernel_padding, ("same", "causal"))
        self.gumbel_noise, self.logit_scale = bool(gumbel_noise), float(logit_scale)
        self.gru = nn.GRU(1, n_units, batch_first=True)
        self.to_logits = nn.Linear(n_units, self.n_tokens)
        self.norm = nn.LayerNorm(self.n_tokens)
        self.token_kernels = nn.Conv1d(self.n_tokens, self.n_tokens, self.kernel)
        self.register_buffer("temperature", torch.ones(()))
        # label of each token id (0: outside the vocabulary); identity + 1 until refactored
        self.register_buffer("labels", torch.arange(1, self.n_tokens + 1))
        self.register_buffer("n_labels", torch.tensor(self.n_tokens))

    @property
    def alignment_samples(self) -> int:
        """``window``: the GRU restarts at every multiple of it, so only windows starting there
        get the tokens of the whole recording (the GRU is causal: a window's end does not matter)."""
        return self.window

    # -- vocabulary --------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """K' + 1 (label 0 reserved)."""
        return int(self.n_labels) + 1

    def ids_of_labels(self) -> torch.Tensor:
        """Token id of each label 0 .. K' (-1 for label 0)."""
        ids = torch.full((int(self.n_labels) + 1,), -1, dtype=torch.long, device=self.labels.device)
        used = self.labels > 0
        ids[self.labels[used]] = torch.nonzero(used).flatten()
        return ids

    def refactor_vocabulary(self, counts: torch.Tensor) -> None:
        """Keep the tokens that occur, relabelled 1 .. K' by descending count (spec §4.3).

        Parameters
        ----------
        counts : torch.Tensor, shape (n_tokens,)
            Occurrences of each token id over the training data (:meth:`count_tokens`).
        """
        if counts.shape != (self.n_tokens,):
            raise ConfigError(f"counts must have shape ({self.n_tokens},), got {tuple(counts.shape)}.")
        order = torch.argsort(-counts.to(torch.float64), stable=True)
        kept = order[counts[order] > 0]
        labels = torch.zeros_like(self.labels)
        labels[kept] = torch.arange(1, len(kept) + 1, device=labels.device)
        self.labels.copy_(labels)
        self.n_labels.fill_(len(kept))

    @torch.no_grad()
    def count_tokens(self, signal: torch.Tensor) -> torch.Tensor:
        """Occurrences of each token id (before relabelling) in ``signal`` (..., T)."""
        ids = self.token_ids(signal)
        return torch.bincount(ids.flatten(), minlength=self.n_tokens)

    @torch.no_grad()
    def count_tokens_of(self, batch: Batch) -> torch.Tensor:
        """Occurrences of each token id (before relabelling) in the good channels of ``batch``."""
        ids = self.token_ids(batch.signal)  # (B, C, T)
        return torch.bincount(ids[batch.channel_mask].flatten(), minlength=self.n_tokens)

    # -- the model ----------------------------------------------------------------------------

    def _windows(self, signal: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(..., T) -> (M, window, 1) windows (the last reflect-padded) and T."""
        n_times = signal.shape[-1]
        flat = signal.reshape(-1, n_times)
        missing = (-n_times) % self.window
        if missing:
            mode = "reflect" if missing < n_times else "replicate"
            flat = F.pad(flat[:, None], (0, missing), mode=mode)[:, 0]
        return flat.reshape(-1, self.window, 1), n_times

    def logits(self, signal: torch.Tensor) -> torch.Tensor:
        """Token logits alpha (..., T, K) of every sample."""
        windows, n_times = self._windows(signal)
        hidden, _ = self.gru(windows)
        alpha = self.norm(self.to_logits(hidden)) / self.logit_scale
        return alpha.reshape(*signal.shape[:-1], -1, self.n_tokens)[..., :n_times, :]

    def token_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        """Weights w (..., T, K) from logits: soft/hard mixture in training, one-hot in evaluation."""
        if not self.training:
            return F.one_hot(alpha.argmax(-1), self.n_tokens).to(alpha.dtype)
        noisy = alpha
        if self.gumbel_noise:
            uniform = torch.rand_like(alpha).clamp(1e-10, 1 - 1e-10)
            noisy = alpha - torch.log(-torch.log(uniform))
        hard = F.one_hot(noisy.argmax(-1), self.n_tokens).to(alpha.dtype)
        tau = self.temperature.to(alpha.dtype)
        return tau * alpha.softmax(-1) + (1 - tau) * hard.detach()

    def synthesise(self, weights: torch.Tensor) -> torch.Tensor:
        """Token-kernel convolution of weights (..., T, K) -> signal (..., T)."""
        shape = weights.shape
        w = weights.reshape(-1, shape[-2], shape[-1]).transpose(1, 2)  # (M, K, T)
        left = self.kernel - 1 if self.kernel_padding == "causal" else (self.kernel - 1) // 2
        w = F.pad(w, (left, self.kernel - 1 - left))
        return self.token_kernels(w).sum(1).reshape(shape[:-1])

    def token_ids(self, signal: torch.Tensor) -> torch.Tensor:
        """Token ids 0 .. K - 1 (before relabelling) of every sample."""
        return self.logits(signal).argmax(-1)

    def tokenize(self, signal: torch.Tensor) -> torch.Tensor:
        """Labels 1 .. K' of every sample (0 for tokens outside the vocabulary)."""
        return self.labels[self.token_ids(signal)]

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Signal of labels (..., T): each label's waveform overlap-added; label 0 adds only the bias."""
        ids = self.ids_of_labels()[tokens]
        weights = F.one_hot(ids.clamp_min(0), self.n_tokens).to(self.token_kernels.weight.dtype)
        weights = weights * (ids >= 0)[..., None]
        return self.synthesise(weights)

    def set_progress(self, epoch: int, max_epochs: int | None) -> None:
        """Anneal the temperature: tau = 1 - epoch / (max_epochs - 1), clipped to [0, 1]."""
        if max_epochs is None or max_epochs < 2:
            return
        self.temperature.fill_(min(max(1.0 - epoch / (max_epochs - 1), 0.0), 1.0))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Mean squared error of the reconstruction from the token weights, over good channels; PVE and tau logged."""
        weights = self.token_weights(self.logits(batch.signal))
        reconstruction = self.synthesise(weights)
        mask = batch.channel_mask[..., None].expand_as(batch.signal)
        mse = (reconstruction[mask] - batch.signal[mask]).pow(2).mean()
        return {"loss": mse, "pve": percent_variance_explained(batch.signal[mask], reconstruction[mask].detach()),
                "temperature": self.temperature.detach().clone()}
