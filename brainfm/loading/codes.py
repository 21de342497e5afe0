"""Cached tokenizer codes (``brainfm tokenize``) cut to the same windows as the signal: ``Batch.codes``.

:func:`check_codes` verifies, once per data module, that every selected recording has complete
codes of one name, made by one tokenizer with one setting, from the signal as it is stored,
read the way this loader reads it (normalisation, channels), and that every window starts
on the codes' alignment and lies inside the tokenised part. :class:`CodesReader` then reads
each batch's codes:

- ``sample`` codes (sample tokenizers): ``Batch.codes`` is ``(B, C, T)`` int64, the code of
  every sample, 0 on masked and padding channels (as ``tokenizer.encode(batch)``); windows
  must start at multiples of ``align_samples`` (the MEG-GPT tokenizer's GRU window; 1 for
  mu-law and quantile tokenizers);
- ``window`` codes (BrainTokenizer): ``Batch.codes`` is ``(B, C', K S, levels)`` int64 for the
  ``K = (T - window) / stride + 1`` tokenizer windows of each batch window (as
  ``tokenizer.tokenize(batch, overlap)[1]``); windows must start at multiples of the stride
  and their length must be ``window + k stride`` samples. Under a normalisation computed over
  each window (``sensortype``, ``window``) the codes were made from segments normalised each
  as a whole (``brainfm tokenize --window-s --stride-s``): the loader's windows must then be
  those segments (the same length, starts on the segments' grid), so that both paths tokenise
  the same values. Codes written before brainfm recorded the segment count as segments of one
  tokenizer window, which they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainfm.errors import ConfigError, DataQualityError
from brainfm.loading.normalization import WINDOWED_NORMALIZATIONS
from brainfm.loading.windows import WindowIndex
from brainfm.store.codes import CODES_GROUP, NO_CODE
from brainfm.store.format import RECORDINGS_GROUP

__all__ = ["CodesLayout", "CodesReader", "check_codes"]

#: Attributes that say which tokenizer and which setting made the codes (all recordings must agree).
_SETTING = ("kind", "tokenizer", "hop_samples", "stride_samples", "window_samples", "align_samples",
            "steps_per_window", "overlap", "vocab_size", "n_levels", "normalization", "sensortype_eps",
            "segment_samples", "segment_stride_samples")


@dataclass
class CodesLayout:
    """The checked layout of a store's codes of one name.

    Attributes
    ----------
    name : str
        The codes name.
    kind : str
        ``"sample"`` or ``"window"``.
    attrs : dict
        The shared setting (``tokenizer``, strides, normalisation, ...).
    recordings : list of str
        Recording ids, in the index's layout order.
    window_samples, stride_samples, steps_per_window : int
        Tokenizer window, stride and codes per window (``window`` kind).
    segment_samples, segment_stride_samples : int
        The segments the codes were made from, each normalised as a whole (``window`` kind;
        one tokenizer window every tokenizer stride for codes that do not record them).
    """

    name: str
    kind: str
    attrs: dict[str, Any]
    recordings: list[str] = field(default_factory=list)
    window_samples: int = 1
    stride_samples: int = 1
    steps_per_window: int = 1
    segment_samples: int = 1
    segment_stride_samples: int = 1

    def describe(self) -> str:
        """One line: the tokenizer and the setting."""
        spec = self.attrs.get("tokenizer") or {}
        return (f"{spec.get('class_path')} {spec.get('init_args')} (weights {str(spec.get('digest'))[:12]}), "
                f"{self.kind} codes, stride {self.stride_samples}, overlap {self.attrs.get('overlap')}")


def _names(items: list[str]) -> str:
    return ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def _open_arrays(store: Path, name: str, recording_ids: list[str]) -> dict[str, Any]:
    import zarr

    root = zarr.open_group(zarr.storage.LocalStore(str(store), read_only=True), mode="r", zarr_format=3)
    arrays = {}
    for rid in recording_ids:
        try:
            arrays[rid] = root[f"{RECORDINGS_GROUP}/{rid}/{CODES_GROUP}/{name}"]
        except KeyError:
            arrays[rid] = None
    return arrays


def check_codes(index: WindowIndex, store: str | Path, name: str, normalization: str) -> CodesLayout:
    """Check that the store's codes ``name`` fit every window of ``index``.

    Parameters
    ----------
    index : WindowIndex
        The loader's windows (all splits).
    store : str | pathlib.Path
        The store.
    name : str
        The codes name given to ``brainfm tokenize --name``.
    normalization : str
        The loader's normalisation (the codes must have been made from the same).

    Returns
    -------
    layout : CodesLayout
        What the codes are.

    Raises
    ------
    ConfigError
        Naming the recordings without (complete) codes, those made by another tokenizer or
        setting (and what differs), and windows that are not aligned or not covered.
    """
    from brainfm.store._json import to_json

    ids = [layout.recording_id for layout in index.layouts]
    arrays = _open_arrays(Path(store), name, ids)
    attrs = {rid: dict(a.attrs) for rid, a in arrays.items() if a is not None}
    missing = [rid for rid in ids if rid not in attrs or not attrs[rid].get("complete")]
    if missing:
        raise ConfigError(
            f"{len(missing)} recordings of {store} have no complete codes named {name!r} ({_names(missing)}). "
            f"Write them with 'brainfm tokenize CKPT {store} --name {name}' (it skips recordings already done)."
        )
    settings: dict[str, list[str]] = {}
    for rid in ids:
        key = repr(to_json({k: attrs[rid].get(k) for k in _SETTING}))
        settings.setdefault(key, []).append(rid)
    if len(settings) > 1:
        groups = list(settings.values())
        first, other = attrs[groups[0][0]], attrs[groups[1][0]]
        differ = [k for k in _SETTING if to_json(first.get(k)) != to_json(other.get(k))]
        raise ConfigError(
            f"The codes {name!r} of {store} were made by different tokenizers or settings: "
            + "; ".join(f"{_names(g)}" for g in groups)
            + f" differ in {differ} (e.g. {differ[0]}: {first.get(differ[0])!r} vs {other.get(differ[0])!r}). "
            f"Tokenize every recording with one checkpoint: 'brainfm tokenize CKPT {store} --name {name}'."
        )
    shared = attrs[ids[0]]
    if shared.get("normalization") != normalization:
        raise ConfigError(
            f"The codes {name!r} of {store} were made from {shared.get('normalization')}-normalised signal, but this "
            f"loader normalises with {normalization!r}: they would not be the codes of its batches. Use "
            f"normalization={shared.get('normalization')!r}, or tokenize again with --normalization {normalization}."
        )
    kind = str(shared["kind"])
    codes = CodesLayout(name=name, kind=kind, attrs={k: shared.get(k) for k in _SETTING}, recordings=ids,
                        window_samples=int(shared["window_samples"]), stride_samples=int(shared["stride_samples"]),
                        steps_per_window=int(shared["steps_per_window"]),
                        segment_samples=int(shared.get("segment_samples") or shared["window_samples"]),
                        segment_stride_samples=int(shared.get("segment_stride_samples") or shared["stride_samples"]))
    size = index.window_size_samples
    stale = [layout.recording_id for layout in index.layouts
             if kind == "sample" and list(attrs[layout.recording_id].get("channels") or []) != list(layout.names)]
    if stale:
        raise ConfigError(
            f"The codes {name!r} of {_names(stale)} were made from other channels than this loader selects "
            "(channel_types differ). Select the tokenizer's channel types, or tokenize again."
        )
    align = int(shared["align_samples"])
    if kind == "window" and (size < codes.window_samples or (size - codes.window_samples) % codes.stride_samples):
        k = max((size - codes.window_samples) // codes.stride_samples, 0)
        fits = [codes.window_samples + j * codes.stride_samples for j in (k, k + 1)]
        raise ConfigError(
            f"Windows of {size} samples do not end on a tokenizer window of the codes {name!r} "
            f"({codes.window_samples} samples every {codes.stride_samples}): use windows of window + k x stride "
            f"samples, e.g. {fits[0]} or {fits[1]} samples ({fits[0] / index.sfreq:g} or {fits[1] / index.sfreq:g} s)."
        )
    if kind == "window" and normalization in WINDOWED_NORMALIZATIONS:
        _check_segments(index, store, name, normalization, codes, recorded="segment_samples" in shared)
    misaligned = np.flatnonzero(index.start % align)
    if len(misaligned):
        shown = _first_windows(index, misaligned)
        raise ConfigError(
            f"{len(misaligned)} windows do not start on the codes' alignment of {align} samples "
            f"({'; '.join(shown)}): their cached codes would differ from the tokenizer's. Use window starts "
            f"(stride_s, event offsets) that are multiples of {align / index.sfreq:g} s."
        )
    covered = np.array([int(attrs[rid].get("covered_samples", 0)) for rid in ids], dtype=np.int64)
    outside = np.flatnonzero(index.start + size > covered[index.recording])
    if len(outside):
        shown = _first_windows(index, outside)
        raise ConfigError(
            f"{len(outside)} windows reach past the tokenised part of their recording ({'; '.join(shown)}): "
            f"the codes {name!r} end after the last full tokenizer window. Use last_window='drop' or shorter windows."
        )
    return codes


def _first_windows(index: WindowIndex, positions: np.ndarray, limit: int = 5) -> list[str]:
    """``"RECORDING at sample S"`` for the first ``limit`` windows at ``positions`` of ``index`` (for messages)."""
    return [f"{index.layouts[int(index.recording[i])].recording_id} at sample {int(index.start[i])}"
            for i in positions[:limit]]


def _check_segments(index: WindowIndex, store: str | Path, name: str, normalization: str, codes: CodesLayout,
                    recorded: bool) -> None:
    """Refuse loader windows other than the segments the codes were normalised over (windowed normalisations)."""
    size, sfreq = index.window_size_samples, index.sfreq
    segment, step = codes.segment_samples, codes.segment_stride_samples
    grid = int(np.gcd.reduce(index.start)) if len(index.start) else step
    loader_step = grid if grid > 0 else step
    command = (f"'brainfm tokenize CKPT {store} --name {name} --window-s {size / sfreq:g} "
               f"--stride-s {loader_step / sfreq:g}'")
    made = (f"were made from segments of {segment} samples every {step} ({segment / sfreq:g} s every "
            f"{step / sfreq:g} s), each {normalization}-normalised as a whole before it was tokenised"
            + ("" if recorded else " (written before brainfm recorded the segment: one tokenizer window each)"))
    if size != segment:
        raise ConfigError(
            f"The codes {name!r} of {store} {made}, but this loader's windows hold {size} samples "
            f"({size / sfreq:g} s), normalised as a whole too: the tokenizer would see other values on the fly. "
            f"Tokenize for these windows: {command}, or load windows of {segment / sfreq:g} s every "
            f"{step / sfreq:g} s."
        )
    off = np.flatnonzero(index.start % step)
    if len(off):
        shown = _first_windows(index, off)
        raise ConfigError(
            f"The codes {name!r} of {store} {made}, but {len(off)} windows of this loader do not start on that grid "
            f"({'; '.join(shown)}): each would be normalised over other samples than its codes. Use "
            f"data.stride_s a multiple of {step / sfreq:g} s (and last_window='drop'), or tokenize for these "
            f"windows: {command}."
        )


class CodesReader:
    """Reads the codes of a batch's windows (one instance per process; pickles without open arrays).

    Parameters
    ----------
    store : str | pathlib.Path
        The store.
    layout : CodesLayout
        From :func:`check_codes`.
    """

    def __init__(self, store: str | Path, layout: CodesLayout) -> None:
        self.store, self.layout = Path(store), layout
        self._arrays: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def _array(self, recording_id: str) -> Any:
        if self._arrays is None:
            self._arrays = _open_arrays(self.store, self.layout.name, self.layout.recordings)
        return self._arrays[recording_id]

    def read(self, recording_id: str, starts: np.ndarray, n_times: int) -> np.ndarray:
        """Codes of the windows ``starts`` (sorted) of one recording.

        Parameters
        ----------
        recording_id : str
            The recording.
        starts : numpy.ndarray of int64
            Window starts in samples (sorted).
        n_times : int
            Samples per window.

        Returns
        -------
        codes : numpy.ndarray of int64
            ``(n, C, T)`` for ``sample`` codes, ``(n, C', K S, levels)`` for ``window`` codes.
        """
        array = self._array(recording_id)
        layout = self.layout
        if layout.kind == "sample":
            lo, hi, scale, length = int(starts[0]), int(starts[-1]) + n_times, 1, n_times
        else:
            steps, stride = layout.steps_per_window, layout.stride_samples
            k = (n_times - layout.window_samples) // stride + 1
            lo, hi = int(starts[0]) // stride * steps, (int(starts[-1]) // stride + k) * steps
            scale, length = steps, k * steps
        offsets = (starts // (1 if layout.kind == "sample" else layout.stride_samples)) * scale - lo
        if hi - lo <= 8 * length * len(starts):  # close together: one read
            span = array[:, lo:hi] if layout.kind == "sample" else array[:, lo:hi, :]
            parts = [span[:, o : o + length] for o in offsets.tolist()]
        else:
            parts = [array[:, lo + o : lo + o + length] for o in offsets.tolist()]
        codes = np.stack(parts).astype(np.int64)
        if (codes == NO_CODE).any():
            row = int(np.flatnonzero((codes == NO_CODE).reshape(len(codes), -1).any(1))[0])
            raise DataQualityError(
                f"The codes {layout.name!r} of {recording_id} hold no code for the window at sample "
                f"{int(starts[row])}: the codes array was damaged or written partly. Run brainfm tokenize again."
            )
        return codes

    def batch_codes(self, index: WindowIndex, recording: np.ndarray, start: np.ndarray, group_start: np.ndarray,
                    group_stop: np.ndarray, n_channels: int) -> torch.Tensor:
        """``Batch.codes`` for windows sorted by recording and start (groups as the dataset forms them).

        Parameters
        ----------
        index : WindowIndex
            The windows' index.
        recording, start : numpy.ndarray of int64, shape (B,)
            Layout index and first sample of each window.
        group_start, group_stop : numpy.ndarray of int64
            Rows of each recording's run of windows.
        n_channels : int
            Channels of the batch (padding for ``sample`` codes).

        Returns
        -------
        codes : torch.Tensor of int64
            See the module docstring.
        """
        n_times = index.window_size_samples
        parts = []
        for i0, i1 in zip(group_start.tolist(), group_stop.tolist(), strict=True):
            layout = index.layouts[int(recording[i0])]
            codes = self.read(layout.recording_id, start[i0:i1], n_times)
            if self.layout.kind == "sample":  # masked channels already hold 0 (as encode gives)
                if codes.shape[1] < n_channels:
                    codes = np.pad(codes, ((0, 0), (0, n_channels - codes.shape[1]), (0, 0)))
            parts.append(codes)
        return torch.from_numpy(np.concatenate(parts))

