"""``brainfm preprocess INPUT_DIR STORE``."""

from __future__ import annotations

import argparse
import sys

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm preprocess``."""
    parser.add_argument("input_dir", metavar="INPUT_DIR", help="a BIDS root or any folder of EEG/MEG/iEEG files")
    parser.add_argument("store", metavar="STORE", help="the Zarr store to create or extend")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--recipe", default=None, help="shipped recipe: default, brainomni, meg_gpt, barista (default: default)")
    which.add_argument("--config", default=None, metavar="FILE", help="a YAML recipe file (may say 'extends: default')")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument("--shard", default=None, metavar="I/N", help="process only shard I of N (0-based), for array jobs")
    parser.add_argument(
        "--pattern", default=None, metavar="REGEX",
        help="regex with named groups subject/session/task/acquisition/run, matched on each file's relative path",
    )
    parser.add_argument("--dataset", default=None, help="dataset name (default: the input folder's name)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Run ``brainfm preprocess``; exit 0 all stored or skipped, 1 some failed, 2 bad arguments."""
    from brainfm._logging import use_log_level
    from brainfm.errors import ConfigError, StoreFormatError
    from brainfm.preprocessing.run import preprocess

    progress = not args.quiet and not args.json and sys.stderr.isatty()
    try:
        with use_log_level(log_level(args)):
            summary = preprocess(
                args.input_dir,
                args.store,
                recipe=args.config or args.recipe or "default",
                jobs=args.jobs,
                shard=args.shard,
                pattern=args.pattern,
                dataset=args.dataset,
                progress=progress,
            )
    except (ConfigError, StoreFormatError) as exc:
        print_error(exc)
        return 2
    if args.json:
        print_json(summary.to_json())
        if not args.quiet:
            sys.stderr.write(summary.table() + "\n")
    else:
        sys.stdout.write(summary.table() + "\n")
    return summary.exit_status
