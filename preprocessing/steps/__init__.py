"""Normalisation steps, composable and recorded as provenance.

Recipes name steps by the keys of :data:`STEPS`; each maps to a dataclass whose fields are
the step's parameters.
"""

from __future__ import annotations

import importlib
from typing import Any

from brainfm._check import suggest
from brainfm.errors import ConfigError
from brainfm.preprocessing.steps.base import ChannelwiseStep, RecordingStep, SignalState, Step

__all__ = ["STEPS", "ChannelwiseStep", "RecordingStep", "SignalState", "Step", "build_step", "step_class"]

#: Recipe name -> "module:Class" (imported on first use).
STEPS: dict[str, str] = {
    "resample": "brainfm.preprocessing.steps.filters:Resample",
    "notch": "brainfm.preprocessing.steps.filters:Notch",
    "bandpass": "brainfm.preprocessing.steps.filters:Bandpass",
    "bad_channels": "brainfm.preprocessing.steps.bad_channels:BadChannels",
    "bad_segments": "brainfm.preprocessing.steps.bad_segments:BadSegments",
    "interpolate": "brainfm.preprocessing.steps.interpolation:Interpolate",
    "reference": "brainfm.preprocessing.steps.reference:Reference",
    "units": "brainfm.preprocessing.steps.units:UnitCheck",
}


def step_class(name: str) -> type[Step]:
    """Return the step class registered under ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`STEPS`.

    Returns
    -------
    cls : type
        The step dataclass.
    """
    if name not in STEPS:
        raise ConfigError(
            f"Unknown preprocessing step {name!r}. Allowed steps are {sorted(STEPS)}.{suggest(name, STEPS)}"
        )
    module, cls = STEPS[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def build_step(name: str, params: dict[str, Any] | None) -> Step:
    """Instantiate a step from its recipe name and parameters, with clear errors.

    Parameters
    ----------
    name : str
        A key of :data:`STEPS`.
    params : dict | None
        Keyword arguments of the step dataclass.

    Returns
    -------
    step : Step
        The configured step.
    """
    import dataclasses

    cls = step_class(name)
    params = dict(params or {})
    allowed = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in params if k not in allowed]
    if unknown:
        hint = suggest(unknown[0], allowed)
        raise ConfigError(
            f"Step {name!r} has no parameter(s) {unknown}. Its parameters are {allowed}.{hint}"
        )
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid parameters for step {name!r}: {exc}") from exc
