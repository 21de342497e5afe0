"""``brainfm tokenize CKPT STORE`` and ``brainfm tokenizer report CKPT STORE``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json, stdout_to_stderr


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``tokenize`` and ``tokenizer report``."""
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'brainfm pretrain fit'")
    parser.add_argument("store", metavar="STORE", help="a brainfm Zarr store")
    parser.add_argument("--normalization", choices=("zscore", "robust", "sensortype", "window", "none"), default=None,
                        help="override the normalisation recorded in the checkpoint (needed for older checkpoints)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="windows per forward pass (default 64)")
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="worker processes reading the signal (default 0: the main process)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    if command == "tokenize":
        parser.add_argument("--name", default=None,
                            help="name of the codes arrays (default: the tokenizer class in lower case)")
        parser.add_argument("--overlap", type=float, default=None, metavar="R",
                            help="BrainTokenizer window overlap in [0, 1) (default 0.25, BrainOmni's)")
        parser.add_argument("--window-s", type=float, default=None, metavar="S",
                            help="BrainTokenizer under sensortype/window normalisation: the stage-2 loader's "
                                 "data.window_s (e.g. 30.5); each such segment is normalised as a whole and then "
                                 "tokenised, as on the fly (default: one tokenizer window each)")
        parser.add_argument("--stride-s", type=float, default=None, metavar="S",
                            help="with --window-s: the loader's data.stride_s (e.g. 30; default: --window-s)")
    else:
        parser.add_argument("--split", choices=("val", "all"), default="val",
                            help="val: recordings the checkpoint was not trained on (default); all: every recording")
        parser.add_argument("--out", default=None, metavar="DIR", help="write report.json and PNG figures here")
        parser.add_argument("--max-windows", type=int, default=None, metavar="N",
                            help="evaluate at most N windows, spread over the recordings (default: all)")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Run the command: exit 0 on success, 1 when some recordings failed, 2 for unusable input."""
    from brainfm._logging import use_log_level
    from brainfm.errors import BrainFMError

    if args.batch_size < 1 or args.jobs < 0:
        print_error(ValueError(f"--batch-size must be >= 1 and --jobs >= 0, got {args.batch_size} and {args.jobs}."))
        return 2
    progress = not args.quiet and not args.json and sys.stderr.isatty()
    try:
        with use_log_level(log_level(args)), stdout_to_stderr():
            result = _tokenize(args, progress) if command == "tokenize" else _report(args, progress)
    except (BrainFMError, OSError) as exc:
        print_error(exc)
        return 2
    if args.json:
        print_json(result)
    elif not args.quiet:
        sys.stdout.write(result.pop("_text") + "\n")
    result.pop("_text", None)
    return 1 if result.get("failed") else 0


def _tokenize(args: argparse.Namespace, progress: bool) -> dict[str, Any]:
    from brainfm.pretrain.tokenize import tokenize_store

    summary = tokenize_store(args.checkpoint, args.store, name=args.name, overlap=args.overlap,
                             normalization=args.normalization, window_s=args.window_s, stride_s=args.stride_s,
                             batch_size=args.batch_size, jobs=args.jobs, progress=progress)
    result = summary.to_dict()
    lines = [f"FAILED {f['recording_id']}: {f['error']}" for f in summary.failed]
    lines.append(f"codes {summary.name!r}: {len(summary.written)} written, {len(summary.skipped)} up to date, "
                 f"{len(summary.failed)} failed in {summary.seconds:.1f} s -> {args.store}")
    if not args.json:
        result["_text"] = "\n".join(lines)
    return result


def _report(args: argparse.Namespace, progress: bool) -> dict[str, Any]:
    from brainfm.pretrain.tokenizer_report import format_report, tokenizer_report

    report = tokenizer_report(args.checkpoint, args.store, split=args.split, normalization=args.normalization,
                              batch_size=args.batch_size, jobs=args.jobs, max_windows=args.max_windows,
                              out=args.out, progress=progress)
    result = report.summary()
    if not args.json:
        result["_text"] = format_report(report)
    return result
