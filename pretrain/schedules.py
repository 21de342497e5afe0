"""Learning-rate schedules of the shipped recipes."""

from __future__ import annotations

import math

import torch

__all__ = ["WarmupCosine"]


class WarmupCosine(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up from ``start_factor`` x lr, then cosine decay to ``end_factor`` x lr (BrainOmni spec §4.4).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimiser.
    total_steps : int | None
        Optimisation steps of the run; None: the engine sets the Trainer's estimate before
        the first step.
    warmup_fraction : float
        Share of the steps spent warming up.
    start_factor, end_factor : float
        Learning-rate factors at the first and the last step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, warmup_fraction: float = 0.1,
                 start_factor: float = 0.1, end_factor: float = 0.05) -> None:
        self.total_steps = total_steps
        self.warmup_fraction, self.start_factor, self.end_factor = warmup_fraction, start_factor, end_factor
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """Learning-rate factor at ``step``."""
        total = max(int(self.total_steps or 1), 1)
        warmup = int(total * self.warmup_fraction)
        if step < warmup:
            return self.start_factor + (1 - self.start_factor) * step / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return self.end_factor + (1 - self.end_factor) * 0.5 * (1 + math.cos(math.pi * progress))
