"""PNG figures of a realism report: PSD overlay and burst statistic bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_bursts", "plot_psd"]

_LABELS = {"lifetime_ms": "burst lifetime (ms)", "interval_ms": "burst interval (ms)", "occupancy": "fractional occupancy"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_psd(report: dict[str, Any], path: str | Path) -> Path:
    """Channel-mean Welch PSD of every source on log axes, real in black, bands shaded.

    Parameters
    ----------
    report : dict
        From :func:`~brainfm.downstream.generation.realism.realism_report`.
    path : str | pathlib.Path
        PNG file to write.

    Returns
    -------
    path : pathlib.Path
        The file written.
    """
    plt = _pyplot()
    spectra = report["spectra"]
    freqs = np.asarray(spectra["freqs_hz"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, (low, high)) in enumerate(report["bands"].items()):
        ax.axvspan(low, high, color="0.93" if i % 2 else "0.86", lw=0)
        ax.text(np.sqrt(low * high), 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=8)
    for j, name in enumerate(report["sources"]):
        style = {"color": "k", "lw": 2.0} if name == "real" else {"color": f"C{j % 10}", "lw": 1.3}
        label = name
        if name in report["versus_real"]:
            label += f" (broadband error {report['versus_real'][name]['psd']['broadband']:.2f})"
        ax.plot(freqs, spectra[name], label=label, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("frequency (Hz)")
    unit = "z-score² / Hz" if report.get("normalize") == "zscore" else "unit² / Hz"
    ax.set_ylabel(f"PSD, mean over channels ({unit})")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Welch power spectra: real and generated")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bursts(report: dict[str, Any], path: str | Path) -> Path:
    """Bars of burst lifetime, interval and occupancy per source (mean over channels, channel s.d. as error bar).

    Parameters
    ----------
    report : dict
        From :func:`~brainfm.downstream.generation.realism.realism_report`.
    path : str | pathlib.Path
        PNG file to write.

    Returns
    -------
    path : pathlib.Path
        The file written.
    """
    plt = _pyplot()
    names = list(report["sources"])
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, stat in zip(axes, _LABELS, strict=True):
        means, spreads = [], []
        for name in names:
            values = np.array([np.nan if v is None else v for v in report["sources"][name]["bursts"]["per_channel"][stat]])
            values = values[np.isfinite(values)]
            means.append(values.mean() if values.size else 0.0)
            spreads.append(values.std() if values.size else 0.0)
        colors = ["k" if n == "real" else f"C{j % 10}" for j, n in enumerate(names)]
        ax.bar(range(len(names)), means, yerr=spreads, color=colors, alpha=0.8, capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(_LABELS[stat], fontsize=9)
    low, high = report["sources"]["real"]["bursts"]["band_hz"]
    fig.suptitle(f"Bursts: 2-state HMM on the {low:g}-{high:g} Hz amplitude envelope")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
