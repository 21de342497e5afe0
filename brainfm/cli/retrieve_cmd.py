"""``brainfm retrieve fit | test --config FILE``: concept retrieval (docs/retrieval.md)."""

from __future__ import annotations

import argparse

from brainfm.cli._output import print_error, print_json


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of the retrieve commands."""
    parser.add_argument("--config", required=True, help="retrieval YAML (configs/downstream/retrieval_*.yaml)")
    if command == "retrieve test":
        parser.add_argument("--checkpoint", default=None, help="model.pt to evaluate (default: <output>/model.pt)")
        parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")


def run(args: argparse.Namespace, command: str) -> int:
    """Run fit or test; exit 2 on an unusable config."""
    from brainfm.downstream.retrieval.task import fit, load_config, test
    from brainfm.errors import ConfigError

    try:
        config = load_config(args.config)
    except (ConfigError, FileNotFoundError) as exc:
        print_error(exc)
        return 2
    if command == "retrieve fit":
        checkpoint = fit(config)
        print(f"saved {checkpoint}")
        return 0
    results = test(config, args.checkpoint)
    if args.json:
        print_json(results)
    else:
        for k, r in results["k"].items():
            top5 = "-" if r["top5"] is None else f"{100 * r['top5']:.2f}%"
            print(f"{k:>4}-way  top-1 {100 * r['top1']:.2f}%  top-5 {top5}")
        print(f"{results['n_items']} test items, {results['n_concepts']} held-out concepts; results in {config['output']}")
    return 0
