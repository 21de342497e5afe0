"""``brainfm generate CKPT --store STORE --seconds S --out DIR``: synthetic recordings as a new store."""

from __future__ import annotations

import argparse
import sys

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm generate``."""
    parser.add_argument("checkpoint", metavar="CKPT", help="a generative checkpoint (MEG-GPT recipe)")
    parser.add_argument("--store", required=True, help="the real store: channels, labels, prompts, realism reference")
    parser.add_argument("--seconds", type=float, required=True, help="seconds to generate per recording")
    parser.add_argument("--out", required=True, help="new folder for the generated store (never the source store)")
    parser.add_argument("--recordings", nargs="+", help="store ids to generate for (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of prompts and sampling (default 0)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy")
    parser.add_argument("--top-p", type=float, default=0.99, help="nucleus mass (default 0.99, the paper's)")
    parser.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    parser.add_argument("--batch-size", type=int, default=8, help="recordings sampled together")
    parser.add_argument("--context", type=int, help="prompt tokens (must be the model's context)")
    parser.add_argument("--real-seconds", type=float, default=300.0, help="seconds of each real recording in the report")
    parser.add_argument("--no-report", action="store_true", help="skip the realism report")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Generate; exit 2 on an unusable checkpoint, store or option."""
    from brainfm._logging import use_log_level
    from brainfm.downstream.generated_store import generate_store
    from brainfm.errors import CheckpointError, ConfigError, StoreFormatError, StoreNotFoundError

    try:
        with use_log_level(log_level(args)):
            summary = generate_store(
                args.checkpoint, args.store, args.seconds, args.out, recordings=args.recordings, seed=args.seed,
                temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, batch_size=args.batch_size,
                context=args.context, device=args.device, realism=not args.no_report, real_seconds=args.real_seconds,
                progress=not args.quiet and sys.stderr.isatty(),
            )
    except (ConfigError, CheckpointError, StoreFormatError, StoreNotFoundError, FileNotFoundError) as exc:
        print_error(exc)
        return 2
    if args.json:
        print_json(summary)
    else:
        realism = summary.get("realism") or {}
        note = f"; realism report in {args.out}/report" if "figures" in realism else ""
        sys.stdout.write(f"{len(summary['recordings'])} recordings x {summary['seconds']:g} s at {summary['sfreq']:g} Hz "
                         f"-> {summary['out']}{note}\n")
    return 0
