"""``brainfm connectome STORE OUT.h5``: dynamic functional connectomes of a store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm connectome``."""
    parser.add_argument("store", metavar="STORE", help="a brainfm Zarr store")
    parser.add_argument("out", metavar="OUT.h5", help="HDF5 file for factors, adjacencies and communities")
    parser.add_argument("--config", help="YAML of connectome options (default: the shipped configs/downstream/connectome.yaml)")
    parser.add_argument("--recordings", help="glob on recording ids, e.g. 'eegmat_*'")
    parser.add_argument("--time-mode", choices=["shared", "concatenated"], help="override the config's time_mode")
    parser.add_argument("--events", nargs="+", help="shared mode: event descriptions to align to")
    parser.add_argument("--rank", type=int, help="fit this rank only (no sweep)")
    parser.add_argument("--ranks", type=int, nargs="+", help="ranks of the sweep")
    parser.add_argument("--restarts", type=int, help="random restarts per rank")
    parser.add_argument("--device", help="torch device of the factorisation (cpu, cuda)")
    parser.add_argument("--figures", help="folder for the PNG figures (default: OUT without .h5, plus _figures)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Run the method; exit 2 on an unusable store or config."""
    from importlib.resources import as_file, files

    from brainfm._logging import use_log_level
    from brainfm.downstream.connectome import (
        load_connectome_config,
        run_connectome,
        write_connectome,
    )
    from brainfm.downstream.connectome.figures import plot_connectome
    from brainfm.errors import ConfigError, StoreFormatError, StoreNotFoundError
    from brainfm.store.reader import open_store

    try:
        with as_file(files("brainfm.configs") / "downstream" / "connectome.yaml") as shipped:
            config = load_connectome_config(
                args.config or shipped, recordings=args.recordings, time_mode=args.time_mode, events=args.events,
                rank=args.rank, ranks=args.ranks, n_restarts=args.restarts, device=args.device,
            )
        store = open_store(args.store)
    except (ConfigError, StoreNotFoundError, StoreFormatError, OSError) as exc:
        print_error(exc)
        return 2
    out = Path(args.out)
    figures = Path(args.figures) if args.figures else out.with_name(out.stem + "_figures")
    try:
        with use_log_level(log_level(args)):
            result = run_connectome(store, config, progress=not args.quiet and sys.stderr.isatty())
    except ConfigError as exc:
        print_error(exc)
        return 2
    write_connectome(result, out)
    pngs = plot_connectome(result, figures)
    summary = {"out": str(out), "figures": [str(p) for p in pngs], **result.summary()}
    if args.json:
        print_json(summary)
    else:
        counts = ", ".join(str(c) for c in summary["communities"])
        sys.stdout.write(
            f"{summary['n_subjects']} subjects x {summary['n_nodes']} nodes x {summary['n_times']} samples "
            f"({summary['time_mode']}); rank {summary['rank']} (relative error {summary['relative_error']:.3f}, "
            f"stability {summary['stability']:.2f}); communities per component: {counts}\n"
            f"wrote {out} and {len(pngs)} figures in {figures}\n"
        )
    return 0
