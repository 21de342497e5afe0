"""A plain contrastive training loop for one modality adapter (stage 1, spec §5.2).

Kept small and deterministic (an explicit ``torch.Generator`` for batches); the CLI's
Lightning training uses the same adapter and loss modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from brainfm._logging import logger
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss

_M = TypeVar("_M", bound=nn.Module)

__all__ = ["encode", "seeded_init", "train_contrastive"]


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
    inputs: torch.Tensor,
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
    inputs : Tensor of shape (N, ...)
        Training inputs.
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
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs and targets differ in length: {inputs.shape[0]} and {targets.shape[0]}.")
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(seed)  # dropout and augmentations draw from the global generator
        return _train(model, loss, inputs, targets, n_steps, batch_size, lr, weight_decay, grad_clip, seed)


def _train(
    model: nn.Module,
    loss: ContrastiveLoss,
    inputs: torch.Tensor,
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
    batch_size = min(batch_size, inputs.shape[0])
    order = torch.randperm(inputs.shape[0], generator=generator)
    position = 0
    losses = []
    model.train()
    for step in range(n_steps):
        if position + batch_size > order.numel():
            order = torch.randperm(inputs.shape[0], generator=generator)
            position = 0
        index = order[position : position + batch_size]
        position += batch_size
        value = loss(model(inputs[index]), targets[index])
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimiser.step()
        losses.append(float(value.detach()))
        if step % 50 == 0:
            logger.debug("step %d: contrastive loss %.4f", step, losses[-1])
    return losses


@torch.no_grad()
def encode(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Features of ``inputs`` in evaluation mode, as a float32 array (N, D).

    Parameters
    ----------
    model : nn.Module
        The trained model.
    inputs : Tensor of shape (N, ...)
        Inputs.
    batch_size : int
        Items per forward pass.

    Returns
    -------
    features : ndarray of shape (N, D)
    """
    was_training = model.training
    model.eval()
    out = [model(inputs[i : i + batch_size]) for i in range(0, inputs.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(out).float().numpy()
