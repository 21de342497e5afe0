"""Output conventions shared by the commands: JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from brainfm.errors import BrainFMError


def print_json(payload: Any) -> None:
    """Write one JSON object to stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def print_error(error: BaseException) -> None:
    """Write an error to stderr as ``brainfm: error: ...``."""
    text = str(error) if isinstance(error, BrainFMError) else f"{type(error).__name__}: {error}"
    sys.stderr.write(f"brainfm: error: {text}\n")


def add_verbosity(parser: Any) -> None:
    """Add ``-v/--verbose`` and ``-q/--quiet``."""
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the summary")


def log_level(args: Any) -> str:
    """The brainfm log level the verbosity flags ask for."""
    return "INFO" if getattr(args, "verbose", False) else ("ERROR" if getattr(args, "quiet", False) else "WARNING")
