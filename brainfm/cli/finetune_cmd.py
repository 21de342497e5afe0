"""``brainfm finetune fit|test``: fine-tune a classifier on a decoding task, then score it (docs/decoding.md).

The arguments are parsed by LightningCLI / jsonargparse (``brainfm finetune fit --help`` lists
them all); ``--json`` prints the summary as JSON on stdout, ``--allow-leakage`` runs even when
test subjects were in the model's training data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["PASSTHROUGH", "add_arguments", "run", "run_argv"]

#: brainfm's argparse front end hands the rest of the command line to LightningCLI unparsed.
PASSTHROUGH = True


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Nothing to add: LightningCLI parses the arguments."""


def run(args: argparse.Namespace, command: str) -> int:
    """Not used (see :func:`run_argv`)."""
    return run_argv([], command)


def _print_summary(subcommand: str, summary: dict) -> None:
    if subcommand == "fit":
        key = f"val_{summary.get('select_on', 'balanced_accuracy')}"
        tried = ", ".join(f"{t['lr']:g}: {t[key]:.3f} (epoch {t['epoch']})" for t in summary["lrs"])
        sys.stdout.write(
            f"{summary['task']} ({summary['fold']}): {summary['n_fit']} fitting, {summary['n_val']} validation trials; "
            f"{summary['n_test']} test trials held out\nvalidation {key[4:].replace('_', ' ')} per learning rate: {tried}\n"
            f"kept lr {summary['lr']:g}, epoch {summary['epochs']}; fine-tuned model {summary['checkpoint']}, "
            f"config {summary['config']}, logs {summary['logs']} ({summary['seconds']:.1f} s)\n"
        )
        return
    for name, model in summary["models"].items():
        fold = model["folds"][0]
        scores = ", ".join(f"{m} {fold[m]:.3f}" for m in ("balanced_accuracy", "kappa", "macro_f1", "auroc")
                           if m in fold and fold[m] == fold[m])
        sys.stdout.write(f"{summary['task']} {name} on {fold['n_test']} test trials ({fold['fold']}): {scores}\n")
    if summary.get("leakage"):
        sys.stdout.write(f"WARNING: run with --allow-leakage; leaked test data: {summary['leakage']}\n")
    sys.stdout.write(f"results and figures in {summary['files']['markdown'].rsplit('/', 1)[0]}\n")


def run_argv(argv: Sequence[str], command: str) -> int:
    """Run ``brainfm finetune fit|test`` with the arguments after the subcommand.

    Parameters
    ----------
    argv : sequence of str
        The remaining arguments.
    command : str
        ``"finetune fit"`` or ``"finetune test"``.

    Returns
    -------
    status : int
        0 done; 2 unusable arguments, task, checkpoint or a leak; 1 a data failure.
    """
    from brainfm._logging import use_log_level
    from brainfm.cli._output import print_error, print_json, stdout_to_stderr
    from brainfm.errors import (
        CheckpointError,
        ConfigError,
        DataQualityError,
        StoreFormatError,
        StoreNotFoundError,
    )

    argv = list(argv)
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    from brainfm.downstream.decoding.finetune_cli import run_finetune

    if "--help" in argv or "-h" in argv:  # help goes to stdout (and exits)
        run_finetune([command.split()[1], *argv])
    try:
        with use_log_level("warning" if as_json else "info"), stdout_to_stderr():
            subcommand, summary = run_finetune([command.split()[1], *argv])
    except (ConfigError, StoreFormatError, StoreNotFoundError, CheckpointError, FileNotFoundError) as exc:
        print_error(exc)
        return 2
    except DataQualityError as exc:
        print_error(exc)
        return 1
    if as_json:
        print_json(summary)
    else:
        _print_summary(subcommand, summary)
    return 0
