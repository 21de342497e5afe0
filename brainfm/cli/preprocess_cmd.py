"""``brainfm preprocess INPUT_DIR STORE``."""

from __future__ import annotations

import argparse
import sys

from brainfm.cli._output import add_verbosity, log_level, print_error, print_json, stdout_to_stderr


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
    parser.add_argument(
        "--on-duplicate", choices=["skip", "keep"], default="skip",
        help="a file whose sha256 the store already holds under another recording id (the same folder with "
             "another --pattern, the same file in two folders): skip it (default; its data are stored "
             "already) or keep it under both ids; either way a warning names the file and both ids",
    )
    parser.add_argument(
        "--compression", choices=["none", "lz4", "zstd"], default=None,
        help="signal codec, overriding the recipe's write.compression (default none: fastest to read; "
             "zstd saves ~15-20%% of disk, exactly)",
    )
    parser.add_argument(
        "--bitround-keepbits", type=int, default=None, metavar="N",
        help="keep N mantissa bits before compressing (lossy; 12 with --compression zstd: about half the disk "
             "at a relative error of ~5e-5)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument(
        "--report", action="store_true",
        help="when the run ends, write the store's HTML quality report beside it (as 'brainfm report STORE')",
    )
    add_verbosity(parser)


def _recipe(args: argparse.Namespace) -> object:
    """The recipe named by ``--recipe``/``--config``, with ``--compression``/``--bitround-keepbits`` applied."""
    name = args.config or args.recipe or "default"
    if args.compression is None and args.bitround_keepbits is None:
        return name
    import dataclasses

    from brainfm.preprocessing.recipe import load_recipe

    recipe = load_recipe(name)
    changes = {"compression": args.compression, "bitround_keepbits": args.bitround_keepbits}
    write = dataclasses.replace(recipe.write, **{k: v for k, v in changes.items() if v is not None})
    return dataclasses.replace(recipe, write=write)


def run(args: argparse.Namespace, command: str) -> int:
    """Run ``brainfm preprocess``.

    Exit status: 0 all stored, skipped or excluded; 1 some failed, or nothing could be read;
    2 unusable arguments; 3 internal error (a bug in brainfm; the traceback is logged).
    """
    from brainfm._logging import logger, use_log_level
    from brainfm.errors import BrainFMError, ConfigError, StoreFormatError
    from brainfm.preprocessing.run import EXIT_FAILED, EXIT_INTERNAL_ERROR, preprocess

    if args.report and args.shard is not None:
        print_error(ConfigError(
            "--report with --shard: every array job would rewrite the report while the others still "
            "write. Leave --report out and run 'brainfm report STORE' once all shards have finished."
        ))
        return 2
    progress = not args.quiet and not args.json and sys.stderr.isatty()
    try:
        recipe = _recipe(args)
        # stdout holds only the summary: what readers print while reading goes to stderr
        with use_log_level(log_level(args)), stdout_to_stderr():
            summary = preprocess(
                args.input_dir,
                args.store,
                recipe=recipe,
                jobs=args.jobs,
                shard=args.shard,
                pattern=args.pattern,
                dataset=args.dataset,
                on_duplicate=args.on_duplicate,
                progress=progress,
            )
    except (ConfigError, StoreFormatError) as exc:
        print_error(exc)
        return 2
    except BrainFMError as exc:
        print_error(exc)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - a bug: traceback in the log, a status of its own
        logger.error("Internal error in brainfm preprocess", exc_info=True)
        print_error(exc)
        return EXIT_INTERNAL_ERROR
    report = None
    if args.report:
        from brainfm.preprocessing.report import write_report

        try:
            with use_log_level(log_level(args)), stdout_to_stderr():
                report = write_report(args.store, progress=progress)["html"]
        except Exception as exc:  # noqa: BLE001 - the store is written; the report is what failed
            logger.error("Internal error writing the quality report", exc_info=True)
            print_error(exc)
            return EXIT_INTERNAL_ERROR
    if args.json:
        print_json({**summary.to_json(), **({"report": report} if report else {})})
        if not args.quiet:
            sys.stderr.write(summary.table() + "\n")
    else:
        sys.stdout.write(summary.table() + "\n")
        if report:
            sys.stdout.write(f"quality report -> {report}\n")
    return summary.exit_status
