"""``brainfm store info | check | stats STORE``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from brainfm.cli._output import print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of the store commands."""
    parser.add_argument("store", metavar="STORE", help="a brainfm Zarr store")
    if command in ("store info", "store stats"):
        parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    if command == "store check":
        parser.add_argument("--quick", action="store_true", help="check metadata and shapes only, do not read every value")
    if command == "store stats":
        parser.add_argument("--window-s", type=float, default=2.0, help="window length for the window count (default 2)")
        parser.add_argument("--stride-s", type=float, default=None, help="window stride (default: the window length)")


#: What each ``subject_source`` means, for ``brainfm store info``.
_SUBJECT_SOURCE_TEXT = {
    "bids": "from BIDS entities",
    "filename": "from sub-<label> in file names",
    "pattern": "from --pattern",
    "given": "given in the Python API",
    "recording": "no subject: each recording counts as its own subject (split by subject refuses)",
    "unknown": "not recorded (store written by an older brainfm; split by subject refuses)",
}


def _info_table(info: dict[str, Any]) -> str:
    lines = [f"{'recording':<48} {'subject (source)':<22} {'sfreq':>7} {'duration':>9}  channels (types)  "
             "positions  bad  events"]
    for row in info["recordings"]:
        types = ", ".join(f"{n} {t}" for t, n in row["channel_types"].items())
        duration = row["n_times"] / row["sfreq"]
        subject = f"{row['subject'] if row['subject'] is not None else '-'} ({row['subject_source']})"
        lines.append(
            f"{row['id'][:48]:<48} {subject:<22} {row['sfreq']:>7g} {duration:>8.1f}s  {row['n_channels']} "
            f"({types})  {row['n_positions']}  {row['n_bad_channels']}  {row['n_events']}"
        )
    for source, n in info.get("subject_sources", {}).items():
        lines.append(f"subjects of {n} recordings: {source}, {_SUBJECT_SOURCE_TEXT.get(source, source)}")
    for failure in info["failed"]:
        lines.append(f"FAILED {failure['path']}: {failure['error']}")
    for rid in info["incomplete"]:
        lines.append(f"INCOMPLETE {rid} (interrupted write; run preprocess again)")
    lines.append(
        f"{len(info['recordings'])} recordings, {len(info['failed'])} failed, {len(info['incomplete'])} incomplete "
        f"(format version {info['format_version']})"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace, command: str) -> int:
    """Run a store command; exit 1 when ``check`` finds problems, 2 when the store cannot be opened."""
    from brainfm.errors import StoreFormatError, StoreNotFoundError
    from brainfm.store.reader import open_store

    try:
        store = open_store(args.store)
    except (StoreNotFoundError, StoreFormatError) as exc:
        print_error(exc)
        return 2
    if command == "store info":
        from brainfm.store.summary import store_info

        info = store_info(store)
        if args.json:
            print_json(info)
        else:
            sys.stdout.write(_info_table(info) + "\n")
        return 0
    if command == "store check":
        from brainfm.store.check import check_store

        problems = check_store(store, read_values=not args.quick)
        for rid, items in problems.items():
            for item in items:
                sys.stdout.write(f"{rid}: {item}\n")
        sys.stdout.write(
            f"{len(store)} complete recordings checked: "
            + (f"{len(problems)} with problems\n" if problems else "all sound\n")
        )
        return 1 if problems else 0
    from brainfm.store.stats import dataset_stats, format_stats_table

    try:
        rows = dataset_stats(store, window_s=args.window_s, stride_s=args.stride_s)
    except ValueError as exc:  # --window-s 0 and the like
        print_error(exc)
        return 2
    if args.json:
        print_json(rows)
    else:
        sys.stdout.write(format_stats_table(rows) + "\n")
    return 0
