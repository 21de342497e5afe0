"""Check plain recipe data against the typed signature of the class it configures.

Recipe sections (``pick``, ``crop``, ``write``, each ``overrides`` entry) and steps are
dataclasses whose annotated fields are their parameters. :func:`check_params` validates a
mapping from YAML against those annotations with jsonargparse (the library the project's
LightningCLI configs use), so a recipe with a wrong type or value fails when it loads, with a
message that names the key, what is allowed and what arrived, instead of once per file.

Two things are stricter than jsonargparse alone:

* unknown keys are reported with the closest allowed key ("Did you mean ...");
* a quoted value (``l_freq: "0.1"``) where the signature wants a number, a boolean or null is
  refused: YAML already typed the value, and jsonargparse's command-line habit of parsing
  strings would otherwise accept it silently.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

from brainfm._check import suggest
from brainfm.errors import ConfigError

__all__ = ["check_params", "describe_type"]

_OPERATORS = {operator.gt: ">", operator.ge: ">=", operator.lt: "<", operator.le: "<=", operator.eq: "==", operator.ne: "!="}
_PLAIN = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def describe_type(hint: Any) -> str:
    """Say in words which YAML values a type annotation accepts.

    Parameters
    ----------
    hint : type or typing construct
        An annotation, e.g. ``PositiveFloat | dict[str, PositiveFloat]``.

    Returns
    -------
    text : str
        For example ``"a number > 0, or a mapping of a string to a number > 0"``.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return ", or ".join(parts)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} items ({', '.join(describe_type(a) for a in args)})"
    if origin in (list, tuple, Sequence):
        return f"a list, each item {describe_type(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return f"a mapping of {describe_type(args[0])} to {describe_type(args[1])}" if args else "a mapping"
    if hint is Any:
        return "any value"
    restrictions = getattr(hint, "_restrictions", None)
    if restrictions is not None:
        base = "a number" if getattr(hint, "_type", float) is float else "an integer"
        join = f" {getattr(hint, '_join', 'and')} "
        return base + " " + join.join(f"{_OPERATORS.get(op, '?')} {ref:g}" for op, ref in restrictions)
    if dataclasses.is_dataclass(hint):
        return "a mapping of " + ", ".join(f.name for f in dataclasses.fields(hint))
    return _PLAIN.get(hint, getattr(hint, "__name__", str(hint)))


def _type_word(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


@functools.cache
def _parser(cls: type) -> Any:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False, parser_mode="yaml")
    parser.add_class_arguments(cls, fail_untyped=True, sub_configs=False)
    return parser


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(cls)} | typing.get_type_hints(cls)


def _quoted(given: Any, parsed: Any) -> str | None:
    """The first string in ``given`` that jsonargparse turned into a non-string, or None."""
    if isinstance(given, str):
        return given if not isinstance(parsed, str) else None
    if isinstance(given, Mapping) and isinstance(parsed, Mapping):
        for key, value in given.items():
            found = _quoted(value, parsed.get(key)) if key in parsed else None
            if found is not None:
                return found
    if isinstance(given, (list, tuple)) and isinstance(parsed, (list, tuple)):
        for value, converted in zip(given, parsed, strict=False):
            found = _quoted(value, converted)
            if found is not None:
                return found
    return None


def check_params(cls: type, params: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Validate ``params`` against the fields of the dataclass ``cls``.

    Parameters
    ----------
    cls : type
        A dataclass whose annotated fields are the parameters (a recipe section or a step).
    params : mapping | None
        The values from YAML (None: all defaults).
    where : str
        How the user finds the mapping (``"steps[2] (bandpass) in recipe 'my.yaml'"``), used
        in messages.

    Returns
    -------
    params : dict
        The given parameters as they are (a copy; not converted, so that what is hashed and
        recorded is what the recipe says). Keys not given are left out, so the dataclass
        defaults apply.

    Raises
    ------
    brainfm.errors.ConfigError
        ``params`` is not a mapping, has unknown keys, or a value whose type or range the
        signature does not allow; the message names the key, what is allowed and what arrived.
    """
    from jsonargparse import Namespace

    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ConfigError(
            f"{where} must be a mapping of parameter names to values, e.g. {{name: value}}, "
            f"but got {_type_word(params)} ({params!r}) instead."
        )
    hints = _hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = [str(k) for k in params if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{where} has no parameter(s) {unknown}. Its parameters are {allowed}.{suggest(unknown[0], allowed)}"
        )
    parser = _parser(cls)
    try:  # all keys at once (the usual case: they are fine); on a copy, as jsonargparse converts in place
        whole = parser.parse_object(copy.deepcopy(dict(params)), defaults=False)
    except Exception:  # jsonargparse raises ArgumentError (argparse's) on a bad value
        whole = None
    for key, value in params.items():
        hint = hints[key]
        if value is None and not _allows_none(hint):
            raise ConfigError(
                f"Invalid value for the {key!r} parameter of {where}. Allowed values are {describe_type(hint)}, "
                f"but got null instead. Leave the key out to use its default."
            )
        parsed = whole
        if parsed is None:  # find the key at fault, one at a time, so that the message names it
            try:
                parsed = parser.parse_object({key: copy.deepcopy(value)}, defaults=False)
            except Exception:
                raise ConfigError(
                    f"Invalid value for the {key!r} parameter of {where}. Allowed values are {describe_type(hint)}, "
                    f"but got {_type_word(value)} ({value!r}) instead.{_suggest_literal(hint, value)}"
                ) from None
        converted = parsed.get(key) if isinstance(parsed, Namespace) else None
        if isinstance(converted, Namespace):
            converted = converted.as_dict()
        wrong_key = _unknown_literal_key(hint, value)
        if wrong_key is not None:
            key_type = wrong_key[1]
            raise ConfigError(
                f"Invalid value for the {key!r} parameter of {where}. Allowed values are {describe_type(hint)}, "
                f"but got the key {wrong_key[0]!r} instead.{suggest(str(wrong_key[0]), key_type)}"
            )
        quoted = _quoted(value, converted)
        if quoted is not None:
            raise ConfigError(
                f"Invalid value for the {key!r} parameter of {where}. Allowed values are {describe_type(hint)}, "
                f"but got the string {quoted!r} instead. Write numbers, true/false and null without quotes."
            )
    return dict(params)


def _unknown_literal_key(hint: Any, value: Any) -> tuple[Any, tuple[Any, ...]] | None:
    """A key of a mapping ``value`` outside the ``Literal`` key type of ``hint`` (jsonargparse
    does not check mapping keys), with the allowed keys; None when every key is allowed."""
    if not isinstance(value, Mapping):
        return None
    members = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    for member in members:
        args = typing.get_args(member)
        if typing.get_origin(member) in (dict, Mapping) and args and typing.get_origin(args[0]) is Literal:
            allowed = typing.get_args(args[0])
            for key in value:
                if key not in allowed:
                    return key, allowed
    return None


def _literals(hint: Any) -> list[Any]:
    """Every literal option anywhere inside a type annotation."""
    if typing.get_origin(hint) is Literal:
        return list(typing.get_args(hint))
    return [option for arg in typing.get_args(hint) for option in _literals(arg)]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings(item)]
    return []


def _suggest_literal(hint: Any, value: Any) -> str:
    """" Did you mean 'x'?" for the first string in ``value`` that is close to, but not, a literal option."""
    options = _literals(hint)
    for text in _strings(value):
        if text not in options:
            return suggest(text, options) if options else ""
    return ""


def _allows_none(hint: Any) -> bool:
    if hint is Any or hint is type(None):
        return True
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)
