"""``brainfm report STORE [OUT.html]``: the store's HTML quality report."""

from __future__ import annotations

import argparse
import sys

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm report``."""
    from brainfm.preprocessing.report.facts import DEFAULT_MAX_RECORDINGS

    parser.add_argument("store", metavar="STORE", help="a brainfm Zarr store")
    parser.add_argument(
        "out", metavar="OUT.html", nargs="?", default=None,
        help="the HTML file to write (default: STORE's name with -report.html, beside the store)",
    )
    parser.add_argument(
        "--recordings", default=None, metavar="PATTERN",
        help="shell pattern on recording ids choosing the detailed sections, e.g. 'eegmmidb_sub-00*' (default: all)",
    )
    parser.add_argument(
        "--max-recordings", type=int, default=DEFAULT_MAX_RECORDINGS, metavar="N",
        help=f"at most N detailed sections, shared between datasets (default {DEFAULT_MAX_RECORDINGS}; "
        "0: summary only). The summary always covers every recording.",
    )
    parser.add_argument("--json", action="store_true", help="print the report's facts as JSON on stdout")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Write the report; exit 0 when written, 2 when the store or an argument is unusable."""
    from brainfm._logging import use_log_level
    from brainfm.errors import ConfigError, StoreFormatError, StoreNotFoundError
    from brainfm.preprocessing.report import write_report

    if args.max_recordings < 0:
        print_error(ConfigError(f"--max-recordings must be 0 or more, got {args.max_recordings}."))
        return 2
    progress = not args.quiet and not args.json and sys.stderr.isatty()
    try:
        with use_log_level(log_level(args)):
            facts = write_report(
                args.store, args.out, recordings=args.recordings, max_recordings=args.max_recordings,
                progress=progress,
            )
    except (StoreNotFoundError, StoreFormatError, ConfigError) as exc:
        print_error(exc)
        return 2
    if args.json:
        print_json(facts)
    elif not args.quiet:
        summary = facts["summary"]
        if summary["n_recordings"] == 0:
            what = f"all {summary['n_failed']} source files failed" if summary["n_failed"] else "nothing was stored yet"
            sys.stderr.write(f"brainfm: note: {args.store} holds no complete recording ({what}); the report says so.\n")
        sys.stdout.write(
            f"{summary['n_recordings']} recordings ({summary['hours']:.2f} h), {summary['n_failed']} failed, "
            f"{len(facts['detailed'])} detailed sections -> {facts['html']}\n"
        )
    return 0
