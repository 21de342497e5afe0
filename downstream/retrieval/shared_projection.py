"""Shared projection: a soft mixture of experts over frozen modality adapters (spec §4.2).

Stage 2 of BrainFLORA loads one trained adapter per modality, freezes it, and trains only a
soft-routing mixture of linear experts (and the loss's logit scale) so that every modality
lands in one concept space:

    adapter[modality](x)  (B, 1024)   frozen, evaluation mode by default
    experts: Linear(1024 -> 5 * 1024) viewed as (B, 5, 1024)
    router:  Linear(1024 -> 2048) -> ReLU -> Linear(2048 -> 5) -> sigmoid, normalised to sum 1
    output:  sum_e router_e * expert_e  (B, 1024)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter

__all__ = ["SharedProjection", "SoftMoE", "adapter_out_dim"]


def adapter_out_dim(adapter: nn.Module) -> int:
    """Concept-space width of an adapter (a ``ModalityAdapter`` or any module with ``out_dim``)."""
    config = getattr(adapter, "config", None)
    return int(config.out_dim if isinstance(config, AdapterConfig) else adapter.out_dim)


class SoftMoE(nn.Module):
    """Soft-routing mixture of linear experts.

    Parameters
    ----------
    dim : int
        Input and output width (1024).
    n_experts : int
        Number of linear experts (5).
    router_hidden : int
        Hidden width of the router (2048).
    """

    def __init__(self, dim: int = 1024, n_experts: int = 5, router_hidden: int = 2048) -> None:
        super().__init__()
        self.dim = dim
        self.n_experts = n_experts
        self.experts = nn.Linear(dim, n_experts * dim)  # all experts in one matrix
        self.router = nn.Sequential(nn.Linear(dim, router_hidden), nn.ReLU(), nn.Linear(router_hidden, n_experts))

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """Router weights (B, n_experts): sigmoid scores normalised to sum to 1 per sample."""
        scores = torch.sigmoid(self.router(x))
        return scores / scores.sum(dim=-1, keepdim=True)

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert's output, (B, n_experts, dim)."""
        return self.experts(x).view(x.shape[0], self.n_experts, self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Router-weighted sum of the experts' outputs, (B, dim)."""
        weights = self.routing(x)  # (B, E)
        return torch.einsum("be,bed->bd", weights, self.expert_outputs(x))


class SharedProjection(nn.Module):
    """Frozen per-modality adapters followed by one trainable :class:`SoftMoE`.

    Parameters
    ----------
    adapters : mapping of str to ModalityAdapter | nn.Module
        Trained adapters by modality name ("eeg", "meg", "fmri", ...), Medformer adapters or
        pretrained-backbone adapters (``BackboneAdapter``). They are frozen here.
    moe : SoftMoE | None
        The shared projection; a default ``SoftMoE`` of the adapters' output width if None.
    frozen_adapters_train_mode : bool
        Reproduce the reference, which leaves the frozen adapters in training mode (BatchNorm
        statistics, dropout and augmentations active). By default they run in evaluation mode,
        so the same batch always gives the same adapter output.
    """

    def __init__(
        self,
        adapters: Mapping[str, ModalityAdapter | nn.Module],
        moe: SoftMoE | None = None,
        frozen_adapters_train_mode: bool = False,
    ) -> None:
        super().__init__()
        if not adapters:
            raise ValueError("adapters is empty; give at least one trained modality adapter.")
        widths = {name: adapter_out_dim(adapter) for name, adapter in adapters.items()}
        if len(set(widths.values())) != 1:
            raise ValueError(f"All adapters must share one output width, got {widths}.")
        self.adapters = nn.ModuleDict(dict(adapters))
        self.adapters.requires_grad_(False)
        self.moe = moe if moe is not None else SoftMoE(dim=next(iter(widths.values())))
        self.frozen_adapters_train_mode = frozen_adapters_train_mode
        self.train()

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names, in the adapters' order."""
        return tuple(self.adapters.keys())

    def train(self, mode: bool = True) -> SharedProjection:
        """Set training mode; frozen adapters stay in evaluation mode unless the parity flag is set."""
        super().train(mode)
        self.adapters.train(mode and self.frozen_adapters_train_mode)
        return self

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Concept-space features (B, dim) of a single-modality batch.

        Parameters
        ----------
        x : Tensor
            A batch in the modality's input shape.
        modality : str
            Which adapter to use; every item in the batch is of this modality.

        Returns
        -------
        features : Tensor of shape (B, dim)
        """
        if modality not in self.adapters:
            raise KeyError(f"No adapter for modality {modality!r}; known: {', '.join(self.modalities)}.")
        with torch.no_grad():
            features = self.adapters[modality](x)
        return self.moe(features)
