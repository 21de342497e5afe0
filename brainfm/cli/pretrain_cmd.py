"""``brainfm pretrain fit|validate``: train a recipe from ``configs/pretrain/`` (LightningCLI).

The arguments are parsed by LightningCLI (``brainfm pretrain fit --help`` lists them all);
see ``docs/pretraining.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["PASSTHROUGH", "add_arguments", "run", "run_argv"]

#: brainfm's argparse front end hands the rest of the command line to LightningCLI unparsed.
PASSTHROUGH = True


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Nothing to add: LightningCLI parses the arguments."""


def run(args: argparse.Namespace, command: str) -> int:
    """Not used (see :func:`run_argv`)."""
    return run_argv([], command)


def run_argv(argv: Sequence[str], command: str) -> int:
    """Run LightningCLI with the arguments after ``brainfm pretrain <subcommand>``.

    Parameters
    ----------
    argv : sequence of str
        The remaining arguments.
    command : str
        ``"pretrain fit"`` or ``"pretrain validate"``.

    Returns
    -------
    status : int
        The exit status.
    """
    from brainfm.cli._output import print_error
    from brainfm.errors import (
        CheckpointError,
        ConfigError,
        NonFiniteDataError,
        StoreFormatError,
        StoreNotFoundError,
    )
    from brainfm.pretrain.cli import run_pretrain

    try:
        return run_pretrain([command.split()[1], *argv])
    except (ConfigError, StoreFormatError, StoreNotFoundError, CheckpointError) as exc:
        print_error(exc)  # refused before or at start: nothing was trained
        return 2
    except NonFiniteDataError as exc:
        print_error(exc)
        return 1
    except ValueError as exc:
        # jsonargparse wraps a constructor's refusal (e.g. a FrozenTokenizer without checkpoint) in a ValueError
        cause = exc.__cause__
        if isinstance(cause, (ConfigError, CheckpointError, StoreFormatError, StoreNotFoundError)):
            print_error(cause)
            return 2
        raise
