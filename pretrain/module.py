"""``PretrainModule``: the one LightningModule that trains every recipe (DESIGN §3).

A recipe composes a tokenizer, an optional backbone and an optional objective in YAML:

- tokenizer only (``objective: null``): the tokenizer's own :meth:`~brainfm.tokenizers.Tokenizer.loss`
  is minimised (BrainTokenizer, sample tokenizer, fitted baselines);
- with an objective: ``objective(batch, tokenizer=..., backbone=...)`` returns the loss terms
  (next-token, masked-token, masked-latent objectives of the foundation models).

Facts of the data (:class:`~brainfm.nn.data_facts.DataFacts`) are linked from the data
module once; the tokenizer refuses data it cannot encode before training starts. Every
checkpoint records the modules' configs, the data facts, the training split's recordings
and subjects, the store format version, the preprocessing recipes and the random states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from torch import nn

from brainfm._logging import logger
from brainfm._version import __version__
from brainfm.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    load_state_strict,
    module_spec,
    state_digest,
)
from brainfm.errors import CheckpointError, ConfigError, NonFiniteDataError
from brainfm.loading.batch import Batch
from brainfm.models.base import Backbone, Objective
from brainfm.nn.config import Configurable
from brainfm.nn.data_facts import DataFacts
from brainfm.pretrain.param_groups import exempt_from_decay, parameter_groups
from brainfm.tokenizers.base import Tokenizer

__all__ = ["PretrainModule"]

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def _default_optimizer(params: Iterable[Any]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


class PretrainModule(L.LightningModule):
    """Train whatever the recipe composes: a tokenizer, an optional backbone, an optional objective.

    Parameters
    ----------
    tokenizer : Tokenizer | None
        The tokenizer (trained here when ``objective`` is None, otherwise used by the objective,
        typically a :class:`~brainfm.checkpoint.FrozenTokenizer`); None for models that read the
        signal directly (BaRISTA's patch encoder is part of its backbone).
    backbone : Backbone | None
        A foundation-model backbone (:class:`brainfm.models.Backbone`), or None.
    objective : Objective | None
        Called as ``objective(batch, tokenizer=tokenizer, backbone=backbone)``, returning a dict of
        scalar loss terms with the total under ``"loss"``; None minimises ``tokenizer.loss(batch)``.
    optimizer : callable
        ``params -> torch.optim.Optimizer`` (YAML: ``class_path: torch.optim.AdamW`` with ``init_args``;
        default AdamW with lr 1e-3).
    lr_scheduler : callable | None
        ``optimizer -> LRScheduler``, stepped every optimisation step; a scheduler with a
        ``total_steps`` attribute left at None gets the Trainer's estimated step count.
    data_facts : DataFacts | None
        Facts of the training data, linked from the data module by ``brainfm pretrain``.
    no_weight_decay : list of str | None
        Parameters exempt from the optimiser's weight decay: categories ``norm``, ``bias``,
        ``embedding`` and ``fnmatch`` patterns on parameter names
        (:mod:`brainfm.pretrain.param_groups`); None: one group, all decayed.
    """

    def __init__(
        self,
        tokenizer: Tokenizer | None = None,
        backbone: Backbone | None = None,
        objective: Objective | None = None,
        optimizer: OptimizerFactory = _default_optimizer,
        lr_scheduler: SchedulerFactory | None = None,
        data_facts: DataFacts | None = None,
        no_weight_decay: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.backbone = backbone
        self.objective = objective
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.data_facts = data_facts
        self.no_weight_decay = list(no_weight_decay) if no_weight_decay else None
        self.training_data: dict[str, Any] = {}
        if tokenizer is None and objective is None:
            raise ConfigError("The recipe needs a tokenizer to train, or a backbone and an objective.")
        if objective is None and backbone is not None:
            raise ConfigError("The recipe has a backbone but no objective: name one under model.objective.")
        if data_facts is not None:  # refuse unfit data before any training
            if tokenizer is not None:
                tokenizer.check_data(data_facts)
            if backbone is not None:
                backbone.check_data(data_facts, tokenizer)
            if objective is not None:
                objective.check_data(data_facts, tokenizer, backbone)
        # Tokenizers without trainable weights (mu-law, quantile) are fitted, not optimised. An
        # empty parameter joins their loss (adding 0) so that steps, schedulers, checkpoint
        # intervals, resuming and DDP (which needs a parameter) work as for trained ones.
        self.fit_anchor: nn.Parameter | None = None
        if not any(p.requires_grad for p in self.parameters()):
            self.fit_anchor = nn.Parameter(torch.zeros(0))
        if self.no_weight_decay:
            exempt_from_decay(self, self.no_weight_decay)  # refuse a pattern that names nothing, before training

    # -- steps ----------------------------------------------------------------------------------

    def _window_names(self, batch: Batch, rows: torch.Tensor) -> str:
        names = self._recording_names()
        described = []
        for row in rows[:5].tolist():
            rid = int(batch.recording_ids[row])
            name = names[rid] if names and rid < len(names) else f"recording id {rid}"
            described.append(f"{name!r} from sample {int(batch.start[row])}")
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        return "; ".join(described) + more

    def _recording_names(self) -> list[str]:
        trainer = self._trainer
        data = getattr(trainer, "datamodule", None) if trainer is not None else None
        return list(getattr(data, "recording_names", []) or [])

    def _losses(self, batch: Batch, stage: str) -> dict[str, torch.Tensor]:
        finite = torch.isfinite(batch.signal).flatten(1).all(1)
        if not bool(finite.all()):
            rows = torch.nonzero(~finite).flatten()
            raise NonFiniteDataError(
                f"{stage}: non-finite samples in the window of {self._window_names(batch, rows)}. "
                "Check the recording (brainfm store check) or leave it out with --data.datasets."
            )
        if self.objective is None:
            if hasattr(self.tokenizer, "train_step"):  # step-dependent tokenizers (quantiser warm-up) follow the trainer
                self.tokenizer.train_step = int(self.global_step)
            losses = self.tokenizer.loss(batch)
        else:
            losses = self.objective(batch, tokenizer=self.tokenizer, backbone=self.backbone)
        loss = losses["loss"]
        if not bool(torch.isfinite(loss)):
            rows = torch.arange(len(batch))
            raise NonFiniteDataError(
                f"{stage}: the loss became {float(loss)} on the batch of {self._window_names(batch, rows)}. "
                "Lower the learning rate, or check these recordings."
            )
        return losses

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One training step: the loss terms are logged under ``train/``."""
        losses = self._losses(batch, f"training step {self.global_step}")
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=len(batch),
                      prog_bar=False, on_step=True, on_epoch=False)
        self.log("loss", losses["loss"].detach(), prog_bar=True, batch_size=len(batch), logger=False)
        if self.fit_anchor is not None:
            return losses["loss"].detach() + self.fit_anchor.sum()
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Validation loss terms, averaged over the epoch under ``val/`` (``val/loss`` selects checkpoints).

        Skipped while the tokenizer is not fitted yet (the sanity check before a data-fitted
        tokenizer has seen any training data).
        """
        if self.tokenizer is not None and not self.tokenizer.fitted:
            return
        losses = self._losses(batch, f"validation batch {batch_idx}")
        self.log_dict({f"val/{k}": v.detach() for k, v in losses.items()}, batch_size=len(batch),
                      prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> Any:
        """The optimiser (and the per-step scheduler) from the recipe's factories.

        With ``no_weight_decay`` the optimiser gets two parameter groups, the exempt one with
        ``weight_decay=0`` (:func:`~brainfm.pretrain.param_groups.parameter_groups`).
        """
        params: list[Any] = parameter_groups(self, self.no_weight_decay)
        if len(params) == 1:
            params = params[0]["params"]  # one group: plain parameters, as before
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if hasattr(scheduler, "total_steps") and scheduler.total_steps is None:
            scheduler.total_steps = int(self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- what checkpoints record ----------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Record the training split (recordings, subjects, store, recipes) for checkpoints."""
        data = getattr(self.trainer, "datamodule", None)
        if data is None or not hasattr(data, "split"):
            return
        from brainfm.pretrain.facts import training_record

        self.training_data = training_record(data)
        if getattr(data, "codes", None) is not None and self.tokenizer is not None:
            # cached codes (data.codes) must come from the model's own tokenizer (a frozen wrapper's inner one)
            inner = getattr(self.tokenizer, "inner", None)
            tokenizer = inner if isinstance(inner, Tokenizer) else self.tokenizer
            data.check_codes_tokenizer({**module_spec(tokenizer), "digest": state_digest(tokenizer.state_dict())})

    def _spec(self, module: Configurable | None) -> dict[str, Any] | None:
        return None if module is None else module_spec(module)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the ``"brainfm"`` entry (:mod:`brainfm.checkpoint.format`).

        A tokenizer whose vocabulary comes from token counts (``counts_vocabulary``, MEG-GPT's
        sample tokenizer) first has it refactored from the training split with the current
        weights, so that every checkpoint holds the vocabulary of its own weights.
        """
        if getattr(self.tokenizer, "counts_vocabulary", False) and self.objective is None:
            self._refactor_vocabulary(checkpoint)
        checkpoint["brainfm"] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "brainfm_version": __version__,
            "tokenizer": self._spec(self.tokenizer),
            "backbone": self._spec(self.backbone),
            "objective": self._spec(self.objective),
            "data": self.data_facts.to_dict() if self.data_facts is not None else None,
            "training_data": self.training_data,
            "rng": _rng_state(),
            "rng_at": "epoch_start" if self._epoch_finished() else "batch",
        }

    def _epoch_finished(self) -> bool:
        """Whether the training epoch's last batch has run (the next step starts a new epoch)."""
        trainer = self._trainer
        if trainer is None:
            return False
        return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)

    @torch.no_grad()
    def _refactor_vocabulary(self, checkpoint: dict[str, Any]) -> None:
        """Count tokens over the training split (in evaluation mode, summed over ranks), refactor, and
        write the tokenizer's new buffers into the checkpoint being saved."""
        data = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if data is None or not hasattr(data, "make_dataloader"):
            return
        tokenizer = self.tokenizer
        was_training = tokenizer.training
        tokenizer.eval()
        counts: torch.Tensor | None = None
        try:
            for batch in data.make_dataloader("train", shuffle=False):  # a loader of its own: no sampler state moves
                batch = batch.to(self.device)
                found = tokenizer.count_tokens_of(batch)
                counts = found if counts is None else counts + found
        finally:
            tokenizer.train(was_training)
        if counts is None:
            return
        counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        tokenizer.refactor_vocabulary(counts)
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            for name, buffer in tokenizer.named_buffers():
                if f"tokenizer.{name}" in state:
                    state[f"tokenizer.{name}"] = buffer.detach().clone()
        logger.info("vocabulary refactored from %d training tokens: %d of %d tokens kept",
                    int(counts.sum()), tokenizer.vocab_size - 1, int(counts.numel()))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model; restore the random states (exact resume)."""
        meta = checkpoint.get("brainfm")
        if not isinstance(meta, dict):
            raise CheckpointError("The checkpoint has no 'brainfm' entry: it was not written by brainfm pretrain.")
        for role in ("tokenizer", "backbone", "objective"):
            saved, own = meta.get(role), self._spec(getattr(self, role))
            if (saved or {}).get("class_path") != (own or {}).get("class_path"):
                raise CheckpointError(
                    f"The checkpoint's {role} is {(saved or {}).get('class_path')!r}, this run's is "
                    f"{(own or {}).get('class_path')!r}: resume with the recipe the checkpoint was trained with."
                )
            if saved is not None and own is not None and saved.get("init_args") != own.get("init_args"):
                differ = sorted(k for k in set(saved["init_args"]) | set(own["init_args"])
                                if saved["init_args"].get(k) != own["init_args"].get(k))
                raise CheckpointError(
                    f"The checkpoint's {role} was configured differently: "
                    + "; ".join(f"{k}: checkpoint {saved['init_args'].get(k)!r}, now {own['init_args'].get(k)!r}"
                                for k in differ)
                )
        load_state_strict(self, checkpoint["state_dict"], "the checkpoint")
        if meta.get("rng"):
            self._pending_rng = meta["rng"]
            self._pending_rng_at = meta.get("rng_at", "batch")
        loops = checkpoint.get("loops") or {}
        self._pending_loader_states = ((loops.get("fit_loop") or {}).get("state_dict") or {}).get("combined_loader")

    def on_train_start(self) -> None:
        """Restore the loader position and random states of a checkpoint written at an epoch's end.

        Lightning reloads the training loader's state only when it considers the run to be
        restarting inside an epoch; a checkpoint written after an epoch's last batch in an
        epoch-based run is not, so its loader state (the next epoch, first batch) is loaded
        here, before the epoch starts. The random state of such a checkpoint (written at the
        epoch's end, after its validation, or by a step count that falls on the last batch)
        is the one from before the next epoch's loader iterator is made, which draws from the
        global generator; so it goes back here too, before that draw. States saved inside an
        epoch go back right before the next step (:meth:`on_train_batch_start`).
        """
        self._rng_after_step = None  # nothing of an earlier fit of this module
        states = getattr(self, "_pending_loader_states", None)
        self._pending_loader_states = None
        fit_loop = self.trainer.fit_loop
        if states and getattr(fit_loop, "_combined_loader_states_to_load", None):  # not loaded by Lightning
            loader = self.trainer.train_dataloader
            if len(states) == 1 and callable(getattr(loader, "load_state_dict", None)):
                loader.load_state_dict(states[0])
                fit_loop._combined_loader_states_to_load = []
        if getattr(self, "_pending_rng_at", None) == "epoch_start":
            self._restore_pending_rng()

    def on_train_epoch_start(self) -> None:
        """Tell the tokenizer where training stands (temperature annealing)."""
        max_epochs = self.trainer.max_epochs
        if self.tokenizer is not None:
            self.tokenizer.set_progress(self.current_epoch, max_epochs if max_epochs and max_epochs > 0 else None)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        """Apply random states restored from a checkpoint, right before the first resumed step.

        Not earlier: Lightning draws from the global generator when it creates the epoch's
        loader iterator, after ``on_train_start``, which the interrupted run had done before
        saving.
        """
        self._restore_pending_rng()

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        """Keep the random states after this step, for a validation that may follow (:meth:`on_validation_epoch_end`)."""
        self._rng_after_step = _collect_rng_states(include_cuda=torch.cuda.is_available())

    def on_validation_epoch_end(self) -> None:
        """Put back the random states of the last training step: validation leaves training's draws unchanged.

        Validation draws from the global generators (its loader's iterator takes a seed from
        torch's; objectives draw masks in evaluation too). A checkpoint written at a step right
        before a validation holds the states before those draws, so a run resumed from it would
        otherwise continue from other states than the uninterrupted run. Restored here, before
        the ``ModelCheckpoint`` callbacks save at the validation's end, training draws the same
        numbers whether or not, and however often, it validates. Nothing is restored after the
        sanity check or a validation that no training step of this run preceded.
        """
        state = getattr(self, "_rng_after_step", None)
        if state is not None and not self.trainer.sanity_checking:
            _set_rng_states(state)

    def _restore_pending_rng(self) -> None:
        state = getattr(self, "_pending_rng", None)
        if state is not None:
            _set_rng_state(state)
            self._pending_rng = None
            self._pending_rng_at = None
            logger.info("random states restored from the checkpoint")


def _rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU, CUDA) random states as plain values and tensors.

    Lightning's collector, with NumPy's key array as a tensor so that the checkpoint loads
    with ``weights_only=True``.
    """
    state = _collect_rng_states(include_cuda=torch.cuda.is_available())
    kind, keys, pos, has_gauss, cached = state.pop("numpy")
    state["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    saved = state["numpy"]
    numpy_state = (saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["pos"], saved["has_gauss"],
                   saved["cached_gaussian"])
    _set_rng_states({**state, "numpy": numpy_state, "python": _tuples(state["python"])})


def _tuples(value: Any) -> Any:
    """Lists back to tuples (``random.setstate`` wants the nested tuples ``getstate`` gave)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
