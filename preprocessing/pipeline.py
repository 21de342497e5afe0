"""Preprocess one source recording: read, pick, load, run the recipe's steps, build a Recording.

Memory plan (a 2-h, 64-channel, 512 Hz recording is 0.94 GB in float32):

1. the MNE Raw is opened without preloading and picked to the kept channels, so other
   channels are never read;
2. the data are read in time blocks straight into one float32 array (never a full float64
   copy), checking each block for non-finite samples;
3. consecutive channel-wise steps (resampling, notch, band-pass) run together over blocks of
   channels in float64 and write into a float32 output;
4. recording steps work in place on the float32 array, in blocks.

Peak memory is therefore about the float32 input plus the float32 output plus one block.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from brainfm._logging import logger
from brainfm.data.channels import DATA_CHANNEL_TYPES
from brainfm.data.recording import Recording
from brainfm.errors import (
    DataQualityError,
    ExcludedByRecipe,
    NoDataChannelsError,
    NonFiniteDataError,
    ReadError,
    RecordingTooShortError,
)
from brainfm.preprocessing.boundaries import boundary_cuts, boundary_log, mark_boundaries
from brainfm.preprocessing.recipe import Recipe
from brainfm.preprocessing.source import RawInput, Source
from brainfm.preprocessing.steps import ChannelwiseStep, RecordingStep, SignalState, Step

__all__ = ["preprocess_source", "run_steps"]

#: Bytes of float64 processed per block by channel-wise steps and by the loader.
_BLOCK_BYTES = 64 * 2**20


def _pick(raw_input: RawInput, recipe: Recipe, relpath: str) -> pd.DataFrame:
    table = raw_input.channels
    keep = table["type"].isin(recipe.pick.types).to_numpy()
    for pattern in recipe.pick.exclude:
        keep &= ~(
            table["name"].map(lambda n, p=pattern: fnmatch.fnmatch(n, p))
            | table["orig_name"].map(lambda n, p=pattern: fnmatch.fnmatch(n, p))
        ).to_numpy()
    picked = table[keep]
    # misc channels are data only when the recipe asks for them by name (parcel time courses
    # of a source-space recipe, e.g. meg_gpt_source); otherwise they ride along with data channels
    storable = DATA_CHANNEL_TYPES + (("misc",) if "misc" in recipe.pick.types else ())
    if not picked["type"].isin(storable).any():
        found = table["type"].value_counts().to_dict()
        if table["type"].isin(DATA_CHANNEL_TYPES).any():
            raise ExcludedByRecipe(
                f"{relpath}: its channels ({found}) are of types the recipe {recipe.name!r} does not keep "
                f"(pick.types {recipe.pick.types}); not stored."
            )
        raise NoDataChannelsError(
            f"{relpath}: no EEG, MEG or iEEG channel to store (kept types {recipe.pick.types}; "
            f"the file has {found or 'no storable channels'}). If the file mislabels its channels, "
            f"set their types with a recipe override, e.g. overrides: [{{match: '{relpath}', "
            f"channel_types: {{'*': eeg}}}}]."
        )
    return picked.reset_index(drop=True)


def _crop(raw: Any, events: pd.DataFrame, recipe: Recipe, relpath: str) -> tuple[Any, pd.DataFrame]:
    tmin, tmax = recipe.crop.tmin_s, recipe.crop.tmax_s
    if tmin == 0 and tmax is None:
        return raw, events
    duration = raw.n_times / raw.info["sfreq"]
    if tmin >= duration:
        raise DataQualityError(
            f"{relpath}: the recording lasts {duration:.1f} s, but the recipe crops from {tmin:g} s "
            f"(crop.tmin_s). Lower crop.tmin_s or leave this file out."
        )
    stop = tmax if tmax is not None and tmax < duration else None  # a later end keeps the rest
    first_before = raw.first_samp
    raw.crop(tmin=tmin, tmax=stop, include_tmax=stop is None)  # to the end: keep the last sample
    start_s = (raw.first_samp - first_before) / raw.info["sfreq"]  # MNE snaps tmin to a sample
    end = stop if stop is not None else duration
    shifted = events.copy()
    shifted["onset_s"] = shifted["onset_s"] - start_s
    keep = (shifted["onset_s"] + shifted["duration_s"] > 0) & (shifted["onset_s"] < end - start_s)
    return raw, shifted[keep].reset_index(drop=True)


def _load(raw: Any, relpath: str, on_nonfinite: str, channels: pd.DataFrame, warnings_out: list[str]) -> np.ndarray:
    n_channels, n_times = len(raw.ch_names), raw.n_times
    data = np.empty((n_channels, n_times), dtype=np.float32)
    block = max(1, _BLOCK_BYTES // (8 * max(n_channels, 1)))
    bad_counts = np.zeros(n_channels, dtype=np.int64)
    first_bad: float | None = None
    sfreq = raw.info["sfreq"]
    for start in range(0, n_times, block):
        stop = min(start + block, n_times)
        try:
            values = raw.get_data(start=start, stop=stop)
        except Exception as exc:  # the reader failed on the file's bytes: a damaged or cut file
            raise ReadError(
                f"{relpath}: reading its samples from {start / sfreq:.3f} s failed "
                f"({type(exc).__name__}: {str(exc).strip() or 'no message'}). The data file is probably "
                "truncated or damaged (its header promises more or other samples than it holds); "
                "re-export or re-download it."
            ) from exc
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, counted below
            data[:, start:stop] = values
        # non-finite in the file, or beyond float32's range (e.g. a header gain of 1e308)
        finite = np.isfinite(data[:, start:stop])
        if not finite.all():
            bad = ~finite
            bad_counts += bad.sum(axis=1)
            if first_bad is None:
                first_bad = (start + int(np.argmax(bad.any(axis=0)))) / sfreq
            data[:, start:stop][bad] = 0.0
    if bad_counts.any():
        names = [channels["name"].iloc[i] for i in np.flatnonzero(bad_counts)]
        summary = (
            f"{relpath}: {int(bad_counts.sum())} non-finite samples (NaN or inf, or beyond the float32 range) in "
            f"{len(names)} channel(s) {names[:10]}{' ...' if len(names) > 10 else ''}, first at "
            f"{first_bad:.3f} s."
        )
        if on_nonfinite == "raise":
            raise NonFiniteDataError(
                f"{summary} The file may be damaged. Leave these channels out (pick.exclude), or set "
                f"on_nonfinite: bad_channel in the recipe to store them as bad channels with the "
                f"non-finite samples set to zero."
            )
        rows = np.flatnonzero(bad_counts)
        channels.loc[rows, "status"] = "bad"
        channels.loc[rows, "status_reason"] = "non-finite samples"
        warnings_out.append(summary + " Stored as bad channels, non-finite samples set to 0.")
    return data


def _too_short(relpath: str, n_times: int, sfreq: float, why: str) -> RecordingTooShortError:
    return RecordingTooShortError(
        f"{relpath}: the recording lasts {n_times / sfreq:.3g} s ({n_times} samples at {sfreq:g} Hz), "
        f"{why}. It is refused rather than stored as a recording too short to use (a file cut short, "
        "or an aborted acquisition?). Leave it out of the input folder."
    )


def _check_length(raw: Any, recipe: Recipe, relpath: str) -> None:
    """Refuse a recording with fewer than two samples or shorter than ``recipe.min_duration_s``."""
    n_times, sfreq = int(raw.n_times), float(raw.info["sfreq"])
    if n_times < 2:
        raise _too_short(relpath, n_times, sfreq, "too few samples to hold any signal")
    if recipe.min_duration_s is not None and n_times / sfreq < recipe.min_duration_s:
        raise _too_short(
            relpath, n_times, sfreq,
            f"shorter than the recipe's min_duration_s of {recipe.min_duration_s:g} s (lower it to keep such recordings)",
        )


def _refuse_non_finite(state: SignalState, rows: list[int], steps: list[str]) -> None:
    names = state.channels["name"].iloc[rows].tolist()
    raise NonFiniteDataError(
        f"{state.relpath}: preprocessing ({', '.join(steps) or 'no steps'}) produced non-finite values in "
        f"{len(names)} channel(s) {names[:10]}{' ...' if len(names) > 10 else ''}: their amplitudes are "
        "too large to process in float32, so the file's calibration (gains, physical range) is probably "
        "damaged. Leave these channels out (pick.exclude) or fix the file's header."
    )


def _check_finite_output(state: SignalState) -> None:
    """The processed signal must be finite (the store holds only finite samples): finite input
    near float32's limits can still overflow in a step."""
    rows = max(1, _BLOCK_BYTES // max(state.data.shape[1], 1))
    bad: list[int] = []
    for start in range(0, state.data.shape[0], rows):
        finite = np.isfinite(state.data[start : start + rows]).all(axis=1)
        bad.extend(start + int(i) for i in np.flatnonzero(~finite))
    if bad:
        _refuse_non_finite(state, bad, [entry["step"] for entry in state.log if entry["step"] != "inspect"])


def _run_channelwise(state: SignalState, steps: list[ChannelwiseStep]) -> None:
    active: list[tuple[ChannelwiseStep, float]] = []
    entries: dict[int, dict[str, Any]] = {}  # each step's provenance entry
    facts: dict[str, Any] = {}
    for step in steps:
        facts.update(step.inspect_input(state))
    if facts:
        state.log.append({"step": "inspect", "params": {}, "effect": facts})
    sfreq = state.sfreq
    for step in steps:
        probe = dataclasses.replace(state, sfreq=sfreq, log=[])  # the rate this step will see
        effect = step.prepare(probe)
        state.line_freq = probe.line_freq
        entries[id(step)] = {"step": step.name, "params": step.params(), "effect": effect}
        state.log.append(entries[id(step)])
        if effect.get("skip"):
            continue
        active.append((step, sfreq))
        sfreq = step.output_sfreq(sfreq)
    for step, step_sfreq in active:  # before any block runs: refuse what the filters cannot handle
        need, why = step.min_samples(step_sfreq)
        if state.n_times / state.sfreq < need / step_sfreq:
            raise _too_short(
                state.relpath, state.n_times, state.sfreq,
                f"shorter than the {need} samples at {step_sfreq:g} Hz ({need / step_sfreq:.3g} s) that "
                f"{why or f'the {step.name} step'} needs",
            )
    if not active:
        return
    # where the acquisition's segments lie at the input of each step (resampling moves them)
    segments = state.segments()
    plan: list[list[tuple[int, int]]] = []
    for step, step_sfreq in active:
        plan.append(segments)
        segments = step.output_segments(segments, step_sfreq)
    n_channels = state.data.shape[0]
    types = state.channels["type"].to_numpy()
    rows_per_block = max(1, _BLOCK_BYTES // (8 * max(state.n_times, 1)))
    output: np.ndarray | None = None
    for start in range(0, n_channels, rows_per_block):
        stop = min(start + rows_per_block, n_channels)
        block = state.data[start:stop].astype(np.float64)
        for (step, step_sfreq), step_segments in zip(active, plan, strict=True):
            block = step.apply_block(block, step_sfreq, types[start:stop], step_segments)
        if output is None:
            if block.shape[1] == state.n_times:
                output = state.data  # same length: overwrite in place, no second array
            else:
                output = np.empty((n_channels, block.shape[1]), dtype=np.float32)
        try:
            with np.errstate(over="raise"):
                output[start:stop] = block
        except FloatingPointError:
            rows = start + np.flatnonzero(~(np.abs(block) <= np.finfo(np.float32).max).all(axis=1))
            _refuse_non_finite(state, rows.tolist(), [s.name for s, _ in active])
        del block
    assert output is not None
    state.data = output
    state.sfreq = sfreq
    if len(segments) > 1:
        state.boundaries_s = [a / sfreq for a, _ in segments[1:]]  # exactly where the cuts now lie
    for step, _ in active:
        notes = step.take_warnings()
        if notes:
            entries[id(step)]["effect"]["warnings"] = notes
            state.warnings.extend(n for n in notes if n not in state.warnings)


def run_steps(state: SignalState, steps: list[Step]) -> None:
    """Run steps in order; consecutive channel-wise steps share one pass over the data.

    Parameters
    ----------
    state : SignalState
        The recording, changed in place.
    steps : list of Step
        Fresh step objects (see :meth:`Recipe.build_steps`).
    """
    for channelwise, group in itertools.groupby(steps, key=lambda step: step.channelwise):
        if channelwise:
            _run_channelwise(state, list(group))  # type: ignore[arg-type]
            continue
        for step in group:
            assert isinstance(step, RecordingStep)
            effect = step.apply(state)
            state.log.append({"step": step.name, "params": step.params(), "effect": effect})


def preprocess_source(source: Source, recipe: Recipe, *, config_hash: str = "", sha256: str = "") -> Recording:
    """Read one source recording and normalise it with a recipe.

    Parameters
    ----------
    source : Source
        What discovery found.
    recipe : Recipe
        The recipe.
    config_hash : str
        Hash of the resolved configuration, recorded in the provenance.
    sha256 : str
        Hash of the source files, recorded with the source.

    Returns
    -------
    recording : Recording
        Ready for :meth:`brainfm.store.StoreWriter.write`.
    """
    from brainfm.preprocessing.readers import capture_messages, read_source

    started = time.perf_counter()
    raw_input = read_source(source, recipe.overrides, on_event_error=recipe.on_event_error)
    picked = _pick(raw_input, recipe, source.relpath)
    raw = raw_input.raw
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw.pick(picked["orig_name"].tolist(), verbose="error")
    order = {name: i for i, name in enumerate(raw.ch_names)}
    picked = picked.iloc[np.argsort([order[n] for n in picked["orig_name"]])].reset_index(drop=True)
    input_sfreq = float(raw.info["sfreq"])
    raw, events = _crop(raw, raw_input.events, recipe, source.relpath)
    warn_list = list(raw_input.warnings) + [str(w.message) for w in caught]
    _check_length(raw, recipe, source.relpath)
    with capture_messages(warn_list):  # lazy readers may print or warn while reading the data
        data = _load(raw, source.relpath, recipe.on_nonfinite, picked, warn_list)
    cuts, found = boundary_cuts(events, data.shape[1] / input_sfreq)
    events, n_added = mark_boundaries(events, cuts, input_sfreq)
    state = SignalState(
        data=data, sfreq=input_sfreq, channels=picked, events=events, line_freq=raw_input.line_freq,
        relpath=source.relpath, boundaries_s=cuts, warnings=warn_list,
    )
    del data
    if cuts:
        state.log.append(boundary_log(cuts, found, n_added, state.segments(), state.sfreq))
    run_steps(state, recipe.build_steps())
    _check_finite_output(state)
    state.channels = state.channels.reset_index(drop=True)
    n_types = state.channels["type"].value_counts().to_dict()
    logger.info(
        "%s: %d channels %s, %.1f s at %g Hz in %.1f s",
        source.recording_id, state.data.shape[0], n_types, state.n_times / state.sfreq, state.sfreq,
        time.perf_counter() - started,
    )
    return Recording(
        signal=state.data,
        sfreq=state.sfreq,
        identity=source.identity,
        channels=state.channels,
        events=state.events.reset_index(drop=True),
        source={
            "recording_id": source.recording_id,
            "path": str(source.path),
            "relpath": source.relpath,
            "format": source.format,
            "size": source.size,
            "sha256": sha256,
            "files": sorted(str(f) for f in source.files),
        },
        provenance={
            "recipe": recipe.name,
            "recipe_origin": recipe.origin,
            "config_hash": config_hash,
            "recipe_config": recipe.to_dict(),
            "reader": raw_input.info,
            "input": {"sfreq": input_sfreq, "n_channels": len(raw_input.channels)},
            "steps": state.log,
            "warnings": state.warnings,
            "seconds": round(time.perf_counter() - started, 3),
        },
        line_freq=state.line_freq,
        meas_date=raw_input.meas_date,
        subject_source=source.subject_source,
    )
