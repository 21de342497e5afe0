"""``brainfm demo``: the pipeline on the bundled sample (EEGMMIDB subject 1, runs 3 and 4)."""

from __future__ import annotations

import argparse
import sys
from importlib.resources import as_file, files
from pathlib import Path

from brainfm.cli._output import add_verbosity, log_level


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm demo``."""
    parser.add_argument("--out", default="demo_out", help="folder for the demo's store and reports (default ./demo_out)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for preprocessing")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Preprocess the bundled sample into ``OUT/store.zarr`` and print what the store holds."""
    from brainfm._logging import use_log_level
    from brainfm.cli.store_cmd import _info_table
    from brainfm.preprocessing.run import preprocess
    from brainfm.store.reader import open_store
    from brainfm.store.summary import store_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "store.zarr"
    with as_file(files("brainfm") / "sample_data" / "eegmmidb") as sample:
        sys.stdout.write(f"[1/2] preprocess {sample} -> {store_path} (recipe 'default')\n")
        with use_log_level(log_level(args)):
            summary = preprocess(
                sample, store_path, recipe="default", jobs=args.jobs, dataset="eegmmidb",
                pattern=r"S(?P<subject>\d+)R(?P<run>\d+)", progress=not args.quiet and sys.stderr.isatty(),
            )
    sys.stdout.write(summary.table() + "\n")
    sys.stdout.write(f"[2/2] brainfm store info {store_path}\n")
    sys.stdout.write(_info_table(store_info(open_store(store_path))) + "\n")
    return summary.exit_status
