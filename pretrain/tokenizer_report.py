"""``brainfm tokenizer report CKPT STORE``: a trained tokenizer's fidelity on recordings of a store.

Windows are read through the one data path with the normalisation and channel types the
tokenizer was trained with, encoded, decoded, and compared with what the tokenizer
reconstructs (:mod:`brainfm.tokenizers.quality`): the normalised signal for sample
tokenizers, the window z-scored per channel for BrainTokenizer (whose decoder does not model
amplitude). ``split="val"`` keeps the recordings the checkpoint was *not* trained on
(``training_data["recordings"]``), so the figures describe unseen subjects when the
training split was by subject.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from brainfm._check import check_option
from brainfm._logging import logger
from brainfm.checkpoint import CheckpointInfo, load_tokenizer
from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.loading.dataset import WindowDataset, init_loader_worker, whole_batch_collate
from brainfm.loading.windows import build_window_index
from brainfm.pretrain.tokenize import read_settings
from brainfm.store import open_store
from brainfm.tokenizers.base import SampleTokenizer, Tokenizer
from brainfm.tokenizers.brain_tokenizer import BrainTokenizer
from brainfm.tokenizers.quality import CodeUsage, ReconstructionQuality

__all__ = ["TokenizerReport", "evaluate_tokenizer", "format_report", "report_recordings", "tokenizer_report"]


@dataclass
class TokenizerReport:
    """The metrics of one report (see :mod:`brainfm.tokenizers.quality`).

    Attributes
    ----------
    quality : ReconstructionQuality
        PCC, NMSE and spectra per sensor type.
    usage : CodeUsage
        Code counts per level.
    n_windows : int
        Windows evaluated.
    recordings : list of str
        Recordings evaluated.
    split : str
        ``"val"`` or ``"all"``.
    checkpoint : str
        The checkpoint.
    tokenizer : dict
        Its ``class_path`` and ``init_args``.
    settings : dict
        Normalisation, channel types, window length.
    figures : list of str
        PNG files written.
    seconds : float
        Wall time.
    """

    quality: ReconstructionQuality
    usage: CodeUsage
    n_windows: int = 0
    recordings: list[str] = field(default_factory=list)
    split: str = "val"
    checkpoint: str = ""
    tokenizer: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object: exactly ``pcc``, ``nmse``, ``psd_rel_error``, ``codebook_usage``,
        ``perplexity``, ``n_windows`` (per-type values as ``{type: value}``, per-level values as lists)."""
        return {
            "pcc": _finite(self.quality.pcc()),
            "nmse": _finite(self.quality.nmse()),
            "psd_rel_error": _finite(self.quality.psd_rel_error()),
            "codebook_usage": self.usage.usage(),
            "perplexity": self.usage.perplexity(),
            "n_windows": int(self.n_windows),
        }

    def details(self) -> dict[str, Any]:
        """Everything, for ``report.json``: the summary plus dead codes, band powers, recordings and settings."""
        return {
            **self.summary(),
            "dead_codes": self.usage.dead_codes(),
            "codes_per_level": int(self.usage.counts.shape[1]),
            "band_power": _finite(self.quality.band_powers()),
            "channel_windows": dict(self.quality.count),
            "split": self.split,
            "recordings": list(self.recordings),
            "checkpoint": self.checkpoint,
            "tokenizer": self.tokenizer,
            "settings": self.settings,
            "figures": list(self.figures),
            "seconds": self.seconds,
        }


