"""``brainfm pretrain fit|validate``: LightningCLI over :class:`PretrainModule` and ``WindowDataModule``.

``brainfm pretrain fit --config configs/pretrain/<recipe>.yaml [--data.store STORE] [--trainer.* ...]``.
Every YAML is validated against the typed signatures of the classes it names; the data facts
are linked from the data module into the model once (``data.index -> model.data_facts``).
brainfm's defaults on top of Lightning's: ``use_distributed_sampler=False`` (the window
sampler shards by rank itself), a CSV logger (plus TensorBoard when installed), checkpoints
written atomically and read with ``weights_only=True`` (:class:`~brainfm.checkpoint.BrainfmCheckpointIO`),
the resolved config saved as ``config.yaml`` in the run's log folder, and a final checkpoint
of the last step when no other callback wrote one (:class:`~brainfm.pretrain.final_checkpoint.FinalCheckpoint`).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger

from brainfm._check import suggest
from brainfm.checkpoint import BrainfmCheckpointIO
from brainfm.errors import ConfigError
from brainfm.loading.datamodule import WindowDataModule
from brainfm.pretrain.facts import data_facts
from brainfm.pretrain.final_checkpoint import FinalCheckpoint
from brainfm.pretrain.module import PretrainModule

__all__ = ["SUBCOMMANDS", "PretrainCLI", "default_loggers", "recipe_path", "run_pretrain"]

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
        """Add brainfm's checkpoint I/O, default loggers and final checkpoint, then build the Trainer.

        Unless ``enable_checkpointing`` is false, a :class:`FinalCheckpoint` joins the callbacks,
        after Lightning's default ``ModelCheckpoint`` (added here when the config names no
        checkpoint callback, as Lightning would: a ``Checkpoint`` in the list stops it adding one).
        """
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        plugins = config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(hasattr(p, "save_checkpoint") for p in plugins):
            plugins.append(BrainfmCheckpointIO())
        kwargs["plugins"] = plugins
        if config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(config.get("default_root_dir") or ".")
        if config.get("enable_checkpointing") is not False:
            callbacks = config.get("callbacks")
            callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
            if not any(isinstance(c, Checkpoint) for c in callbacks):
                callbacks.append(ModelCheckpoint())
            if not any(isinstance(c, FinalCheckpoint) for c in callbacks):
                callbacks.append(FinalCheckpoint())
            kwargs["callbacks"] = callbacks
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


def recipe_path(name: str, size: str | None = None) -> Path:
    """The shipped YAML of a recipe (``configs/pretrain/<name>.yaml``) or of one of its size presets
    (``configs/pretrain/<name>/<size>.yaml``).

    Parameters
    ----------
    name : str
        Recipe name (``mulaw``, ``quantile``, ...).
    size : str | None
        Size preset (``tiny``, ``base``, ...); None: the recipe itself.

    Returns
    -------
    path : pathlib.Path
        The file.
    """
    folder = Path(str(importlib.resources.files("brainfm.configs") / "pretrain"))
    recipes = sorted(p.stem for p in folder.glob("*.yaml"))
    if name not in recipes:
        raise ConfigError(
            f"Invalid value for the '--recipe' parameter. Allowed values are {', '.join(recipes)}, "
            f"but got {name!r} instead.{suggest(name, recipes)}"
        )
    if size is None:
        return folder / f"{name}.yaml"
    sizes = sorted(p.stem for p in (folder / name).glob("*.yaml"))
    if size not in sizes:
        raise ConfigError(
            f"Invalid value for the '--size' parameter of recipe {name!r}. Allowed values are "
            f"{', '.join(sizes) or '(none: this recipe has no size presets)'}, but got {size!r} instead."
        )
    return folder / name / f"{size}.yaml"


def _expand_recipe(argv: list[str]) -> list[str]:
    """Replace ``--recipe NAME`` and ``--size SIZE`` by the ``--config`` files they name (recipe first)."""
    values: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        key, _, inline = word.partition("=")
        if key in ("--recipe", "--size"):
            if not inline and i + 1 >= len(argv):
                raise ConfigError(f"{key} needs a value.")
            values[key] = inline or argv[i + 1]
            i += 1 if inline else 2
            continue
        rest.append(word)
        i += 1
    if "--size" in values and "--recipe" not in values:
        raise ConfigError("--size needs --recipe NAME (a shipped recipe whose size presets to use).")
    if "--recipe" not in values:
        return rest
    configs = ["--config", str(recipe_path(values["--recipe"]))]
    if "--size" in values:
        configs += ["--config", str(recipe_path(values["--recipe"], values["--size"]))]
    return rest[:1] + configs + rest[1:]


def run_pretrain(argv: Sequence[str]) -> int:
    """Run ``brainfm pretrain`` with these arguments (the subcommand first).

    Parameters
    ----------
    argv : sequence of str
        E.g. ``["fit", "--config", "configs/pretrain/mulaw.yaml", "--data.store", "store/"]``.
        ``--recipe NAME [--size SIZE]`` stands for the ``--config`` files of a shipped recipe
        and its size preset (:func:`recipe_path`), placed before the other arguments.

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
            args=_expand_recipe(list(argv)),
            trainer_defaults={"use_distributed_sampler": False},
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "brainfm pretrain", "default_env": False},
            auto_configure_optimizers=False,
        )
    return 0
