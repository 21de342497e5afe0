"""Output conventions shared by the commands: JSON on stdout, errors on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
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


def _flush_c_stdio() -> None:
    """Flush the C library's stdout buffer (what compiled extensions printed), where possible."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to load (not POSIX)
        pass


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever is written to stdout meanwhile to stderr, so that stdout holds only the
    command's own output (one JSON document under ``--json``).

    Third-party code prints while brainfm reads files (mffpy: "categories.xml not found...").
    Python prints are redirected here, and so is file descriptor 1 itself, so that compiled
    extensions and the worker processes started meanwhile (which inherit it) write to stderr too.
    """
    sys.stdout.flush()
    try:
        saved: int | None = os.dup(1)
    except OSError:  # no file descriptor 1 (a closed stdout)
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        _flush_c_stdio()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
