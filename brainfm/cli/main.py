"""``brainfm`` entry point.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``brainfm --help`` stays instant and never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from brainfm._version import __version__

__all__ = ["main"]

#: command path -> (module, one-line help). Nested commands use a space ("store info").
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("brainfm.cli.preprocess_cmd", "normalise a dataset folder (BIDS or plain) into a Zarr store"),
    "store info": ("brainfm.cli.store_cmd", "list the recordings of a store"),
    "store check": ("brainfm.cli.store_cmd", "verify every recording of a store"),
    "store stats": ("brainfm.cli.store_cmd", "hours, channels, rates and window counts per dataset"),
    "report": ("brainfm.cli.report_cmd", "write a store's HTML quality report (mne.Report)"),
    "retrieve fit": ("brainfm.cli.retrieve_cmd", "train a concept-retrieval adapter on store trials"),
    "retrieve test": ("brainfm.cli.retrieve_cmd", "k-way retrieval on the held-out concepts"),
    "connectome": ("brainfm.cli.connectome_cmd", "dynamic functional connectomes: affinities -> NTF -> communities"),
    "finetune fit": ("brainfm.cli.finetune_cmd", "fine-tune a classifier on one fold of a task (probe, full, LoRA, scratch)"),
    "finetune test": ("brainfm.cli.finetune_cmd", "score a fine-tuned model on its test trials (evaluate's metrics)"),
    "evaluate": ("brainfm.cli.evaluate_cmd", "decode a task (configs/downstream/<task>.yaml) with protocols and baselines"),
    "demo": ("brainfm.cli.demo_cmd", "run the pipeline on the bundled sample data"),
    "pretrain fit": ("brainfm.cli.pretrain_cmd", "train a tokenizer or model recipe (configs/pretrain/*.yaml)"),
    "pretrain validate": ("brainfm.cli.pretrain_cmd", "validate a recipe or checkpoint on the validation split"),
    "tokenize": ("brainfm.cli.tokenize_cmd", "write every recording's tokenizer codes into the store"),
    "tokenizer report": ("brainfm.cli.tokenize_cmd", "a tokenizer's reconstruction fidelity and code usage on a store"),
    "embed": ("brainfm.cli.embed_cmd", "per-window embeddings of a pretrained model to HDF5"),
    "generate": ("brainfm.cli.generate_cmd", "sample signals from a generative checkpoint into a new store"),
}


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="brainfm",
        description="Brain-signal foundation models: EEG, MEG and iEEG on one data path.",
    )
    parser.add_argument("--version", action="version", version=f"brainfm {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    leaves: dict[str, argparse.ArgumentParser] = {}
    for path, (_module, help_text) in COMMANDS.items():
        words = path.split()
        if len(words) == 1:
            leaves[path] = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                group_parser = top.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            leaves[path] = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        leaves[path].set_defaults(_command=path)
    return parser, leaves


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``brainfm`` command line.

    Parameters
    ----------
    argv : sequence of str | None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        The exit status (0 success, 1 some work failed, 2 unusable arguments, 3 internal
        error: a bug in brainfm, with its traceback in the log).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, leaves = _build_parser()
    # Only the command being run imports its module (and so its arguments).
    chosen = None
    for path in sorted(COMMANDS, key=lambda p: -len(p.split())):
        words = path.split()
        if argv[: len(words)] == words:
            chosen = path
            break
    if chosen is not None:
        module = importlib.import_module(COMMANDS[chosen][0])
        if getattr(module, "PASSTHROUGH", False):  # the command parses its own arguments (LightningCLI)
            return int(module.run_argv(argv[len(chosen.split()):], chosen))
        module.add_arguments(leaves[chosen], chosen)
    args = parser.parse_args(argv)
    if getattr(args, "_command", None) is None:
        if args.command and args.command in {p.split()[0] for p in COMMANDS if " " in p}:
            parser.parse_args([args.command, "--help"])
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args._command][0])
    return int(module.run(args, args._command))


if __name__ == "__main__":
    sys.exit(main())
