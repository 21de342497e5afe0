"""Over which span should a BrainTokenizer window be scaled for BrainOmni's stage 2? Measured on a store.

BrainOmni's ``sensortype`` normalisation (spec ``brainomni.md`` §3.2 step 9) scales a segment as a
whole, per sensor type. The tokenizer is trained on 10-s segments (``--recipe braintokenizer``,
as the reference), stage 2 reads 30.5-s windows, and ``brainfm tokenize`` without ``--window-s``
scales each 2-s tokenizer window on its own. This script reports:

1. the pooled standard deviation of each 512-sample tokenizer window (stride 384, EEG) when the
   signal is scaled over its 2-s window, its 10-s training segment and its 30.5-s stage-2
   window, and, for the windows at the same sample in all three, how far the 2-s and 30.5-s
   scales are from the 10-s one (``|log2|`` of the ratio);
2. with ``--tokenizer``: ``brainfm tokenize`` of a copy of the store with one tokenizer window per
   segment (the default) and with ``--window-s 30.5 --stride-s 30`` (wall time of each), and
   how many codes of every 30.5-s loader window each one gives exactly as the frozen tokenizer
   on the fly.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/brainomni_norm_span.py STORE [--tokenizer CKPT] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainfm.loading import WindowDataModule

WINDOW, STRIDE = 512, 384
SPANS = {"2 s (tokenizer window)": (2.0, 1.5), "10 s (tokenizer training)": (10.0, 10.0),
         "30.5 s (stage 2)": (30.5, 30.0)}


def _data(store: str | Path, window_s: float, stride_s: float, codes: str | None = None) -> WindowDataModule:
    return WindowDataModule(store, window_s=window_s, stride_s=stride_s, batch_size=8, normalization="sensortype",
                            channel_batching="bucket", channel_types=["eeg"], split_unit="recording",
                            val_fraction=0.0, codes=codes)


def window_scales(store: str, window_s: float, stride_s: float) -> dict[tuple[str, int], float]:
    """Pooled EEG standard deviation of every tokenizer window, keyed by (recording, first sample)."""
    data = _data(store, window_s, stride_s)
    scales: dict[tuple[str, int], float] = {}
    names = data.recording_names
    for batch in data.make_dataloader("train", shuffle=False):
        windows = batch.signal.unfold(-1, WINDOW, STRIDE)  # (B, C, N, 512)
        for row in range(len(batch)):
            good = batch.channel_mask[row]
            std = windows[row, good].double().std(dim=(0, 2), unbiased=False)  # (N,)
            rid, start = names[int(batch.recording_ids[row])], int(batch.start[row])
            for j, value in enumerate(std.tolist()):
                scales[(rid, start + j * STRIDE)] = value
    return scales


def scale_report(store: str) -> dict[str, Any]:
    """Part 1: quantiles of the per-window scale under each span and the distance from the training span."""
    scales = {name: window_scales(store, *span) for name, span in SPANS.items()}
    quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
    report: dict[str, Any] = {"windows": {}, "quantiles": list(quantiles), "std": {}, "vs_training": {}}
    for name, values in scales.items():
        array = np.array(list(values.values()))
        report["windows"][name] = len(array)
        report["std"][name] = [round(float(q), 3) for q in np.quantile(array, quantiles)]
    training = scales["10 s (tokenizer training)"]
    common = set.intersection(*(set(v) for v in scales.values()))
    report["common_windows"] = len(common)
    for name, values in scales.items():
        if name.startswith("10 s"):
            continue
        ratio = np.abs(np.log2(np.array([values[k] / training[k] for k in sorted(common)])))
        report["vs_training"][name] = {"median_abs_log2": round(float(np.median(ratio)), 3),
                                       "p95_abs_log2": round(float(np.quantile(ratio, 0.95)), 3),
                                       "within_10_percent": round(float(np.mean(ratio < np.log2(1.1))), 3)}
    return report


def codes_report(store: str, tokenizer_path: str) -> dict[str, Any]:
    """Part 2: tokenize with and without segments; agreement with the frozen tokenizer on 30.5-s windows."""
    import zarr

    from brainfm.checkpoint import FrozenTokenizer
    from brainfm.pretrain.tokenize import tokenize_store

    tokenizer = FrozenTokenizer(checkpoint=tokenizer_path)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store, copy)
        for name, segments in (("one_window", {}), ("segments_30.5", {"window_s": 30.5, "stride_s": 30.0})):
            started = time.perf_counter()
            summary = tokenize_store(tokenizer_path, copy, name=name, overlap=0.25, normalization="sensortype",
                                     **segments)
            seconds = time.perf_counter() - started
            # read the stored codes for the 30.5-s windows without the loader's segment check (the
            # one-window codes are refused for such windows): one tokenizer window's codes each
            fresh_data = _data(copy, 30.5, 30.0)
            equal = total = n_windows = 0
            per_level = np.zeros(tokenizer.n_levels)
            root = zarr.open_group(str(copy), mode="r")
            for batch in fresh_data.make_dataloader("train", shuffle=False):
                with torch.inference_mode():
                    _, fresh = tokenizer.tokenize(batch, overlap=0.25)  # (B, C', W, levels)
                for row in range(len(batch)):
                    rid = fresh_data.recording_names[int(batch.recording_ids[row])]
                    first = int(batch.start[row]) // STRIDE * tokenizer.steps
                    stored = root[f"recordings/{rid}/codes/{name}"][:, first : first + fresh.shape[2], :]
                    same = torch.from_numpy(stored.astype(np.int64)) == fresh[row]
                    equal += int(same.sum())
                    total += same.numel()
                    per_level += same.float().mean(dim=(0, 1)).numpy()
                    n_windows += 1
            report[name] = {"seconds": round(seconds, 1), "written": len(summary.written),
                            "failed": len(summary.failed), "loader_windows": n_windows,
                            "codes_equal": round(equal / total, 4),
                            "codes_equal_per_level": [round(float(v), 4) for v in per_level / n_windows]}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--tokenizer", default=None, help="a BrainTokenizer checkpoint (part 2)")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, Any] = {"scales": scale_report(args.store)}
    print(json.dumps(report["scales"], indent=1))
    if args.tokenizer:
        report["codes"] = codes_report(args.store, args.tokenizer)
        print(json.dumps(report["codes"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
