"""The realism report: how close generated signals are to real ones (MEG-GPT spec §7.2).

``realism_report(real, generated, sfreq)`` compares any number of generated sources (the
model's output, and baselines such as the 80-lag AR generator of :mod:`.ar_baseline`) with the
real recordings on the same channels:

- Welch power spectra, 1-45 Hz: relative error of band power per band (delta..gamma) and over
  every bin (:mod:`.spectra`);
- bursts: lifetime, interval and occupancy of the beta-band amplitude-envelope HMM (:mod:`.bursts`),
  per source and as relative error against real;
- fingerprinting: top-1/top-5 identification of each generated recording's real counterpart
  (:mod:`.fingerprint`), when a source has one recording per real recording, in the same order.

Signals are z-scored per recording and channel first (``normalize="zscore"``), because
MEG-GPT's input and output are in z-score units while stores hold SI units; pass
``normalize=None`` to compare raw amplitudes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from brainfm._check import check_option
from brainfm._logging import logger, verbose
from brainfm.downstream.generation.bursts import BurstStats, burst_statistics
from brainfm.downstream.generation.fingerprint import (
    FINGERPRINT_FEATURES,
    fingerprint_accuracy,
    fingerprint_features,
)
from brainfm.downstream.generation.spectra import BANDS, psd_relative_error, welch_psd

__all__ = ["load_signals", "realism_report", "write_realism_report"]

#: What the report accepts as signals: a store folder or opened store, one (C, T) array,
#: an (R, C, T) array or a list of (C, T) arrays.
SignalSource = Any

_BURST_STATS = ("lifetime_ms", "interval_ms", "occupancy")


def load_signals(
    source: SignalSource, name: str = "signals", *, max_seconds: float | None = None
) -> tuple[list[np.ndarray], float | None, list[str] | None, list[str]]:
    """Read recordings from a store or arrays.

    Parameters
    ----------
    source : str | pathlib.Path | brainfm.store.Store | numpy.ndarray | sequence of numpy.ndarray
        A store (every complete recording is read), a (C, T) or (R, C, T) array, or a list of
        (C, T) arrays.
    name : str
        What to call the source in error messages.
    max_seconds : float | None
        Keep only the first ``max_seconds`` of each store recording (None: all).

    Returns
    -------
    signals : list of numpy.ndarray
        (C, T) float64 arrays.
    sfreq : float | None
        The store's sampling rate (None for arrays).
    channel_names : list of str | None
        The store's channel names (None for arrays).
    ids : list of str
        Recording ids (``"0"``, ``"1"``, ... for arrays).
    """
    from brainfm.store import Store, open_store

    if isinstance(source, (str, Path)):
        source = open_store(source)
    if isinstance(source, Store):
        ids = list(source)
        if not ids:
            raise ValueError(f"the {name} store {source.path} holds no complete recording.")
        recordings = [source[i] for i in ids]
        rates = {r.sfreq for r in recordings}
        if len(rates) > 1:
            raise ValueError(
                f"the {name} store {source.path} mixes sampling rates {sorted(rates)}; resample it to one rate "
                "(brainfm preprocess with a resample step) before a realism report."
            )
        names = [list(r.channels["name"]) for r in recordings]
        if any(n != names[0] for n in names):
            odd = next(r.id for r, n in zip(recordings, names, strict=True) if n != names[0])
            raise ValueError(
                f"the {name} store {source.path} holds recordings with different channels "
                f"({recordings[0].id!r} vs {odd!r}); pick the same channels in every recording."
            )
        sfreq = rates.pop()
        stop = None if max_seconds is None else max(1, round(max_seconds * sfreq))
        signals = [np.asarray(r.signal[:, :stop], dtype=np.float64) for r in recordings]
        return signals, sfreq, names[0], ids
    if isinstance(source, np.ndarray):
        if source.ndim == 2:
            arrays = [source]
        elif source.ndim == 3:
            arrays = list(source)
        else:
            raise ValueError(f"{name} must be (C, T) or (R, C, T); got an array of shape {source.shape}.")
    else:
        arrays = [np.asarray(s) for s in source]
    if not arrays:
        raise ValueError(f"{name} holds no recording.")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape != (arrays[0].shape[0], a.shape[1]):
            raise ValueError(f"{name} recording {i} has shape {a.shape}; each must be ({arrays[0].shape[0]}, T).")
    return [np.asarray(a, dtype=np.float64) for a in arrays], None, None, [str(i) for i in range(len(arrays))]


def _zscore(signal: np.ndarray) -> np.ndarray:
    std = signal.std(axis=1, keepdims=True)
    return (signal - signal.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def _burst_summary(signals: list[np.ndarray], sfreq: float, band: tuple[float, float]) -> dict[str, Any]:
    # One HMM fit for every recording of equal length: the series are fitted together (one pass over time).
    per_recording: list[Any] = [None] * len(signals)
    lengths = sorted({s.shape[1] for s in signals})
    for length in lengths:
        members = [i for i, s in enumerate(signals) if s.shape[1] == length]
        stats = burst_statistics(np.concatenate([signals[i] for i in members]), sfreq, band=band)
        n_channels = signals[members[0]].shape[0]
        for j, i in enumerate(members):
            rows = slice(j * n_channels, (j + 1) * n_channels)
            per_recording[i] = BurstStats(**{f.name: getattr(stats, f.name)[rows] for f in fields(BurstStats)})
    summary: dict[str, Any] = {"band_hz": list(band), "per_channel": {}}
    for stat in _BURST_STATS:
        values = np.stack([getattr(b, stat) for b in per_recording])  # (R, C)
        with warnings.catch_warnings():  # a channel without bursts in any recording stays NaN
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            per_channel = np.nanmean(values, axis=0)  # (C,)
        finite = per_channel[np.isfinite(per_channel)]
        summary[stat] = float(finite.mean()) if finite.size else None
        summary["per_channel"][stat] = [_finite(v) for v in per_channel]
    summary["n_bursts"] = int(sum(int(b.n_bursts.sum()) for b in per_recording))
    return summary


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _burst_errors(real: dict[str, Any], generated: dict[str, Any]) -> dict[str, float | None]:
    errors: dict[str, float | None] = {}
    for stat in _BURST_STATS:
        r = np.array([np.nan if v is None else v for v in real["per_channel"][stat]])
        g = np.array([np.nan if v is None else v for v in generated["per_channel"][stat]])
        keep = np.isfinite(r) & np.isfinite(g) & (r > 0)
        errors[stat] = float(np.mean(np.abs(g[keep] - r[keep]) / r[keep])) if keep.any() else None
    return errors


@verbose
def realism_report(
    real: SignalSource,
    generated: SignalSource | Mapping[str, SignalSource],
    sfreq: float | None = None,
    *,
    baselines: Mapping[str, SignalSource] | None = None,
    bands: Mapping[str, tuple[float, float]] = BANDS,
    fmin: float = 1.0,
    fmax: float = 45.0,
    burst_band: tuple[float, float] = (13.0, 30.0),
    fingerprint: Sequence[str] = ("psd", "tde_cov"),
    top_k: Sequence[int] = (1, 5),
    normalize: Literal["zscore"] | None = "zscore",
    max_seconds: float | None = None,
    out_dir: str | Path | None = None,
    verbose: bool | str | int | None = None,
) -> dict[str, Any]:
    """Compare generated signals with real ones: spectra, bursts and fingerprints.

    Parameters
    ----------
    real : str | pathlib.Path | Store | numpy.ndarray | sequence of numpy.ndarray
        The real recordings (see :func:`load_signals`).
    generated : same as ``real`` | mapping of str to it
        The generated recordings, or several named sources (``{"meg-gpt": ..., "ar80": ...}``).
    sfreq : float | None
        Sampling rate, Hz; may be None when a store gives it (then it must agree).
    baselines : mapping of str to signals | None
        More named sources compared the same way (e.g. ``{"ar80": generate_ar(...)}``).
    bands : mapping of str to (float, float)
        Frequency bands of the PSD error, Hz.
    fmin, fmax : float
        Spectral range, Hz.
    burst_band : tuple of float
        Band of the burst HMM's amplitude envelope, Hz.
    fingerprint : sequence of str
        Fingerprint features (:data:`~brainfm.downstream.generation.fingerprint.FINGERPRINT_FEATURES`); empty: none.
    top_k : sequence of int
        Identification ranks reported.
    normalize : "zscore" | None
        Per recording and channel z-scoring before any comparison.
    max_seconds : float | None
        Read at most this many seconds of each store recording.
    out_dir : str | pathlib.Path | None
        When given, write ``realism.json`` and the figures ``psd.png`` and ``bursts.png`` there.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    report : dict
        JSON-ready: ``sfreq``, ``n_channels``, ``normalize``, ``sources`` (per source: recordings,
        seconds, burst statistics), ``spectra`` (frequencies and channel-mean PSD per source) and
        ``versus_real`` (per generated source: ``psd`` errors, ``bursts`` relative errors,
        ``fingerprint`` accuracies or the reason they were skipped); ``figures`` when written.
    """
    check_option("normalize", normalize, ("zscore", None))
    for kind in fingerprint:
        check_option("fingerprint", kind, FINGERPRINT_FEATURES)
    sources: dict[str, SignalSource] = {}
    if isinstance(generated, Mapping):
        sources.update(generated)
    else:
        sources["generated"] = generated
    for key, value in (baselines or {}).items():
        if key in sources or key == "real":
            raise ValueError(f"baseline name {key!r} is already used; give each source its own name.")
        sources[key] = value

    loaded: dict[str, list[np.ndarray]] = {}
    rates: dict[str, float] = {}
    channel_names: dict[str, list[str]] = {}
    for key, value in {"real": real, **sources}.items():
        signals, rate, names, _ = load_signals(value, key, max_seconds=max_seconds)
        loaded[key] = signals
        if rate is not None:
            rates[key] = rate
        if names is not None:
            channel_names[key] = names
    if sfreq is None:
        if not rates:
            raise ValueError("sfreq is needed when every source is an array (no store tells the sampling rate).")
        sfreq = next(iter(rates.values()))
    wrong = {key: rate for key, rate in rates.items() if not np.isclose(rate, sfreq)}
    if wrong:
        raise ValueError(f"sampling rates differ from sfreq={sfreq:g} Hz: {wrong}; resample to one rate first.")
    n_channels = loaded["real"][0].shape[0]
    for key, signals in loaded.items():
        if signals[0].shape[0] != n_channels:
            raise ValueError(
                f"{key} has {signals[0].shape[0]} channels but real has {n_channels}; compare the same channels."
            )
    if "real" in channel_names:
        for key, names in channel_names.items():
            if names != channel_names["real"]:
                differ = [f"{a}!={b}" for a, b in zip(channel_names["real"], names, strict=True) if a != b]
                raise ValueError(f"{key}'s channels differ from real's: {', '.join(differ[:5])}.")
    if normalize == "zscore":
        loaded = {key: [_zscore(s) for s in signals] for key, signals in loaded.items()}

    report: dict[str, Any] = {
        "sfreq": float(sfreq),
        "n_channels": int(n_channels),
        "channel_names": channel_names.get("real"),
        "normalize": normalize,
        "bands": {name: list(edges) for name, edges in bands.items()},
        "sources": {},
        "spectra": {},
        "versus_real": {},
    }
    spectra: dict[str, np.ndarray] = {}
    freqs = np.array([])
    for key, signals in loaded.items():
        logger.info("realism: spectra and bursts of %s (%d recordings)", key, len(signals))
        freqs, psd = welch_psd(signals, sfreq, fmin=fmin, fmax=fmax)
        spectra[key] = psd.mean(axis=0)  # (C, F), mean over recordings
        report["sources"][key] = {
            "n_recordings": len(signals),
            "seconds": float(sum(s.shape[1] for s in signals) / sfreq),
            "bursts": _burst_summary(signals, sfreq, burst_band),
        }
    report["spectra"] = {"freqs_hz": freqs.tolist(), **{k: v.mean(axis=0).tolist() for k, v in spectra.items()}}
    real_features = {kind: fingerprint_features(loaded["real"], sfreq, kind, fmin=fmin, fmax=fmax) for kind in fingerprint}
    for key in sources:
        comparison: dict[str, Any] = {
            "psd": psd_relative_error(freqs, spectra["real"], spectra[key], bands),
            "bursts": _burst_errors(report["sources"]["real"]["bursts"], report["sources"][key]["bursts"]),
        }
        if not fingerprint:
            comparison["fingerprint"] = None
        elif len(loaded[key]) != len(loaded["real"]) or len(loaded["real"]) < 2:
            comparison["fingerprint"] = {
                "skipped": f"needs one {key} recording per real recording, in the same order, and at least two "
                f"(got {len(loaded[key])} {key} and {len(loaded['real'])} real)"
            }
        else:
            comparison["fingerprint"] = {
                kind: fingerprint_accuracy(
                    real_features[kind], fingerprint_features(loaded[key], sfreq, kind, fmin=fmin, fmax=fmax), top_k
                )
                for kind in fingerprint
            }
        report["versus_real"][key] = comparison
    if out_dir is not None:
        write_realism_report(report, out_dir)
    return report


def write_realism_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, str]:
    """Write ``realism.json`` and the figures ``psd.png`` and ``bursts.png``.

    Parameters
    ----------
    report : dict
        From :func:`realism_report`.
    out_dir : str | pathlib.Path
        Folder (created when missing).

    Returns
    -------
    files : dict of str to str
        ``{"json": path, "psd": path, "bursts": path}``; also stored in ``report["figures"]``.
    """
    from brainfm.downstream.generation.realism_figures import plot_bursts, plot_psd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": str(out_dir / "realism.json"),
        "psd": str(plot_psd(report, out_dir / "psd.png")),
        "bursts": str(plot_bursts(report, out_dir / "bursts.png")),
    }
    report["figures"] = files
    (out_dir / "realism.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    return files
