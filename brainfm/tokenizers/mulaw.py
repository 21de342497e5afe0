"""The mu-law tokenizer: a fixed baseline (MEG-GPT spec §4.5, Cho2026's mu-law tokenizer).

The (z-scored) signal is divided by ``scale``, clipped to [-1, 1], companded with
``F(x) = sign(x) log(1 + mu |x|) / log(1 + mu)``, and quantised into ``n_bins`` uniform bins
of the companded range; a token decodes to its bin centre, expanded back. Token 0 is
reserved (masked channels, unknown tokens), so ids run 1 .. ``n_bins``.
"""

from __future__ import annotations

import math

import torch

from brainfm._check import check_range, ensure_int
from brainfm.tokenizers.base import SampleTokenizer

__all__ = ["MuLawTokenizer"]


class MuLawTokenizer(SampleTokenizer):
    """Mu-law companding with uniform quantisation; nothing is learned.

    Parameters
    ----------
    n_bins : int
        Quantisation bins (Cho2026: 256, 182, 108 or 54); ``vocab_size`` is ``n_bins + 1``.
    mu : float
        Companding constant.
    scale : float
        The input is divided by this before clipping to [-1, 1] (4 for z-scored signals:
        four standard deviations reach the last bin).
    """

    def __init__(self, n_bins: int = 256, mu: float = 255.0, scale: float = 4.0) -> None:
        super().__init__()
        self.n_bins = ensure_int("n_bins", n_bins)
        check_range("n_bins", self.n_bins, 2, None)
        check_range("mu", mu, 0, None, inclusive=False)
        check_range("scale", scale, 0, None, inclusive=False)
        self.mu, self.scale = float(mu), float(scale)

    @property
    def vocab_size(self) -> int:
        """``n_bins + 1`` (token 0 is reserved)."""
        return self.n_bins + 1

    def compand(self, signal: torch.Tensor) -> torch.Tensor:
        """The companded value in [-1, 1] of every sample."""
        x = (signal / self.scale).clamp(-1.0, 1.0)
        return torch.sign(x) * torch.log1p(self.mu * x.abs()) / math.log1p(self.mu)

    def expand(self, companded: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`compand` (in signal units)."""
        y = companded
        return torch.sign(y) * torch.expm1(y.abs() * math.log1p(self.mu)) / self.mu * self.scale

    def tokenize(self, signal: torch.Tensor) -> torch.Tensor:
        """Token ids 1 .. ``n_bins`` of every sample."""
        y = self.compand(signal)
        bins = torch.floor((y + 1.0) * (self.n_bins / 2.0)).long().clamp(0, self.n_bins - 1)
        return bins + 1

    def bin_centres(self) -> torch.Tensor:
        """Companded value each token decodes to, token 0 (value 0) included."""
        centres = -1.0 + (torch.arange(self.n_bins, dtype=torch.float64) + 0.5) * (2.0 / self.n_bins)
        return torch.cat([torch.zeros(1, dtype=torch.float64), centres])

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Bin centres, expanded back to signal units; token 0 gives 0."""
        values = self.expand(self.bin_centres().to(torch.float32))
        values[0] = 0.0
        return values.to(tokens.device)[tokens]
