"""A plain contrastive training loop for one modality adapter (stage 1, spec §5.2).

Kept small and deterministic (an explicit ``torch.Generator`` for batches); the CLI's
Lightning training uses the same adapter and loss modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from brainfm._logging import logger
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.sampler import RoundRobinModalitySampler
from brainfm.downstream.retrieval.shared_projection import SharedProjection
from brainfm.loading.batch import Batch

_M = TypeVar("_M", bound=nn.Module)

__all__ = ["encode", "seeded_init", "take_rows", "train_contrastive", "train_shared_projection"]

Inputs = torch.Tensor | Batch


def take_rows(inputs: Inputs, index: torch.Tensor | np.ndarray | slice) -> Inputs:
    """Rows ``index`` of a tensor, or of every field of a :class:`~brainfm.loading.batch.Batch`.

    Parameters
    ----------
    inputs : Tensor | Batch
        Model inputs, items along the first axis.
    index : Tensor | ndarray | slice
        The rows.

    Returns
    -------
    rows : Tensor | Batch
    """
    if isinstance(inputs, Batch):
        return Batch(**{name: None if value is None else value[index] for name, value in inputs.to_dict().items()})
    return inputs[index]


def _length(inputs: Inputs) -> int:
    return len(inputs) if isinstance(inputs, Batch) else int(inputs.shape[0])


def seeded_init(factory: Callable[[], _M], seed: int) -> _M:
    """Build a module with a reproducible initialisation, leaving the global torch RNG as it was.

    Parameters
    ----------
    factory : callable
        Builds the module (``lambda: ModalityAdapter(config)``).
    seed : int
        Seed of the parameter initialisation.

    Returns
    -------
    module : nn.Module
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(seed)
        return factory()


def train_contrastive(
    model: nn.Module,
    loss: ContrastiveLoss,
    inputs: Inputs,
    targets: torch.Tensor,
    n_steps: int,
    batch_size: int = 64,
    lr: float = 3e-4,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` (and the loss's logit scale) to align ``model(inputs)`` with ``targets``.

    Parameters
    ----------
    model : nn.Module
        Maps a batch of inputs to (B, D) features.
    loss : ContrastiveLoss
        The contrastive loss; its ``logit_scale`` is trained too.
    inputs : Tensor of shape (N, ...) | Batch
        Training inputs (a Batch for a pretrained-backbone adapter).
    targets : Tensor of shape (N, D)
        The concept embedding of each input.
    n_steps : int
        Optimiser steps; batches are drawn without replacement, reshuffled each pass.
    batch_size : int
        Items per batch (the reference: 100 for stage 1).
    lr, weight_decay : float
        AdamW settings (the reference: lr 3e-4, library-default weight decay).
    grad_clip : float
        Gradient-norm clip (1.0).
    seed : int
        Seed of the batch order and of the dropout and augmentation draws. The global torch
        random state is forked for the call and restored afterwards.

    Returns
    -------
    losses : list of float
        The loss at every step.
    """
    if _length(inputs) != targets.shape[0]:
        raise ValueError(f"inputs and targets differ in length: {_length(inputs)} and {targets.shape[0]}.")
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(seed)  # dropout and augmentations draw from the global generator
        return _train(model, loss, inputs, targets, n_steps, batch_size, lr, weight_decay, grad_clip, seed)


def _train(
    model: nn.Module,
    loss: ContrastiveLoss,
    inputs: Inputs,
    targets: torch.Tensor,
    n_steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    grad_clip: float,
    seed: int,
) -> list[float]:
    parameters = [p for p in [*model.parameters(), *loss.parameters()] if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n_items = _length(inputs)
    batch_size = min(batch_size, n_items)
    order = torch.randperm(n_items, generator=generator)
    position = 0
    losses = []
    model.train()
    for step in range(n_steps):
        if position + batch_size > order.numel():
            order = torch.randperm(n_items, generator=generator)
            position = 0
        index = order[position : position + batch_size]
        position += batch_size
        value = loss(model(take_rows(inputs, index)), targets[index])
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimiser.step()
        losses.append(float(value.detach()))
        if step % 50 == 0:
            logger.debug("step %d: contrastive loss %.4f", step, losses[-1])
    return losses


def train_shared_projection(
    model: SharedProjection,
    loss: ContrastiveLoss,
    data: Mapping[str, tuple[Inputs, torch.Tensor]],
    n_epochs: int,
    batch_size: int = 250,
    lr: float = 3e-4,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """Stage 2 (spec §5.3): train the shared projection on single-modality batches in turn.

    Parameters
    ----------
    model : SharedProjection
        Frozen adapters plus the mixture of experts; only the trainable parameters (the
        experts and router) and the loss's logit scale are optimised.
    loss : ContrastiveLoss
        The contrastive loss.
    data : mapping of str to (Tensor | Batch, Tensor)
        Per modality (a key of ``model.adapters``): inputs (N, ...) and targets (N, D).
    n_epochs : int
        Passes over every modality's data.
    batch_size : int
        Items per batch (250); incomplete batches are dropped, as in the reference.
    lr, weight_decay, grad_clip : float
        AdamW settings and gradient-norm clip.
    seed : int
        Seed of the batch order and of any dropout in the projection.

    Returns
    -------
    history : list of (str, float)
        The modality and loss of every step.
    """
    unknown = set(data) - set(model.modalities)
    if unknown:
        raise KeyError(f"No adapter for modality(ies) {sorted(unknown)}; known: {', '.join(model.modalities)}.")
    names = list(data)
    sampler = RoundRobinModalitySampler({m: _length(data[m][0]) for m in names}, batch_size, seed=seed)
    offsets = sampler.offsets
    parameters = [p for p in [*model.parameters(), *loss.parameters()] if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    history: list[tuple[str, float]] = []
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(seed)
        for epoch in range(n_epochs):
            sampler.set_epoch(epoch)
            for batch in sampler:
                modality = sampler.batch_modalities[-1]
                index = torch.as_tensor(batch) - offsets[modality]
                inputs, targets = data[modality]
                value = loss(model(take_rows(inputs, index), modality), targets[index])
                optimiser.zero_grad(set_to_none=True)
                value.backward()
                nn.utils.clip_grad_norm_(parameters, grad_clip)
                optimiser.step()
                history.append((modality, float(value.detach())))
    return history


@torch.no_grad()
def encode(model: nn.Module, inputs: Inputs, batch_size: int = 256) -> np.ndarray:
    """Features of ``inputs`` in evaluation mode, as a float32 array (N, D).

    Parameters
    ----------
    model : nn.Module
        The trained model.
    inputs : Tensor of shape (N, ...) | Batch
        Inputs.
    batch_size : int
        Items per forward pass.

    Returns
    -------
    features : ndarray of shape (N, D)
    """
    was_training = model.training
    model.eval()
    out = [model(take_rows(inputs, slice(i, i + batch_size))) for i in range(0, _length(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(out).float().numpy()
