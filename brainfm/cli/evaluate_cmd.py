"""``brainfm evaluate --config TASK.yaml [--store STORE] [--checkpoint CKPT] [--json] [--out DIR]`` (docs/decoding.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json, stdout_to_stderr

if TYPE_CHECKING:
    from brainfm.downstream.decoding.evaluation import EvaluationResult
    from brainfm.downstream.decoding.task import DecodingTask


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm evaluate``."""
    parser.add_argument("--config", required=True, help="task YAML (configs/downstream/<task>.yaml)")
    parser.add_argument("--store", default=None, help="run the task on this store instead of the task's")
    parser.add_argument("--out", default=None, help="results folder (default: evaluate_<task>)")
    parser.add_argument("--protocol", default=None, choices=("within_session", "cross_run", "cross_subject"),
                        help="override the task's protocol")
    parser.add_argument("--seeds", default=None, help="override the seeds, e.g. 0,1,2")
    parser.add_argument("--checkpoint", default=None,
                        help="use this brainfm checkpoint for every model of the task that reads one")
    parser.add_argument("--allow-leakage", action="store_true",
                        help="run even when test subjects/recordings were in a checkpoint's pretraining")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Evaluate; exit 2 for an unusable task, store or a leak, 1 when the data fail."""
    from brainfm._logging import use_log_level
    from brainfm.downstream.decoding.report import markdown_table
    from brainfm.downstream.decoding.task import load_task
    from brainfm.errors import (
        CheckpointError,
        ConfigError,
        DataQualityError,
        StoreFormatError,
        StoreNotFoundError,
    )

    try:
        task = load_task(args.config, store=args.store)
        if args.protocol:
            task.protocol.name = args.protocol
        if args.seeds:
            task.protocol.seeds = [int(s) for s in args.seeds.split(",")]
        if args.checkpoint:
            readers = [m for m in task.models if m.kind != "scratch"]
            if not readers:
                raise ConfigError(f"--checkpoint: task {task.name!r} has no model that reads a checkpoint.")
            for model in readers:
                model.checkpoint = args.checkpoint
    except (ConfigError, ValueError) as exc:
        print_error(exc)
        return 2
    try:
        with use_log_level(log_level(args)), stdout_to_stderr():
            result, leaked, files = evaluate_with_progress(
                task, args.out or f"evaluate_{task.name}", allow_leakage=args.allow_leakage,
                show_progress=not args.quiet and sys.stderr.isatty(),
            )
    except (ConfigError, StoreNotFoundError, StoreFormatError, CheckpointError, FileNotFoundError) as exc:
        print_error(exc)
        return 2
    except DataQualityError as exc:
        print_error(exc)
        return 1
    if args.json:
        print_json({**result.to_json(), "leakage": leaked, "files": files})
    else:
        sys.stdout.write(markdown_table(result))
        if leaked:
            sys.stdout.write(f"WARNING: run with --allow-leakage; leaked test data: {leaked}\n")
        sys.stdout.write(f"{result.seconds:.1f} s; results, tables and figures in {files['markdown'].rsplit('/', 1)[0]}\n")
    return 0


def evaluate_with_progress(task: DecodingTask, out: str | Path, *, allow_leakage: bool = False,
                           show_progress: bool = True) -> tuple[EvaluationResult, dict[str, list[str]], dict[str, Any]]:
    """Run a task's protocol with a progress bar on stderr and write its results (what ``brainfm evaluate`` does).

    Parameters
    ----------
    task : DecodingTask
        The task (``load_task``).
    out : str | pathlib.Path
        The results folder.
    allow_leakage : bool
        Run even when test subjects or recordings were in a checkpoint's pretraining.
    show_progress : bool
        Show the progress bar (one step per model, fold and seed).

    Returns
    -------
    result : EvaluationResult
        Scores per model, fold and seed.
    leaked : dict of str to list of str
        Model name -> leaked subjects/recordings (only with ``allow_leakage``).
    files : dict
        The written files (``markdown``, ``csv``, ``json``, ``timings``, ``task``, ``figures``).
    """
    from tqdm import tqdm

    from brainfm.downstream.decoding.evaluation import count_steps, evaluate_task
    from brainfm.downstream.decoding.models import build_model_runners
    from brainfm.downstream.decoding.report import write_results
    from brainfm.downstream.decoding.trials import load_trials

    started = time.perf_counter()
    trials = load_trials(task)
    runners, leaked = build_model_runners(task, trials, allow_leakage=allow_leakage)
    prepare_seconds = time.perf_counter() - started
    total = count_steps(task, trials, len(task.baselines) + len(runners))
    with tqdm(total=total, desc=f"evaluate {task.name}", unit="fit", file=sys.stderr, disable=not show_progress) as bar:
        def progress(text: str) -> None:
            bar.set_postfix_str(text[:40])
            bar.update(1)
        result = evaluate_task(task, trials, model_runners=runners, progress=progress)
    result.prepare_seconds = prepare_seconds
    files = write_results(result, task, out)
    return result, leaked, files
