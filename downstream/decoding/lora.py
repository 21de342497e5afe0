"""LoRA (Hu et al. 2021) on a backbone's attention projections: a small module, no peft needed.

``apply_lora(model, rank)`` freezes every weight of ``model`` and wraps each ``nn.Linear``
whose name marks an attention projection (``q``, ``k``, ``v``, ``qkv``, ``query``, ``key``,
``value``, ``qkv_proj`` (brainfm.nn.attention), ``in_proj``, ``out_proj``, ``o_proj``, ``out``, ...) so that it computes
``W x + (alpha / r) B A x`` with A (r, in) Gaussian and B (out, r) zero at start: the
wrapped model starts exactly as the pretrained one, and only A and B train.
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["ATTENTION_NAMES", "LoRALinear", "apply_lora", "merge_lora"]

#: Last name parts of the attention projections LoRA adapts.
ATTENTION_NAMES = re.compile(r"(^|\.)(q|k|v|qkv|qkv_proj|query|key|value|to_q|to_k|to_v|q_proj|k_proj|v_proj|in_proj|out_proj|o_proj|out)$")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / rank)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``base(x) + scale * x A^T B^T``."""
        return self.base(x) + self.scale * (x @ self.lora_a.T) @ self.lora_b.T


def apply_lora(model: nn.Module, rank: int = 4) -> list[str]:
    """Freeze ``model`` and wrap its attention projections with LoRA, in place.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone.
    rank : int
        Rank of the updates.

    Returns
    -------
    wrapped : list of str
        Names of the wrapped layers (empty when the model has no attention projection).
    """
    for p in model.parameters():
        p.requires_grad_(False)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and ATTENTION_NAMES.search(name)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, rank))
    return [name for name, _ in targets]


def merge_lora(model: nn.Module) -> list[str]:
    """Fold every LoRA update into its base layer, in place: ``W <- W + scale * B A``.

    The merged model computes the same function with plain ``nn.Linear`` layers (so its
    weights load into an unwrapped model of the same architecture); its parameters stay frozen
    or trainable as the base layers were.

    Parameters
    ----------
    model : torch.nn.Module
        A model wrapped by :func:`apply_lora`.

    Returns
    -------
    merged : list of str
        Names of the merged layers.
    """
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    for name, module in targets:
        with torch.no_grad():
            module.base.weight += module.scale * module.lora_b @ module.lora_a
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.base)
    return [name for name, _ in targets]
