"""``brainfm tokenize CKPT STORE``: every recording's codes, written into the store beside its signal.

The signal is read through the one data path (:class:`~brainfm.loading.dataset.WindowDataset`)
with the normalisation and channel types the tokenizer was trained with (recorded in the
checkpoint), and tokenised whole:

- sample tokenizers (mu-law, quantile, MEG-GPT's): one code per sample and channel,
  ``(channel, time)``; windows start at multiples of the tokenizer's
  :attr:`~brainfm.tokenizers.SampleTokenizer.alignment_samples` (the sample tokenizer's GRU
  restarts there), so the codes equal those of any aligned window;
- BrainTokenizer: windows of ``window`` samples every ``window (1 - overlap)`` samples (0.25
  overlap by default, as BrainOmni), ``steps`` codes per window and level,
  ``(latent, step, level)``; step ``l`` is latent step ``l % steps`` of window ``l // steps``.

Under a normalisation computed over each window (``sensortype``, BrainOmni's, and ``window``)
the codes depend on the span the signal is scaled over. BrainTokenizer codes are then made
from **segments**: the stage-2 loader's windows (``window_s``, ``stride_s``), each read and
normalised as a whole exactly as the loader reads it, then tokenised, as the frozen
tokenizer does on the fly (and as the reference scales a 30-s segment before tokenising
it). Without ``window_s`` a segment is one tokenizer window. The segment is recorded with
the codes; a loader with other windows is refused (:func:`brainfm.loading.codes.check_codes`).

Each recording's array is written, then marked complete (:mod:`brainfm.store.codes`);
recordings whose codes are complete and were made by the same tokenizer weights, settings
and stored signal are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainfm._logging import logger
from brainfm._version import __version__
from brainfm.checkpoint import CheckpointInfo, load_tokenizer, state_digest
from brainfm.data.windows import seconds_to_samples
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.loading.dataset import WindowDataset, init_loader_worker, whole_batch_collate
from brainfm.loading.normalization import WINDOWED_NORMALIZATIONS
from brainfm.loading.windows import WindowIndex, build_window_index
from brainfm.pretrain.facts import data_facts
from brainfm.store.codes import (
    check_codes_name,
    codes_dtype,
    codes_lock,
    create_codes,
    finish_codes,
    open_codes,
    store_writable,
)
from brainfm.store.writer import software_versions
from brainfm.tokenizers.base import SampleTokenizer, Tokenizer
from brainfm.tokenizers.brain_tokenizer import BrainTokenizer

__all__ = ["TokenizeSummary", "codes_settings", "codes_segments", "default_codes_name", "read_settings",
           "tokenize_store"]

#: Samples per read window of sample tokenizers (rounded to their alignment).
_READ_SAMPLES = 4096


@dataclass
class TokenizeSummary:
    """What :func:`tokenize_store` did.

    Attributes
    ----------
    name : str
        The codes name.
    written, skipped : list of str
        Recordings tokenised now, and those already up to date.
    failed : list of dict
        ``recording_id`` and ``error`` of recordings that could not be written.
    seconds : float
        Wall time.
    """

    name: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return dataclasses.asdict(self)


def default_codes_name(info: CheckpointInfo) -> str:
    """The codes name when none is given: the tokenizer class in lower case (``braintokenizer``)."""
    return str(info.tokenizer.get("class_path", "tokenizer")).rpartition(".")[2].lower()


def read_settings(info: CheckpointInfo, normalization: str | None = None) -> dict[str, Any]:
    """How the tokenizer's training data was read: ``normalization``, ``channel_types``, ``sensortype_eps``.

    Parameters
    ----------
    info : CheckpointInfo
        The checkpoint's record (``training_data["loading"]``, written since brainfm records it).
    normalization : str | None
        Override; needed for checkpoints that do not record it.

    Returns
    -------
    settings : dict
        ``normalization``, ``channel_types`` (the checkpoint's, or the types its data held) and
        ``sensortype_eps``.
    """
    loading = dict(info.training_data.get("loading") or {})
    chosen = normalization or loading.get("normalization")
    if chosen is None:
        raise ConfigError(
            f"{info.path} does not record how its training data was normalised (written before brainfm recorded "
            "it). Give the normalisation it was trained with: --normalization zscore|robust|sensortype|none "
            "(the recipe's data.normalization)."
        )
    types = loading.get("channel_types") or (list(info.data.sensor_types) if info.data is not None else None)
    return {"normalization": str(chosen), "channel_types": types, "sensortype_eps": loading.get("sensortype_eps")}


def codes_settings(tokenizer: Tokenizer, overlap: float | None) -> dict[str, Any]:
    """The layout of a tokenizer's codes (``kind``, hop, stride, window, alignment, overlap).

    Parameters
    ----------
    tokenizer : Tokenizer
        A sample tokenizer or a BrainTokenizer.
    overlap : float | None
        BrainTokenizer's window overlap (None: 0.25); must be None or 0 for sample tokenizers.

    Returns
    -------
    settings : dict
        JSON-ready; stored as the codes array's attributes.
    """
    if isinstance(tokenizer, SampleTokenizer):
        if overlap:
            raise ConfigError(f"--overlap applies to window tokenizers; {type(tokenizer).__name__} codes every sample.")
        align = int(tokenizer.alignment_samples)
        return {"kind": "sample", "hop_samples": 1, "stride_samples": align, "window_samples": align,
                "align_samples": align, "steps_per_window": align, "overlap": 0.0, "n_levels": 1}
    if isinstance(tokenizer, BrainTokenizer):
        overlap = 0.25 if overlap is None else float(overlap)
        stride = tokenizer._stride(overlap)
        return {"kind": "window", "hop_samples": int(tokenizer.hop), "stride_samples": int(stride),
                "window_samples": int(tokenizer.window), "align_samples": int(stride),
                "steps_per_window": int(tokenizer.steps), "overlap": overlap, "n_levels": int(tokenizer.n_levels),
                "n_latents": int(tokenizer.n_latents)}
    raise ConfigError(
        f"{type(tokenizer).__name__} has no whole-recording tokenisation; brainfm tokenize handles sample "
        "tokenizers and BrainTokenizer."
    )


def codes_segments(layout: dict[str, Any], normalization: str, sfreq: float, window_s: float | None = None,
                   stride_s: float | None = None) -> dict[str, int]:
    """The segments a BrainTokenizer's codes are made from: ``segment_samples``, ``segment_stride_samples``.

    Parameters
    ----------
    layout : dict
        From :func:`codes_settings`.
    normalization : str
        How the signal is read.
    sfreq : float
        The store's sampling rate.
    window_s, stride_s : float | None
        The stage-2 loader's ``data.window_s`` and ``data.stride_s`` (None: ``window_s``). None
        for ``window_s``: one tokenizer window every tokenizer stride.

    Returns
    -------
    segments : dict
        Empty for sample tokenizers; otherwise ``segment_samples`` (``window + k stride``) and
        ``segment_stride_samples`` (a multiple of the tokenizer stride, at least the segment's
        tokenizer windows times the stride, so no tokenizer window belongs to two segments).

    Raises
    ------
    ConfigError
        Segments under a normalisation that does not depend on the window (the codes then fit
        any window), for sample tokenizers, or segments that do not end on a tokenizer window
        or share tokenizer windows.
    """
    if window_s is None:
        if stride_s is not None:
            raise ConfigError("--stride-s goes with --window-s (the stage-2 loader's window and stride).")
        if layout["kind"] == "sample":
            return {}
        return {"segment_samples": int(layout["window_samples"]), "segment_stride_samples": int(layout["stride_samples"])}
    if layout["kind"] == "sample" or normalization not in WINDOWED_NORMALIZATIONS:
        what = "a sample tokenizer's codes" if layout["kind"] == "sample" else f"codes of {normalization}-normalised signal"
        raise ConfigError(
            f"--window-s applies to BrainTokenizer codes under a normalisation computed over each window "
            f"({', '.join(WINDOWED_NORMALIZATIONS)}); {what} do not depend on the loader's window and fit any "
            "window as they are: leave out --window-s/--stride-s."
        )
    window, stride = int(layout["window_samples"]), int(layout["stride_samples"])
    size = seconds_to_samples("window_s", window_s, sfreq)
    step = seconds_to_samples("stride_s", window_s if stride_s is None else stride_s, sfreq)
    if size < window or (size - window) % stride:
        k = max((size - window) // stride, 0)
        fits = [window + j * stride for j in (k, k + 1)]
        raise ConfigError(
            f"Segments of {size} samples do not end on a tokenizer window ({window} samples every {stride}): use "
            f"window + k x stride samples, e.g. --window-s {fits[0] / sfreq:g} or {fits[1] / sfreq:g} (and the same "
            "data.window_s in the loader)."
        )
    n_windows = (size - window) // stride + 1
    if step % stride or step < n_windows * stride:
        raise ConfigError(
            f"Segments of {size} samples every {step} samples: the stride must be a multiple of the tokenizer stride "
            f"({stride} samples) and at least {n_windows * stride} samples ({n_windows} tokenizer windows), so that "
            f"each tokenizer window belongs to one segment, e.g. --stride-s {n_windows * stride / sfreq:g} (and the "
            "same data.stride_s in the loader)."
        )
    return {"segment_samples": size, "segment_stride_samples": step}


def _starts(n_times: int, layout: dict[str, Any], read: int) -> tuple[np.ndarray, int]:
    """Segment starts of one recording and the segment size (sample kind: read windows)."""
    if layout["kind"] == "window":
        size, stride = layout["segment_samples"], layout["segment_stride_samples"]
        if n_times < size:
            return np.zeros(0, dtype=np.int64), size
        return np.arange(0, n_times - size + 1, stride, dtype=np.int64), size
    align = layout["align_samples"]
    size = min(read, (n_times // align) * align)
    if size < 1:
        return np.zeros(0, dtype=np.int64), read
    starts = np.arange(0, n_times - size + 1, size, dtype=np.int64)
    last = ((n_times - size) // align) * align  # an aligned last window over the tail
    if last > starts[-1]:
        starts = np.append(starts, last)
    return starts, size


class _Batches(torch.utils.data.Dataset):
    """Batch ``i`` = windows of one recording (a list of window indices into one of several indexes)."""

    def __init__(self, indexes: dict[int, WindowIndex], items: list[tuple[int, np.ndarray]], store: Path,
                 settings: dict[str, Any]) -> None:
        self.indexes, self.items, self.store, self.settings = indexes, items, store, settings
        self._datasets: dict[int, WindowDataset] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_datasets": {}}

    def __getitem__(self, i: int) -> Batch:
        size, windows = self.items[i]
        dataset = self._datasets.get(size)
        if dataset is None:
            dataset = self._datasets[size] = WindowDataset(
                self.indexes[size], self.store, self.settings["normalization"],
                sensortype_eps=self.settings["sensortype_eps"], with_labels=False)
        return dataset.__getitems__(windows)


def _signal_record(attrs: dict[str, Any]) -> dict[str, Any]:
    """What identifies the stored signal the codes were made from."""
    provenance = attrs.get("provenance") or {}
    return {"config_hash": provenance.get("config_hash"), "written_at": provenance.get("written_at"),
            "sha256": (attrs.get("source") or {}).get("sha256"), "n_times": attrs.get("n_times")}


def tokenize_store(
    checkpoint: str | Path,
    store: str | Path,
    *,
    name: str | None = None,
    overlap: float | None = None,
    normalization: str | None = None,
    window_s: float | None = None,
    stride_s: float | None = None,
    batch_size: int = 64,
    jobs: int = 0,
    recordings: list[str] | None = None,
    progress: bool = False,
) -> TokenizeSummary:
    """Write every recording's codes into the store (``recordings/<id>/codes/<name>``).

    Parameters
    ----------
    checkpoint : str | pathlib.Path
        A checkpoint whose tokenizer is a sample tokenizer or a BrainTokenizer.
    store : str | pathlib.Path
        The store (written in place).
    name : str | None
        Name of the codes arrays; None: the tokenizer class in lower case.
    overlap : float | None
        BrainTokenizer window overlap (None: 0.25, BrainOmni's).
    normalization : str | None
        Override of the checkpoint's recorded normalisation.
    window_s, stride_s : float | None
        BrainTokenizer under ``sensortype`` or ``window`` normalisation: the stage-2 loader's
        windows (``data.window_s``, ``data.stride_s``; None: ``window_s``), each normalised as a
        whole before it is tokenised, as on the fly (see the module docstring). None: one
        tokenizer window each (codes for loaders of that window only).
    batch_size : int
        Tokenizer windows per forward pass (at least one segment).
    jobs : int
        DataLoader worker processes reading the signal (0: the main process).
    recordings : list of str | None
        Only these recordings; None: all that have the tokenizer's channel types.
    progress : bool
        Show a progress bar.

    Returns
    -------
    summary : TokenizeSummary
        Written, skipped and failed recordings.
    """
    import zarr

    started = time.perf_counter()
    store = Path(store)
    store_writable(store)  # refuse a read-only store before anything is written
    tokenizer, info = load_tokenizer(checkpoint)
    name = check_codes_name(name or default_codes_name(info))
    layout = codes_settings(tokenizer, overlap)
    settings = read_settings(info, normalization)
    if layout["kind"] == "sample" and settings["normalization"] in WINDOWED_NORMALIZATIONS:
        raise ConfigError(
            f"{info.path}: {settings['normalization']} normalisation scales each window on its own, so a sample "
            "tokenizer's codes of a whole recording would depend on where windows are cut. Pass --normalization "
            "zscore (or robust, none)."
        )
    read = max(layout["align_samples"], (_READ_SAMPLES // layout["align_samples"]) * layout["align_samples"])
    index = build_window_index(store, window_s=read / (info.data.sfreq if info.data else 1.0),
                               channel_types=settings["channel_types"], recording_ids=recordings)
    if info.data is not None and abs(index.sfreq - info.data.sfreq) > 1e-6:
        raise ConfigError(
            f"{store} is at {index.sfreq:g} Hz but the tokenizer of {info.path} was trained at {info.data.sfreq:g} Hz. "
            "Preprocess the store at the tokenizer's rate."
        )
    layout.update(codes_segments(layout, settings["normalization"], index.sfreq, window_s, stride_s))
    tokenizer.check_data(data_facts(index))
    summary = TokenizeSummary(name=name)
    spec = {"class_path": info.tokenizer.get("class_path"), "init_args": info.tokenizer.get("init_args"),
            "digest": state_digest(tokenizer.state_dict())}
    common = {
        **layout, "tokenizer": spec, "vocab_size": int(tokenizer.vocab_size), "sfreq": float(index.sfreq),
        "normalization": settings["normalization"], "channel_types": settings["channel_types"],
        "sensortype_eps": settings["sensortype_eps"],
        "checkpoint": {"path": str(Path(info.path).resolve()), "epoch": info.epoch, "global_step": info.global_step,
                       "trained_on": {k: info.training_data.get(k) for k in ("store", "recordings", "subjects")}},
        "brainfm_version": __version__,
    }
    dtype = codes_dtype(int(tokenizer.vocab_size))

    with codes_lock(store, f"tokenize into {name!r}"):
        root = zarr.open_group(str(store), mode="r+")
        groups: dict[int, Any] = {}
        plans: dict[int, tuple[np.ndarray, int, dict[str, Any]]] = {}
        for layout_rec in index.layouts:
            group = root[f"recordings/{layout_rec.recording_id}"]
            attrs = dict(group.attrs)
            own = {**common, "channels": list(layout_rec.names), "signal": _signal_record(attrs)}
            existing = open_codes(group, layout_rec.recording_id, name)
            if existing is not None and existing.complete and _same(existing.attrs, own):
                summary.skipped.append(layout_rec.recording_id)
                continue
            starts, size = _starts(layout_rec.n_times, layout, read)
            groups[layout_rec.index] = group
            plans[layout_rec.index] = (starts, size, own)
        # one window index per window size; batches never mix recordings
        by_size: dict[int, list[tuple[int, np.ndarray]]] = {}
        for k, (starts, size, _own) in plans.items():
            by_size.setdefault(size, []).append((k, starts))
        indexes: dict[int, WindowIndex] = {}
        offsets: dict[tuple[int, int], int] = {}
        for size, parts in by_size.items():
            recording = np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s in parts])
            start = np.concatenate([s for _, s in parts])
            indexes[size] = dataclasses.replace(index, recording=recording, start=start,
                                                label=np.full(len(start), -1, dtype=np.int64),
                                                window_size_samples=size)
            position = 0
            for k, s in parts:
                offsets[(size, k)] = position
                position += len(s)
        items: list[tuple[int, np.ndarray]] = []
        owner: list[int] = []
        per_batch = batch_size
        if layout["kind"] == "window":  # batch_size counts tokenizer windows; whole segments per batch
            per_batch = max(1, batch_size // ((layout["segment_samples"] - layout["window_samples"])
                                              // layout["stride_samples"] + 1))
        for k, (starts, size, _own) in plans.items():
            first = offsets[(size, k)]
            for b0 in range(0, len(starts), per_batch):
                items.append((size, np.arange(first + b0, first + min(b0 + per_batch, len(starts)))))
                owner.append(k)
        remaining = {k: sum(1 for o in owner if o == k) for k in plans}
        arrays: dict[int, Any] = {}
        for k, (starts, _size, own) in plans.items():
            try:
                arrays[k] = _create(groups[k], name, own, index.layouts[k], starts, plans[k][1], dtype)
                if remaining[k] == 0:  # shorter than one window: complete, and empty
                    _finish(arrays.pop(k), groups[k], own, summary, index.layouts[k].recording_id, 0)
            except Exception as exc:  # noqa: BLE001 - recorded, the other recordings go on
                summary.failed.append({"recording_id": index.layouts[k].recording_id, "error": f"{type(exc).__name__}: {exc}"})
        loader = torch.utils.data.DataLoader(
            _Batches(indexes, items, store, settings), batch_size=None, shuffle=False, num_workers=jobs,
            worker_init_fn=init_loader_worker if jobs > 0 else None,
        ) if items else []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(plans), unit="rec", desc=f"tokenize {name}", dynamic_ncols=True)
            bar.update(len(plans) - len(remaining) + sum(1 for v in remaining.values() if v == 0))
        done_windows: dict[int, int] = {}
        try:
            for i, batch in enumerate(loader):
                k = owner[i]
                remaining[k] -= 1
                if k not in arrays:
                    continue  # its array could not be created
                rid = index.layouts[k].recording_id
                try:
                    _write(arrays[k], tokenizer, whole_batch_collate(batch), plans[k][2])
                    done_windows[k] = done_windows.get(k, 0) + len(batch)
                    if remaining[k] == 0:
                        _finish(arrays.pop(k), groups[k], plans[k][2], summary, rid, done_windows[k])
                        if bar is not None:
                            bar.update()
                except Exception as exc:  # noqa: BLE001 - recorded, the other recordings go on
                    arrays.pop(k, None)
                    summary.failed.append({"recording_id": rid, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            if bar is not None:
                bar.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    logger.info("tokenize %s: %d written, %d up to date, %d failed in %.1f s", name, len(summary.written),
                len(summary.skipped), len(summary.failed), summary.seconds)
    return summary


#: Attributes that must be equal for stored codes to count as up to date.
_IDENTITY = ("kind", "tokenizer", "hop_samples", "stride_samples", "window_samples", "overlap", "normalization",
             "channel_types", "sensortype_eps", "channels", "signal", "vocab_size", "segment_samples",
             "segment_stride_samples")


def _same(stored: dict[str, Any], own: dict[str, Any]) -> bool:
    from brainfm.store._json import to_json

    wanted = to_json({key: own.get(key) for key in _IDENTITY})
    return all(stored.get(key) == wanted[key] for key in _IDENTITY)


def _create(group: Any, name: str, own: dict[str, Any], layout: Any, starts: np.ndarray, size: int,
            dtype: str) -> Any:
    n_windows = len(starts)
    covered = int(starts[-1]) + size if n_windows else 0  # codes cover samples [0, covered)
    own = {**own, "covered_samples": covered}
    if own["kind"] == "window" and n_windows:  # tokenizer windows up to the last segment's end
        n_windows = (covered - own["window_samples"]) // own["stride_samples"] + 1
    if own["kind"] == "sample":
        n_channels, n_times = layout.n_channels, layout.n_times
        chunk_times = int(min(max(n_times, 1), max(256, (1 << 20) // max(2 * n_channels, 1))))
        return create_codes(group, name, shape=(n_channels, n_times), dtype=dtype,
                            chunks=(max(n_channels, 1), chunk_times), dimension_names=["channel", "time"],
                            attributes={**own, "n_windows": n_windows})
    steps = own["steps_per_window"] * n_windows
    chunk_steps = int(min(max(steps, 1), max(64, (1 << 20) // max(2 * own["n_latents"] * own["n_levels"], 1))))
    return create_codes(group, name, shape=(own["n_latents"], steps, own["n_levels"]), dtype=dtype,
                        chunks=(own["n_latents"], chunk_steps, own["n_levels"]),
                        dimension_names=["latent", "step", "level"], attributes={**own, "n_windows": n_windows})


def _write(array: Any, tokenizer: Tokenizer, batch: Batch, own: dict[str, Any]) -> None:
    """Tokenise one batch of windows (segments) of one recording and write their codes."""
    with torch.inference_mode():
        codes = tokenizer.encode(batch) if own["kind"] == "sample" else tokenizer.tokenize(batch, own["overlap"])[1]
    starts = batch.start.numpy()
    if own["kind"] == "sample":
        values = codes.numpy().astype(array.dtype, copy=False)  # (B, C, T)
        n_times = values.shape[2]
        if len(starts) > 1 and bool(np.all(np.diff(starts) == n_times)):  # contiguous: one write
            block = values.transpose(1, 0, 2).reshape(values.shape[1], -1)  # (C, B T)
            array[:, int(starts[0]) : int(starts[0]) + block.shape[1]] = block
            return
        for row, start in enumerate(starts.tolist()):
            array[:, start : start + n_times] = values[row]
        return
    steps, stride = own["steps_per_window"], own["stride_samples"]
    first = starts // stride * steps  # first step of each segment
    values = codes.numpy().astype(array.dtype, copy=False)  # (B, C', K S, levels)
    length = values.shape[2]
    if len(starts) == 1 or bool(np.all(np.diff(first) == length)):  # segments tile: one slice
        block = values.transpose(1, 0, 2, 3).reshape(values.shape[1], -1, values.shape[3])  # (C', B K S, levels)
        array[:, int(first[0]) : int(first[0]) + block.shape[1], :] = block
        return
    for row, step in enumerate(first.tolist()):
        array[:, step : step + length, :] = values[row]


def _finish(array: Any, group: Any, own: dict[str, Any], summary: TokenizeSummary, rid: str, n_windows: int) -> None:
    """Mark the codes complete, unless the recording's signal was rewritten meanwhile."""
    now = _signal_record(dict(group.attrs))
    from brainfm.store._json import to_json

    if to_json(now) != to_json(own["signal"]):
        summary.failed.append({"recording_id": rid, "error": "the recording was rewritten while it was tokenised "
                               "(brainfm preprocess ran meanwhile); run brainfm tokenize again."})
        return
    finish_codes(array, {"software": software_versions(), "windows_written": n_windows})
    summary.written.append(rid)

