"""``brainfm retrieve fit | test --config FILE``: concept retrieval (docs/retrieval.md)."""

from __future__ import annotations

import argparse

from brainfm.cli._output import print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of the retrieve commands."""
    parser.add_argument("--config", required=True, help="retrieval YAML (configs/downstream/retrieval_*.yaml)")
    if command == "retrieve test":
        parser.add_argument("--checkpoint", default=None, help="model.pt to evaluate (default: <output>/model.pt)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")


def _print_scores(results: dict, title: str = "") -> None:
    for k, r in results["k"].items():
        top5 = "-" if r["top5"] is None else f"{100 * r['top5']:.2f}%"
        print(f"{title}{k:>4}-way  top-1 {100 * r['top1']:.2f}%  top-5 {top5}")
    print(f"{title}{results['n_items']} test items, {results['n_concepts']} held-out concepts, "
          f"{results['n_subjects']} subject(s)")


def run(args: argparse.Namespace, command: str) -> int:
    """Run fit or test; exit 2 on an unusable config, 1 when the data or a checkpoint fail."""
    from brainfm.downstream.retrieval.run_config import load_run_config
    from brainfm.downstream.retrieval.task import fit, test
    from brainfm.errors import BrainFMError, CheckpointError, ConfigError

    try:
        config = load_run_config(args.config)
    except (ConfigError, FileNotFoundError) as exc:
        print_error(exc)
        return 2
    try:
        if command == "retrieve fit":
            checkpoint = fit(config)
            if args.json:
                print_json({"checkpoint": str(checkpoint), "stage": config.stage, "output": config.output})
            else:
                print(f"saved {checkpoint}")
            return 0
        results = test(config, args.checkpoint)
    except (ConfigError, FileNotFoundError, ImportError) as exc:
        print_error(exc)
        return 2
    except (CheckpointError, BrainFMError, OSError) as exc:
        print_error(exc)
        return 1
    if args.json:
        print_json(results)
        return 0
    if "modalities" in results:
        for modality, result in results["modalities"].items():
            _print_scores(result, f"{modality}: ")
    else:
        _print_scores(results)
    print(f"results in {config.output}")
    return 0
