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
    "regions": "brainfm.preprocessing.steps.regions:Regions",
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


def build_step(name: str, params: dict[str, Any] | None, where: str | None = None) -> Step:
    """Instantiate a step from its recipe name and parameters, with clear errors.

    The parameters are validated against the step's typed signature (its dataclass fields)
    with :func:`brainfm.preprocessing.signatures.check_params` before the step is built.

    Parameters
    ----------
    name : str
        A key of :data:`STEPS`.
    params : dict | None
        Keyword arguments of the step dataclass.
    where : str | None
        Where the step sits in the recipe (``"steps[2] (bandpass)"``), for messages;
        ``"step 'bandpass'"`` when None.

    Returns
    -------
    step : Step
        The configured step.

    Raises
    ------
    brainfm.errors.ConfigError
        Unknown step, unknown parameter, or a value of the wrong type or range; the message
        names the parameter, what is allowed and what was given.
    """
    from brainfm.preprocessing.signatures import check_params

    cls = step_class(name)
    where = where or f"step {name!r}"
    checked = check_params(cls, params, where)
    try:
        return cls(**checked)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid parameters for {where}: {exc}") from exc
