"""The single brainfm logger, the ``verbose`` decorator and ``warn``.

Library code logs through ``logger`` (progress at INFO, detail at DEBUG) and never prints.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["logger", "set_log_level", "use_log_level", "verbose", "warn"]

logger = logging.getLogger("brainfm")
logger.propagate = False
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.WARNING)

_F = TypeVar("_F", bound=Callable[..., Any])


def _to_level(verbose: bool | str | int | None) -> int:
    if verbose is None:
        return logger.level
    if isinstance(verbose, bool):
        return logging.INFO if verbose else logging.WARNING
    if isinstance(verbose, str):
        level = logging.getLevelName(verbose.upper())
        if not isinstance(level, int):
            raise ValueError(
                "Invalid value for the 'verbose' parameter. Allowed values are True, False, None, "
                f"an int or one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', but got {verbose!r} instead."
            )
        return level
    return int(verbose)


def set_log_level(verbose: bool | str | int | None) -> None:
    """Set the brainfm log level for the rest of the process.

    Parameters
    ----------
    verbose : bool | str | int | None
        ``True`` for INFO, ``False`` for WARNING, a level name or number.
    """
    logger.setLevel(_to_level(verbose))


@contextlib.contextmanager
def use_log_level(verbose: bool | str | int | None) -> Iterator[None]:
    """Temporarily set the brainfm log level.

    Parameters
    ----------
    verbose : bool | str | int | None
        As in :func:`set_log_level`; ``None`` keeps the current level.
    """
    old = logger.level
    logger.setLevel(_to_level(verbose))
    try:
        yield
    finally:
        logger.setLevel(old)


def verbose(function: _F) -> _F:
    """Honour a keyword ``verbose`` argument for the duration of the call."""
    if "verbose" not in inspect.signature(function).parameters:
        raise TypeError(f"{function.__qualname__} has no 'verbose' parameter")

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with use_log_level(kwargs.get("verbose")):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def warn(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """Emit a warning that points at the first frame outside brainfm.

    Parameters
    ----------
    message : str
        The warning text.
    category : type of Warning
        The warning class.
    """
    frame = inspect.currentframe()
    stacklevel = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("brainfm"):
        frame = frame.f_back
        stacklevel += 1
    warnings.warn(message, category, stacklevel=stacklevel)
