"""The PNG figures of ``brainfm tokenizer report --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainfm.loading.batch import Batch

__all__ = ["write_figures"]


def write_figures(folder: Path, report: Any, example: tuple[torch.Tensor, ...], batch: Batch,
                  n_channels: int = 4) -> list[str]:
    """Write ``reconstruction.png``, ``psd.png`` and ``code_usage.png``.

    Parameters
    ----------
    folder : pathlib.Path
        Where to write.
    report : TokenizerReport
        The metrics.
    example : tuple
        ``(target, reconstruction, mask, codes)`` of the first batch.
    batch : Batch
        That batch.
    n_channels : int
        Channels shown in the reconstruction figure.

    Returns
    -------
    paths : list of str
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    target, reconstruction, mask, _ = example
    sfreq = float(report.settings["sfreq"])
    rows = torch.nonzero(mask[0]).flatten()[:n_channels].tolist()
    fig, axes = plt.subplots(max(len(rows), 1), 1, figsize=(9, 1.6 * max(len(rows), 1) + 0.6), sharex=True,
                             squeeze=False)
    time_s = (int(batch.start[0]) + np.arange(target.shape[-1])) / sfreq
    for ax, row in zip(axes[:, 0], rows, strict=False):
        ax.plot(time_s, target[0, row].numpy(), lw=0.8, label="signal")
        ax.plot(time_s, reconstruction[0, row].numpy(), lw=0.8, label="reconstruction")
        ax.set_ylabel(f"ch {row}", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time in recording (s)")
    fig.suptitle(f"{report.recordings[0] if report.recordings else ''}: signal vs reconstruction", fontsize=9)
    fig.tight_layout()
    paths.append(_save(fig, folder / "reconstruction.png"))

    spectra = report.quality.mean_psd()
    freqs = report.quality.frequencies().numpy()
    fig, axes = plt.subplots(1, max(len(spectra), 1), figsize=(4.5 * max(len(spectra), 1), 3.4), squeeze=False)
    for ax, (kind, (psd, psd_hat)) in zip(axes[0], spectra.items(), strict=False):
        keep = freqs > 0
        ax.semilogy(freqs[keep], psd.numpy()[keep], label="signal")
        ax.semilogy(freqs[keep], psd_hat.numpy()[keep], label="reconstruction")
        ax.set_title(f"{kind}: PCC {report.quality.pcc()[kind]:.3f}", fontsize=9)
        ax.set_xlabel("frequency (Hz)")
    axes[0, 0].set_ylabel("mean power")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, folder / "psd.png"))

    counts = report.usage.counts.numpy()
    fig, axes = plt.subplots(1, counts.shape[0], figsize=(3.2 * counts.shape[0], 2.8), squeeze=False, sharey=True)
    usage, perplexity = report.usage.usage(), report.usage.perplexity()
    for level, ax in enumerate(axes[0]):
        ax.bar(np.arange(counts.shape[1]), np.sort(counts[level])[::-1], width=1.0)
        ax.set_yscale("symlog")
        ax.set_title(f"level {level}: {100 * usage[level]:.0f}% used, ppl {perplexity[level]:.0f}", fontsize=9)
        ax.set_xlabel("codes (by count)")
    axes[0, 0].set_ylabel("occurrences")
    fig.tight_layout()
    paths.append(_save(fig, folder / "code_usage.png"))
    return paths


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
