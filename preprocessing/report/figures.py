"""The figures of a recording's detailed section: PSD per channel type, sensor layout, events.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so building a
report never touches the user's backend or keeps figures alive in pyplot's registry. The
power spectrum reads only a few evenly spaced chunks of the stored signal
(:func:`sample_psd`), never the whole recording.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brainfm.data.windows import bad_spans
from brainfm.store.reader import StoredRecording

__all__ = ["events_figure", "layout_figure", "psd_figure", "sample_psd"]

#: Display scale per SI unit: (factor, label) so that PSDs read in familiar units.
_PSD_UNITS: dict[str, tuple[float, str]] = {
    "V": (1e6, "µV²/Hz"),
    "T": (1e15, "fT²/Hz"),
    "T/m": (1e13, "(fT/cm)²/Hz"),
}
_TYPE_COLOURS = {
    "eeg": "#1f77b4", "mag": "#2ca02c", "grad": "#17becf", "seeg": "#9467bd", "ecog": "#8c564b",
    "dbs": "#e377c2", "eog": "#7f7f7f", "ecg": "#bcbd22", "emg": "#ff7f0e", "misc": "#aaaaaa",
}
_BAD = "#d62728"


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90)


def _margins(fig: Any, left: float, right: float, bottom: float, top: float, **space: float) -> None:
    """Fixed margins in inches (a layout engine would draw every figure once more)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height, **space)


