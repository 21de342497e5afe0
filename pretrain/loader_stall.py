"""``LoaderStallMonitor``: the share of training step time spent waiting for the next batch.

A step is timed from the end of the previous batch (``on_train_batch_end``) to the end of this
one; the wait is the part before ``on_train_batch_start``, when the fit loop is fetching the
batch from the data loader (and moving it to the device). A loader that cannot keep up shows as
a large share. With a perfect loader the wait is the fit loop's own work between two steps (a
few ms on CPU: a 30 ms step then shows about 10 %). The first batches of every epoch are left
out (workers start, and the time since the previous epoch's end includes validation).

Use it from any recipe::

    brainfm pretrain fit --recipe ... --trainer.callbacks+=brainfm.pretrain.loader_stall.LoaderStallMonitor

It logs ``perf/loader_stall`` (share, 0-1), ``perf/step_time_s`` and ``perf/wait_time_s`` every
step it measures, and keeps the totals in :attr:`LoaderStallMonitor.summary` (the GPU benchmark
``bench/gpu_pretrain.py`` reads them). On CUDA the device is synchronised before each time stamp
(``synchronize``), so a step's time includes its kernels rather than only their launch.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["LoaderStallMonitor"]


class LoaderStallMonitor(Callback):
    """Measure the data-loader stall: waiting time over step time, per step and in total.

    Parameters
    ----------
    skip_first : int
        Batches left out at the start of every epoch (worker start-up).
    log : bool
        Log ``perf/loader_stall``, ``perf/step_time_s`` and ``perf/wait_time_s`` through the module.
    synchronize : bool
        Synchronise the CUDA device before each time stamp (no effect on CPU).
    """

    def __init__(self, skip_first: int = 2, log: bool = True, synchronize: bool = True) -> None:
        super().__init__()
        if isinstance(skip_first, bool) or int(skip_first) < 0:
            raise ValueError(f"skip_first must be a non-negative int, got {skip_first!r}.")
        self.skip_first = int(skip_first)
        self.log = log
        self.synchronize = synchronize
        self.step_times: list[float] = []
        self.wait_times: list[float] = []
        self._last_end: float | None = None
        self._start: float | None = None
        self._in_epoch = 0

    def _now(self, pl_module: L.LightningModule) -> float:
        if self.synchronize and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Forget the previous epoch's last time stamp."""
        self._last_end = None
        self._in_epoch = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        """The batch has arrived: the wait since the previous batch's end is over."""
        self._start = self._now(pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Close the step: record its wait and its total time."""
        end = self._now(pl_module)
        self._in_epoch += 1
        if self._last_end is not None and self._start is not None and self._in_epoch > self.skip_first:
            wait, step = self._start - self._last_end, end - self._last_end
            self.wait_times.append(wait)
            self.step_times.append(step)
            if self.log:
                values = {"perf/loader_stall": wait / step, "perf/step_time_s": step, "perf/wait_time_s": wait}
                pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)
        self._last_end = end

    @property
    def stall_fraction(self) -> float | None:
        """Total waiting time over total step time of the measured steps (None before any)."""
        total = sum(self.step_times)
        return sum(self.wait_times) / total if total > 0 else None

    @property
    def summary(self) -> dict[str, float | int | None]:
        """``n_steps``, ``stall_fraction``, ``mean_step_s``, ``median_step_s`` and ``mean_wait_s``."""
        n = len(self.step_times)
        ordered = sorted(self.step_times)
        return {
            "n_steps": n,
            "stall_fraction": self.stall_fraction,
            "mean_step_s": sum(self.step_times) / n if n else None,
            "median_step_s": ordered[n // 2] if n else None,
            "mean_wait_s": sum(self.wait_times) / n if n else None,
        }
