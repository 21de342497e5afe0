"""``brainfm embed CKPT STORE OUT.h5``: per-window embeddings of any pretrained model to HDF5."""

from __future__ import annotations

import argparse
import sys

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm embed``."""
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint of 'brainfm pretrain fit' (any recipe)")
    parser.add_argument("store", metavar="STORE", help="the store to embed")
    parser.add_argument("out", metavar="OUT.h5", help="HDF5 file to write")
    parser.add_argument("--window-s", type=float, help="window length in seconds (default: the model's)")
    parser.add_argument("--stride-s", type=float, help="seconds between windows (default: the window length)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--normalization", default="zscore", choices=["zscore", "robust", "sensortype", "none"],
                        help="load-time normalisation, as the model was trained (default: zscore)")
    parser.add_argument("--tokens", action="store_true", help="also write every window's token features (W, N, D)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Embed; exit 2 on an unusable checkpoint, store or option."""
    from brainfm._logging import use_log_level
    from brainfm.downstream.embedding import embed_store
    from brainfm.errors import CheckpointError, ConfigError, StoreFormatError, StoreNotFoundError

    try:
        with use_log_level(log_level(args)):
            summary = embed_store(args.checkpoint, args.store, args.out, window_s=args.window_s,
                                  stride_s=args.stride_s, batch_size=args.batch_size,
                                  normalization=args.normalization, tokens=args.tokens, device=args.device,
                                  progress=not args.quiet and sys.stderr.isatty())
    except (ConfigError, CheckpointError, StoreFormatError, StoreNotFoundError, FileNotFoundError) as exc:
        print_error(exc)
        return 2
    if args.json:
        print_json(summary.to_dict())
    else:
        sys.stdout.write(f"{summary.n_windows} windows of {summary.n_recordings} recordings -> {summary.out} "
                         f"({summary.n_tokens_per_window} tokens x {summary.feature_dim} features per window, "
                         f"{summary.model})\n")
    return 0