def sample_psd(
    recording: StoredRecording, *, max_chunks: int = 6, max_seconds: float = 120.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Welch power spectral density of every channel from a few evenly spaced signal chunks.

    Parameters
    ----------
    recording : StoredRecording
        The recording.
    max_chunks : int
        Read at most this many of the signal's stored chunks (each about 2 MiB).
    max_seconds : float
        And at most about this much signal.

    Returns
    -------
    freqs : numpy.ndarray, shape (n_freqs,)
        Frequencies in Hz (0.5 Hz apart for chunks of 2 s or more).
    psd : numpy.ndarray, shape (n_channels, n_freqs)
        Power per Hz in the squared SI unit of each channel, averaged over the chunks read.
    seconds : float
        Signal length the estimate is based on.
    """
    from scipy.signal import welch

    signal = recording.signal
    n_times, sfreq = recording.n_times, recording.sfreq
    chunk = int(signal.chunks[1]) if n_times else 1
    n_chunks = max(1, -(-n_times // chunk))
    wanted = max(1, min(max_chunks, n_chunks, int(np.ceil(max_seconds * sfreq / chunk))))
    picks = np.unique(np.linspace(0, n_chunks - 1, wanted).round().astype(int))
    nperseg = max(8, min(int(round(2 * sfreq)), chunk, n_times))
    total, weight, used = None, 0, 0
    for index in picks:
        block = np.asarray(signal[:, index * chunk : (index + 1) * chunk], dtype=np.float64)
        if block.shape[1] < nperseg:  # a short last chunk: too short for this resolution
            if len(picks) > 1:
                continue
            nperseg = block.shape[1]
        freqs, power = welch(block, fs=sfreq, nperseg=nperseg, axis=-1)
        segments = 1 + (block.shape[1] - nperseg) // (nperseg // 2)
        total = power * segments if total is None else total + power * segments
        weight += segments
        used += block.shape[1]
    assert total is not None
    return freqs, total / weight, used / sfreq


def psd_figure(recording: StoredRecording, freqs: np.ndarray, psd: np.ndarray, seconds: float) -> Any:
    """Power spectra, one panel per channel type, log scale, line-noise frequencies marked.

    Good channels are thin grey lines with their median in the type's colour; bad channels
    are red.

    Parameters
    ----------
    recording : StoredRecording
        The recording (channel table, line frequency).
    freqs, psd, seconds
        As returned by :func:`sample_psd`.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    channels = recording.channels
    types = [t for t in dict.fromkeys(channels["type"])]
    ncols = min(3, len(types))
    nrows = -(-len(types) // ncols)
    fig = _figure(4.2 * ncols, 2.9 * nrows + 0.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    _margins(fig, 0.75, 0.15, 0.45, 0.55, wspace=0.4 / 4.2 * 3, hspace=0.8 / 2.9 * 2)
    line = recording.attrs.get("line_freq")
    nyquist = recording.sfreq / 2
    keep = freqs > 0
    for ax, kind in zip(axes, types, strict=False):
        rows = (channels["type"] == kind).to_numpy()
        unit = str(channels.loc[rows, "unit"].iloc[0])
        factor, label = _PSD_UNITS.get(unit, (1.0, f"{unit}²/Hz"))
        power = psd[rows][:, keep] * factor**2
        bad = (channels.loc[rows, "status"] == "bad").to_numpy()
        floor = np.finfo(np.float64).tiny
        if (~bad).any():
            ax.semilogy(freqs[keep], np.maximum(power[~bad].T, floor), color="0.6", lw=0.4, alpha=0.5)
            ax.semilogy(freqs[keep], np.maximum(np.median(power[~bad], axis=0), floor), color=_TYPE_COLOURS.get(kind, "k"), lw=1.6, label="median of good")
        if bad.any():
            ax.semilogy(freqs[keep], np.maximum(power[bad].T, floor), color=_BAD, lw=0.8, alpha=0.8)
            ax.plot([], [], color=_BAD, lw=0.8, label=f"bad ({int(bad.sum())})")
        if line:
            for k, harmonic in enumerate(np.arange(float(line), nyquist, float(line))):
                ax.axvline(harmonic, color="#ff7f0e", ls="--", lw=0.9, label=f"line {float(line):g} Hz" if k == 0 else None)
        ax.set_xlim(0, nyquist)
        ax.set_title(f"{kind} ({int(rows.sum())} channels)", fontsize=10)
        ax.set_xlabel("frequency (Hz)", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
        ax.legend(fontsize=7, loc="upper right", frameon=False)
    for ax in axes[len(types):]:
        ax.set_visible(False)
    fig.suptitle(
        f"Welch PSD from {seconds:.0f} s of signal"
        + ("" if line else " (power-line frequency unknown: not marked)"), fontsize=9
    )
    return fig


def layout_figure(recording: StoredRecording) -> Any | None:
    """Sensor positions seen from above (x: left-right, y: back-front), one panel per frame.

    Bad channels are red crosses with their names; channel types have their own colours.

    Parameters
    ----------
    recording : StoredRecording
        The recording.

    Returns
    -------
    fig : matplotlib.figure.Figure | None
        None when no channel has a position.
    """
    channels = recording.channels
    placed = channels[np.isfinite(channels[["x", "y", "z"]].to_numpy(dtype=float)).all(axis=1)]
    if placed.empty:
        return None
    frames = list(dict.fromkeys(placed["frame"].replace("", "unknown")))
    fig = _figure(4.6 * len(frames), 3.9)
    axes = np.atleast_1d(fig.subplots(1, len(frames), squeeze=False)).ravel()
    _margins(fig, 0.6, 1.1, 0.5, 0.35, wspace=1.7 / 3.0)
    for ax, frame in zip(axes, frames, strict=True):
        here = placed[placed["frame"].replace("", "unknown") == frame]
        for kind, rows in here.groupby("type", sort=False):
            good = rows[rows["status"] != "bad"]
            ax.scatter(good["x"] * 1e3, good["y"] * 1e3, s=14, color=_TYPE_COLOURS.get(str(kind), "k"),
                       label=f"{kind} ({len(rows)})", edgecolors="none")
        bad = here[here["status"] == "bad"]
        if len(bad):
            ax.scatter(bad["x"] * 1e3, bad["y"] * 1e3, s=40, marker="X", color=_BAD, label=f"bad ({len(bad)})")
            for row in bad.head(30).itertuples():
                ax.annotate(str(row.name), (row.x * 1e3, row.y * 1e3), fontsize=6, color=_BAD,
                            xytext=(3, 3), textcoords="offset points")
        sources = ", ".join(f"{s} {n}" for s, n in here["pos_source"].value_counts().items())
        ax.set_title(f"frame: {frame} ({sources})", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x (mm)", fontsize=8)
        ax.set_ylabel("y (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def events_figure(recording: StoredRecording, max_rows: int = 25) -> Any | None:
    """Events over time, one row per description (with its count), bad spans shaded red.

    Parameters
    ----------
    recording : StoredRecording
        The recording.
    max_rows : int
        Show the most frequent descriptions only, when there are more.

    Returns
    -------
    fig : matplotlib.figure.Figure | None
        None when the recording has no events.
    """
    if not recording.attrs.get("event_descriptions"):
        return None
    events = recording.events
    if events.empty:
        return None
    counts = events["description"].astype(str).value_counts()
    shown = list(counts.index[:max_rows])
    fig = _figure(10.0, 1.0 + 0.28 * len(shown))
    ax = fig.subplots()
    _margins(fig, 1.9, 0.2, 0.45, 0.3)
    sfreq = recording.sfreq
    for start, stop in bad_spans(events["onset_s"], events["duration_s"], events["description"], sfreq):
        ax.axvspan(start / sfreq, stop / sfreq, color=_BAD, alpha=0.18, lw=0)
    for y, description in enumerate(shown):
        rows = events[events["description"].astype(str) == description]
        colour = _BAD if description.upper().startswith("BAD") else "#1f77b4"
        long = rows[rows["duration_s"] > 0]
        if len(long):
            ax.broken_barh(list(zip(long["onset_s"], long["duration_s"], strict=True)), (y - 0.3, 0.6), color=colour, alpha=0.5)
        ax.plot(rows["onset_s"], np.full(len(rows), y), "|", color=colour, ms=9, mew=1.2)
    ax.set_yticks(range(len(shown)), [f"{d[:28]} ({counts[d]})" for d in shown], fontsize=7)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(0, recording.duration_s)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(True, axis="x", lw=0.3, alpha=0.5)
    hidden = len(counts) - len(shown)
    title = f"{len(events)} events, {len(counts)} descriptions" + (f" ({hidden} rare ones not shown)" if hidden else "")
    ax.set_title(title, fontsize=9)
    return fig