def _finite(value: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_recordings(info: CheckpointInfo, available: list[str], split: Literal["val", "all"]) -> list[str]:
    """The recordings a report covers.

    Parameters
    ----------
    info : CheckpointInfo
        The checkpoint's record.
    available : list of str
        Recordings of the store with the tokenizer's channel types.
    split : "val" | "all"
        ``"val"``: those the checkpoint was not trained on; ``"all"``: every one.

    Returns
    -------
    recordings : list of str
        Sorted ids.
    """
    check_option("split", split, ("val", "all"))
    if split == "all":
        return sorted(available)
    trained = info.training_data.get("recordings")
    if not trained:
        raise ConfigError(f"{info.path} records no training recordings, so its held-out split is unknown; use --split all.")
    held_out = sorted(set(available) - set(trained))
    if not held_out:
        raise ConfigError(
            f"Every recording of the store ({len(available)}) was in the training split of {info.path}; a report on "
            "them would not describe unseen data. Report on another store, or use --split all."
        )
    return held_out


def _target_and_reconstruction(tokenizer: Tokenizer, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference (B, C, T), reconstruction (B, C, T), mask (B, C) and codes (N, levels) of a batch."""
    codes = tokenizer.encode(batch)
    reconstruction = tokenizer.decode(codes, batch)
    if isinstance(tokenizer, BrainTokenizer):
        mask = tokenizer.usable(batch)
        target = tokenizer.target(batch.signal)
        flat = codes.reshape(-1, codes.shape[-1])  # (B C' L, levels)
    else:
        mask = batch.channel_mask
        target = batch.signal
        flat = codes[mask].reshape(-1, 1)  # (coded samples, 1)
    return target, reconstruction, mask, flat


def evaluate_tokenizer(tokenizer: Tokenizer, batches: Any, sfreq: float) -> tuple[ReconstructionQuality, CodeUsage, int]:
    """Accumulate the metrics of a tokenizer over batches (the function benchmarks and tests call).

    Parameters
    ----------
    tokenizer : Tokenizer
        In evaluation mode.
    batches : iterable of Batch
        The windows.
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    quality : ReconstructionQuality
        PCC, NMSE, spectra per type.
    usage : CodeUsage
        Code counts per level.
    n_windows : int
        Windows seen.
    """
    if isinstance(tokenizer, BrainTokenizer):
        usage = CodeUsage(tokenizer.n_levels, tokenizer.n_codes)
    elif isinstance(tokenizer, SampleTokenizer):
        usage = CodeUsage(1, tokenizer.vocab_size - 1, offset=1)
    else:
        raise ConfigError(f"{type(tokenizer).__name__} is neither a sample tokenizer nor a BrainTokenizer.")
    quality = ReconstructionQuality(sfreq)
    n_windows = 0
    with torch.inference_mode():
        for batch in batches:
            target, reconstruction, mask, codes = _target_and_reconstruction(tokenizer, batch)
            quality.update(target, reconstruction, mask, batch.sensor_type)
            usage.update(codes)
            n_windows += len(batch)
    return quality, usage, n_windows


def tokenizer_report(
    checkpoint: str | Path,
    store: str | Path,
    *,
    split: Literal["val", "all"] = "val",
    normalization: str | None = None,
    batch_size: int = 64,
    jobs: int = 0,
    max_windows: int | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> TokenizerReport:
    """Measure a checkpoint's tokenizer on a store; optionally write ``report.json`` and figures.

    Parameters
    ----------
    checkpoint : str | pathlib.Path
        A checkpoint written by ``brainfm pretrain fit``.
    store : str | pathlib.Path
        The store.
    split : "val" | "all"
        Recordings the checkpoint was not trained on, or all.
    normalization : str | None
        Override of the checkpoint's recorded normalisation.
    batch_size : int
        Windows per batch.
    jobs : int
        DataLoader workers.
    max_windows : int | None
        Evaluate at most this many windows, evenly spread; None: all.
    out : str | pathlib.Path | None
        Folder for ``report.json``, ``reconstruction.png``, ``psd.png`` and ``code_usage.png``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    report : TokenizerReport
        The metrics.
    """
    started = time.perf_counter()
    tokenizer, info = load_tokenizer(checkpoint)
    settings = read_settings(info, normalization)
    if isinstance(tokenizer, BrainTokenizer):
        size = tokenizer.window
    else:
        size = int(info.data.n_times) if info.data is not None else 512
    sfreq = info.data.sfreq if info.data is not None else None
    types = settings["channel_types"]
    store_view = open_store(store)
    if sfreq is None:
        sfreq = store_view[next(iter(store_view))].sfreq
    available = [rid for rid in store_view if set(store_view[rid].channels["type"]) & set(types or ["eeg", "mag", "grad"])]
    chosen = report_recordings(info, available, split)
    index = build_window_index(store_view, window_s=size / sfreq, channel_types=types, recording_ids=chosen)
    if abs(index.sfreq - sfreq) > 1e-6:
        raise ConfigError(f"{store} is at {index.sfreq:g} Hz, the tokenizer of {info.path} at {sfreq:g} Hz.")
    if len(index) == 0:
        raise ConfigError(f"No window of {size} samples in the {split} recordings of {store} ({', '.join(chosen[:5])}).")
    windows = np.arange(len(index))
    if max_windows is not None and len(windows) > max_windows:
        windows = np.unique(np.linspace(0, len(index) - 1, max_windows).round().astype(np.int64))
    dataset = WindowDataset(index, store, settings["normalization"], sensortype_eps=settings["sensortype_eps"],
                            with_labels=False)
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=whole_batch_collate,
                                         num_workers=jobs, worker_init_fn=init_loader_worker if jobs > 0 else None)
    iterator: Any = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, total=len(batches), unit="batch", desc="tokenizer report", dynamic_ncols=True)
    first: list[Batch] = []

    def keep_first(source: Any) -> Any:
        for batch in source:
            if not first:
                first.append(batch)
            yield batch

    quality, usage, n_windows = evaluate_tokenizer(tokenizer, keep_first(iterator), index.sfreq)
    report = TokenizerReport(
        quality=quality, usage=usage, n_windows=n_windows, recordings=chosen, split=split, checkpoint=str(checkpoint),
        tokenizer=dict(info.tokenizer), settings={**settings, "window_samples": size, "sfreq": index.sfreq},
    )
    if out is not None:
        from brainfm.pretrain.tokenizer_figures import write_figures

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            example = _target_and_reconstruction(tokenizer, first[0])
        report.figures = write_figures(folder, report, example, first[0])
        report.seconds = round(time.perf_counter() - started, 3)
        (folder / "report.json").write_text(json.dumps(report.details(), indent=2, default=str) + "\n")
    report.seconds = round(time.perf_counter() - started, 3)
    logger.info("tokenizer report: %d windows of %d recordings in %.1f s", n_windows, len(chosen), report.seconds)
    return report


def format_report(report: TokenizerReport) -> str:
    """A short human summary (one line per sensor type and per level)."""
    summary = report.summary()
    lines = [f"{report.n_windows} windows of {len(report.recordings)} recordings ({report.split} split)"]
    for t in report.quality.types:
        bands = ", ".join(f"{b} {e:.2f}" for b, e in report.quality.psd_rel_error()[t].items())
        lines.append(f"  {t:<5} PCC {summary['pcc'][t]:.3f}  NMSE {report.quality.nmse()[t]:.3f}  "
                     f"PSD rel. error: {bands}")
    dead = report.usage.dead_codes()
    for level, (u, p) in enumerate(zip(summary["codebook_usage"], summary["perplexity"], strict=True)):
        lines.append(f"  level {level}: usage {100 * u:.1f}% ({dead[level]} dead of {report.usage.counts.shape[1]}), "
                     f"perplexity {p:.1f}")
    if report.figures:
        lines.append(f"  figures: {', '.join(Path(f).name for f in report.figures)} in {Path(report.figures[0]).parent}")
    return "\n".join(lines)
