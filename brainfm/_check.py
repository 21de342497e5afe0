"""Shared validation helpers whose messages follow one formula.

"Invalid value for the 'x' parameter. Allowed values are ..., but got 'y' instead."
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Iterable
from typing import Any

__all__ = ["check_option", "check_range", "ensure_int", "suggest", "validate_type"]


def suggest(value: str, options: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_option(parameter: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Raise a ValueError naming the parameter when ``value`` is not in ``allowed``.

    Parameters
    ----------
    parameter : str
        Name of the parameter, as the user wrote it.
    value : object
        The value received.
    allowed : iterable
        The permitted values.

    Returns
    -------
    value : object
        The value, unchanged.
    """
    allowed = list(allowed)
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        hint = suggest(value, allowed) if isinstance(value, str) else ""
        raise ValueError(
            f"Invalid value for the {parameter!r} parameter. Allowed values are {options}, "
            f"but got {value!r} instead.{hint}"
        )
    return value


def validate_type(parameter: str, value: Any, types: type | tuple[type, ...]) -> Any:
    """Raise a TypeError naming the parameter when ``value`` has the wrong type.

    Parameters
    ----------
    parameter : str
        Name of the parameter.
    value : object
        The value received.
    types : type | tuple of type
        The accepted types.

    Returns
    -------
    value : object
        The value, unchanged.
    """
    if not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise TypeError(
            f"{parameter} must be an instance of {names}, got {type(value).__name__} ({value!r}) instead."
        )
    return value


def ensure_int(parameter: str, value: Any) -> int:
    """Return ``value`` as an int; booleans and non-integral values are rejected.

    Parameters
    ----------
    parameter : str
        Name of the parameter.
    value : object
        The value received.

    Returns
    -------
    value : int
        The value as a Python int.
    """
    if isinstance(value, bool):
        raise TypeError(f"{parameter} must be an int, got a bool ({value!r}).")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{parameter} must be an int, got {type(value).__name__} ({value!r}).") from None


def check_range(
    parameter: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    inclusive: bool = True,
) -> float:
    """Raise a ValueError naming the parameter when ``value`` is outside ``[low, high]``.

    Parameters
    ----------
    parameter : str
        Name of the parameter.
    value : float
        The value received.
    low, high : float | None
        Bounds; ``None`` leaves that side open.
    inclusive : bool
        Whether the bounds themselves are allowed.

    Returns
    -------
    value : float
        The value, unchanged.
    """
    below = low is not None and (value < low if inclusive else value <= low)
    above = high is not None and (value > high if inclusive else value >= high)
    if below or above:
        left = "[" if inclusive else "("
        right = "]" if inclusive else ")"
        raise ValueError(
            f"Invalid value for the {parameter!r} parameter: it must lie in "
            f"{left}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{right}, "
            f"but got {value!r} instead."
        )
    return value
