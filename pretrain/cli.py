"""``brainfm pretrain fit|validate``: LightningCLI over :class:`PretrainModule` and ``WindowDataModule``.

``brainfm pretrain fit --config configs/pretrain/<recipe>.yaml [--data.store STORE] [--trainer.* ...]``.
Every YAML is validated against the typed signatures of the classes it names; the data facts
are linked from the data module into the model once (``data.index -> model.data_facts``).
brainfm's defaults on top of Lightning's: ``use_distributed_sampler=False`` (the window
sampler shards by rank itself), a CSV logger (plus TensorBoard when installed), checkpoints
written atomically and read with ``weights_only=True`` (:class:`~brainfm.checkpoint.BrainfmCheckpointIO`),
and the resolved config saved as ``config.yaml`` in the run's log folder.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger

from brainfm.checkpoint import BrainfmCheckpointIO
from brainfm.loading.datamodule import WindowDataModule
from brainfm.pretrain.facts import data_facts
from brainfm.pretrain.module import PretrainModule

__all__ = ["PretrainCLI", "SUBCOMMANDS", "run_pretrain"]

#: The subcommands ``brainfm pretrain`` offers.
SUBCOMMANDS = ("fit", "validate")


class PretrainCLI(LightningCLI):
    """LightningCLI with brainfm's links and Trainer defaults."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only ``fit`` and ``validate`` (``test``/``predict`` belong to downstream commands)."""
        return {name: LightningCLI.subcommands()[name] for name in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data facts into the model (stated once, read from the store)."""
        parser.link_arguments("data.index", "model.data_facts", compute_fn=data_facts, apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Add brainfm's checkpoint I/O and default loggers, then build the Trainer."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        plugins = config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(hasattr(p, "save_checkpoint") for p in plugins):
            plugins.append(BrainfmCheckpointIO())
        kwargs["plugins"] = plugins
        if config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(config.get("default_root_dir") or ".")
        return super().instantiate_trainer(**kwargs)


def default_loggers(root: str | Path) -> list[Logger]:
    """A CSV logger under ``root/lightning_logs``, plus TensorBoard in the same version folder when installed.

    Parameters
    ----------
    root : str | pathlib.Path
        The Trainer's ``default_root_dir``.

    Returns
    -------
    loggers : list of Logger
        CSV first (its folder holds the saved config and checkpoints).
    """
    csv = CSVLogger(root, name="lightning_logs")
    loggers: list[Logger] = [csv]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(root, name="lightning_logs", version=csv.version, default_hp_metric=False))
    return loggers


def run_pretrain(argv: Sequence[str]) -> int:
    """Run ``brainfm pretrain`` with these arguments (the subcommand first).

    Parameters
    ----------
    argv : sequence of str
        E.g. ``["fit", "--config", "configs/pretrain/mulaw.yaml", "--data.store", "store/"]``.

    Returns
    -------
    status : int
        0 on success.
    """
    with warnings.catch_warnings():
        # sys.argv keeps the whole `brainfm pretrain ...` line on purpose: Lightning's DDP
        # launcher starts the other ranks by running it again.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
        PretrainCLI(
            PretrainModule,
            WindowDataModule,
            args=list(argv),
            trainer_defaults={"use_distributed_sampler": False},
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "brainfm pretrain", "default_env": False},
            auto_configure_optimizers=False,
        )
    return 0
