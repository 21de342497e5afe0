"""One sentence per provenance step: what it did to this recording.

``provenance.steps`` holds ``{step, params, effect}`` per step (``docs/store-format.md``);
the ``effect`` of a step is a dict whose keys depend on the step. :func:`describe_step`
turns the known ones into a sentence (``"notch skipped: power-line frequency unknown"``,
``"resampled 160 -> 256 Hz (polyphase)"``) and any other into ``key: value`` pairs, so a
step added later is still shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["describe_step"]


def _hz(value: Any) -> str:
    return f"{float(value):g} Hz"


def _names(values: Any, limit: int = 8) -> str:
    items = [str(v) for v in values]
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _inspect(effect: dict[str, Any]) -> str:
    parts = []
    if "line_freq_detected" in effect:
        line = effect["line_freq_detected"]
        parts.append(f"power-line frequency detected: {_hz(line)}" if line else "no power-line peak detected")
    rest = {k: v for k, v in effect.items() if k != "line_freq_detected"}
    return "; ".join(parts + ([_generic(rest)] if rest else []))


def _resample(effect: dict[str, Any]) -> str:
    return f"resampled {_hz(effect['from_sfreq'])} -> {_hz(effect['to_sfreq'])} ({effect.get('method', '')})"


def _notch(effect: dict[str, Any]) -> str:
    freqs = effect.get("freqs") or []
    if not freqs:
        return _generic(effect)
    text = f"notch at {', '.join(f'{float(f):g}' for f in freqs)} Hz"
    return text + (f" (line {_hz(effect['line_freq'])})" if effect.get("line_freq") else "")


def _bandpass(effect: dict[str, Any]) -> str:
    low, high = effect.get("l_freq"), effect.get("h_freq")
    if low and high:
        return f"band-pass {float(low):g}-{float(high):g} Hz"
    if low:
        return f"high-pass at {_hz(low)}"
    if high:
        return f"low-pass at {_hz(high)}"
    return "no filter applied"


def _bad_channels(effect: dict[str, Any]) -> str:
    marked = effect.get("marked_bad") or {}
    parts = [f"marked bad: {_names(f'{n} ({r})' for n, r in marked.items())}" if marked else "no channel marked bad"]
    if effect.get("metadata_bad"):
        parts.append(f"bad in the file's metadata: {_names(effect['metadata_bad'])}")
    if effect.get("metadata_reset"):
        parts.append(f"metadata bads found good and reset: {_names(effect['metadata_reset'])}")
    if effect.get("types"):
        parts.append(f"types checked: {', '.join(effect['types'])}")
    return "; ".join(parts)


def _reference(effect: dict[str, Any]) -> str:
    parts = []
    for kind, what in effect.items():
        if not isinstance(what, dict):
            parts.append(f"{kind}: {what}")
            continue
        scheme = what.get("scheme", "?")
        text = f"{kind}: {scheme}"
        if "n_averaged" in what:
            text += f" of {what['n_averaged']} channels"
        if what.get("left_out_bad"):
            text += f" (bad left out: {_names(what['left_out_bad'])})"
        if what.get("reason"):
            text += f" ({what['reason']})"
        parts.append(text)
    return "; ".join(parts) if parts else "no channel type to re-reference"


def _units(effect: dict[str, Any]) -> str:
    implausible = effect.get("implausible") or []
    parts = []
    for kind, what in effect.items():
        if isinstance(what, dict) and "median_std" in what:
            parts.append(f"{kind} {float(what['median_std']):.3g} {what.get('unit', '')}")
    text = "typical amplitude (median channel SD): " + ", ".join(parts) if parts else "amplitudes checked"
    if implausible:
        text += f"; IMPLAUSIBLE for {', '.join(implausible)} (see warnings)"
    return text


def _interpolation(effect: dict[str, Any]) -> str:
    done = effect.get("interpolated") or {}
    if not done:
        return _generic(effect) or "nothing interpolated"
    return f"interpolated: {_names(f'{n} (was {r})' for n, r in done.items())}"


def _bad_segments(effect: dict[str, Any]) -> str:
    spans = effect.get("events") or []
    if not spans:
        return "no bad segment found"
    seconds = float(effect.get("bad_seconds", sum(float(d) for _, d in spans)))
    fraction = effect.get("bad_fraction")
    share = f" ({100 * float(fraction):.1f}% of the recording)" if fraction is not None else ""
    return f"{len(spans)} bad segments marked, {seconds:.1f} s in all{share}"


def _generic(effect: dict[str, Any]) -> str:
    parts = []
    for key, value in effect.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        parts.append(f"{key}: {text if len(text) <= 120 else text[:117] + '...'}")
    return "; ".join(parts)


_DESCRIBERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "inspect": _inspect,
    "resample": _resample,
    "notch": _notch,
    "bandpass": _bandpass,
    "bad_channels": _bad_channels,
    "reference": _reference,
    "units": _units,
    "interpolate": _interpolation,
    "bad_segments": _bad_segments,
}


def describe_step(step: dict[str, Any]) -> str:
    """Say in one sentence what a preprocessing step did.

    Parameters
    ----------
    step : dict
        One entry of ``provenance.steps``: ``step`` (name), ``params``, ``effect``.

    Returns
    -------
    sentence : str
        E.g. ``"notch skipped: power-line frequency unknown"``; ``"no effect recorded"``
        when the step recorded none.
    """
    name = str(step.get("step", "?"))
    effect = step.get("effect") or {}
    if not isinstance(effect, dict):
        return str(effect)
    if effect.get("skip"):
        return f"{name} skipped: {effect.get('reason', 'no reason recorded')}"
    if not effect:
        return "no effect recorded"
    describer = _DESCRIBERS.get(name, _generic)
    try:
        return describer(effect)
    except (KeyError, TypeError, ValueError):  # a step's effect changed shape: show it as it is
        return _generic(effect)
