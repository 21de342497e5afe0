"""``brainfm demo``: the whole pipeline on the bundled sample (EEGMMIDB subject 1, runs 3 and 4).

Preprocess -> store info and quality report -> BrainTokenizer -> BrainOmni pretraining -> decoding
with classical baselines, EEGNet and the pretrained features (zero-shot, probe, fine-tuning) ->
a table, figures and a summary of where every output is (:mod:`brainfm.cli.demo_pipeline`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json, stdout_to_stderr


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm demo``."""
    parser.add_argument("--out", default="demo_out", help="the run folder (default ./demo_out)")
    parser.add_argument("--budget", default="full", choices=("small", "full"),
                        help="full: a few minutes on 2 CPU cores (default); small: about a minute (CI)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for preprocessing (>= 1)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Run the pipeline; exit 2 for unusable arguments, 1 when a stage fails on the data, 3 on an internal error."""
    from brainfm._logging import logger, use_log_level
    from brainfm.cli.demo_pipeline import run_demo
    from brainfm.errors import BrainFMError, ConfigError

    stream = sys.stderr if args.json else sys.stdout  # under --json, stdout holds the JSON summary only

    def say(text: str) -> None:
        if not args.quiet or text.startswith("["):  # -q keeps the stage headlines
            stream.write(text + "\n")

    redirect = stdout_to_stderr() if args.json else contextlib.nullcontext()
    try:
        with use_log_level(log_level(args)), redirect:
            result = run_demo(args.out, budget=args.budget, jobs=args.jobs, say=say,
                              progress=not args.quiet and sys.stderr.isatty(), verbose=args.verbose)
    except ConfigError as exc:
        print_error(exc)
        return 2
    except BrainFMError as exc:
        print_error(exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: traceback in the log, a status of its own
        logger.error("Internal error in brainfm demo", exc_info=True)
        print_error(exc)
        return 3
    if args.json:
        print_json(result.to_json())
        return result.exit_status
    sys.stdout.write("\n" + result.table)
    if result.leaked:
        sys.stdout.write(
            f"Pretrained on {', '.join(result.pretrained_on)}; the sample holds one subject, so the brainfm rows test "
            f"on data the pretrained models saw ({'; '.join(sorted({x for v in result.leaked.values() for x in v}))}): "
            "a demonstration, not an honest estimate. Baselines and EEGNet are unaffected.\n"
        )
    seconds = ", ".join(f"{name} {value:.0f} s" for name, value in result.seconds.items())
    sys.stdout.write(f"\nDone in {sum(result.seconds.values()):.0f} s ({seconds}). Outputs in {result.out}/:\n")
    width = max(len(name) for name in result.outputs)
    for name, path in result.outputs.items():
        sys.stdout.write(f"  {name:<{width}}  {path}\n")
    return result.exit_status

