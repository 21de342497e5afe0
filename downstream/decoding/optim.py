"""Fine-tuning optimisation shared by ``brainfm evaluate`` and ``brainfm finetune``: parameter groups, freezing, schedules.

BaRISTA's protocol (``specs/barista.md`` §8) trains the pretrained backbone at one learning
rate and the new head at another (1e-4 and 1e-3), keeps the patch tokenizer frozen, and
scales both learning rates per epoch::

    factor(e) = 0.2 + 0.8 * e / 5      for epochs e = 0 .. 5   (a linear ramp 0.2x -> 1.0x)
              = 0.99 ** (e - 5)        afterwards              (exponential decay)

Every piece is an option of a task's ``models:`` entry (``head_lr``, ``freeze``, ``schedule``)
and of ``brainfm finetune`` (``--model.head_lr`` ...), so other models can use it too.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Literal

from torch import nn

from brainfm.errors import ConfigError

__all__ = ["SCHEDULES", "epoch_factor", "freeze_parameters", "parameter_groups", "schedule_lambda"]

#: Per-epoch learning-rate schedules: a constant rate, or BaRISTA's ramp then decay.
SCHEDULES = ("constant", "ramp_decay")


def epoch_factor(epoch: int, schedule: Literal["constant", "ramp_decay"] = "constant", *, start: float = 0.2,
                 ramp_epochs: int = 5, gamma: float = 0.99) -> float:
    """Learning-rate factor of an epoch (0-based).

    Parameters
    ----------
    epoch : int
        Epoch index, 0 for the first epoch.
    schedule : "constant" | "ramp_decay"
        ``constant``: 1; ``ramp_decay``: linear from ``start`` at epoch 0 to 1 at ``ramp_epochs``,
        then ``gamma ** (epoch - ramp_epochs)``.
    start : float
        Factor of the first epoch (``ramp_decay``).
    ramp_epochs : int
        Epoch at which the ramp reaches 1 (``ramp_decay``).
    gamma : float
        Decay per epoch after the ramp (``ramp_decay``).

    Returns
    -------
    factor : float
        Multiplies every parameter group's base learning rate.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "ramp_decay":
        raise ConfigError(f"Invalid value for the 'schedule' parameter. Allowed values are {SCHEDULES}, "
                          f"but got {schedule!r} instead.")
    if epoch <= ramp_epochs:
        return start + (1.0 - start) * epoch / ramp_epochs
    return float(gamma ** (epoch - ramp_epochs))


def schedule_lambda(schedule: Literal["constant", "ramp_decay"]) -> Callable[[int], float]:
    """``epoch -> factor`` for :class:`torch.optim.lr_scheduler.LambdaLR` (stepped once per epoch)."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"Invalid value for the 'schedule' parameter. Allowed values are {SCHEDULES}, "
                          f"but got {schedule!r} instead.")
    return lambda epoch: epoch_factor(epoch, schedule)


def freeze_parameters(module: nn.Module, patterns: list[str]) -> list[str]:
    """Stop training the parameters whose names match any pattern.

    Parameters
    ----------
    module : torch.nn.Module
        The module (e.g. a classifier's backbone).
    patterns : list of str
        :func:`fnmatch.fnmatchcase` patterns on ``module.named_parameters()`` names, e.g.
        ``"*.temporal_encoder.*"``.

    Returns
    -------
    frozen : list of str
        Names of the parameters frozen.

    Raises
    ------
    ConfigError
        When a pattern matches no parameter (a misspelt name would otherwise train everything).
    """
    names = [name for name, _ in module.named_parameters()]
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            sample = ", ".join(names[:4])
            raise ConfigError(f"The freeze pattern {pattern!r} matches no parameter of the backbone "
                              f"(names look like: {sample}, ...).")
    frozen = []
    for name, parameter in module.named_parameters():
        if any(fnmatchcase(name, pattern) for pattern in patterns):
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def parameter_groups(net: nn.Module, lr: float, head_lr: float | None = None) -> list[dict]:
    """AdamW parameter groups: the head at ``head_lr``, every other trainable parameter at ``lr``.

    Parameters
    ----------
    net : torch.nn.Module
        A network with a ``head`` submodule (a backbone and a head), or any other network.
    lr : float
        Learning rate of the pretrained (non-head) parameters.
    head_lr : float | None
        Learning rate of ``net.head``'s parameters (None: ``lr``).

    Returns
    -------
    groups : list of dict
        ``{"params", "lr", "name"}`` per non-empty group (``backbone``, ``head``); a network
        without a ``head`` submodule is one group at ``lr``.
    """
    head = getattr(net, "head", None)
    if head_lr is None or not isinstance(head, nn.Module):
        return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": lr, "name": "all"}]
    head_ids = {id(p) for p in head.parameters()}
    pretrained = [p for p in net.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": pretrained, "lr": lr, "name": "backbone"},
              {"params": [p for p in head.parameters() if p.requires_grad], "lr": head_lr, "name": "head"}]
    return [group for group in groups if group["params"]]
