"""A checkpoint at the end of every fit, whatever stopped it (:class:`FinalCheckpoint`).

Lightning's default ``ModelCheckpoint`` saves after a validation, or at a training epoch's end
only when validation runs once per epoch. A run that stops before its first validation
(``max_steps`` below ``val_check_interval``, ``check_val_every_n_epoch`` past ``max_epochs``,
``max_time``) or after steps that follow the last validation would otherwise end without a
checkpoint of its final weights, leaving nothing to resume or export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from brainfm._logging import logger

__all__ = ["FinalCheckpoint"]


class FinalCheckpoint(Checkpoint):
    """Write a full checkpoint of the last training step unless one of that step exists.

    It is written when the training epoch that ends the fit ends (``max_steps`` or
    ``max_epochs`` reached, or ``trainer.should_stop`` set, e.g. by ``max_time`` or early
    stopping), at the moment a ``ModelCheckpoint(save_on_train_epoch_end=True)`` would save,
    so that it resumes exactly as other checkpoints do (weights, optimiser, scheduler, loader
    position, random states). As a :class:`~lightning.pytorch.callbacks.Checkpoint` it runs
    after the ``ModelCheckpoint`` callbacks, and writes nothing when any of them (or anything
    else) already wrote a full checkpoint at this step; weights-only files do not count, since
    they cannot resume.

    The file goes beside the first ``ModelCheckpoint``'s files (``<log dir>/checkpoints`` by
    default) under Lightning's default name, ``epoch=E-step=S.ckpt``; when that callback keeps
    a ``last.ckpt`` (``save_last``) and has not written one, the final checkpoint is that file.
    Writing goes through the Trainer, so it is atomic with brainfm's checkpoint I/O.
    """

    def __init__(self) -> None:
        super().__init__()
        self._saved_step: int | None = None
        self.final_path: Path | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Note the step of every full checkpoint written (only full ones reach this hook)."""
        self._saved_step = int(trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """At the end of the epoch that ends the fit, write the final checkpoint if none exists for this step."""
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or trainer.fast_dev_run:
            return
        step = int(trainer.global_step)
        if step == 0 or self._saved_step == step or not _fit_ends_here(trainer):
            return
        holder = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)), None)
        folder = Path(holder.dirpath) if holder is not None and holder.dirpath else Path(trainer.default_root_dir) / "checkpoints"
        name = f"epoch={trainer.current_epoch}-step={step}.ckpt"
        as_last = holder is not None and bool(holder.save_last) and not getattr(holder, "_last_checkpoint_saved", "")
        if as_last:
            name = f"{holder.CHECKPOINT_NAME_LAST}{holder.FILE_EXTENSION}"
        path = folder / name
        trainer.save_checkpoint(path, weights_only=False)
        self.final_path = path
        if as_last:
            # the callback's own end-of-training save of last.ckpt would be a second file for this step
            holder.last_model_path = str(path)
            holder._last_checkpoint_saved = str(path)
        logger.info("final checkpoint at step %d (no checkpoint of that step existed): %s", step, path)


def _fit_ends_here(trainer: L.Trainer) -> bool:
    """Whether ``fit`` stops after the training epoch now ending (the fit loop's own stopping rules)."""
    fit_loop = trainer.fit_loop
    max_steps = fit_loop.max_steps
    if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
        return True
    max_epochs = fit_loop.max_epochs
    # the epoch now ending already counts as processed at on_train_epoch_end
    if max_epochs is not None and max_epochs >= 0 and fit_loop.epoch_progress.current.processed >= max_epochs:
        return True
    if trainer.should_stop:
        min_epochs, min_steps = fit_loop.min_epochs, fit_loop.min_steps
        epochs_met = not min_epochs or fit_loop.epoch_progress.current.processed >= min_epochs
        steps_met = not min_steps or trainer.global_step >= min_steps
        return epochs_met and steps_met
    return False
