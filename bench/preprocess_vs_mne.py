"""Benchmark: `brainfm preprocess` against a plain MNE script doing the same work, same run.

Both sides read the same EDF files, keep the same channels, remove line noise (50 and
100 Hz), high-pass at 0.1 Hz, resample to 256 Hz and average-reference the EEG; the plain
script saves FIF files (MNE's ``Raw.save``), brainfm writes its Zarr store. Each run is a
fresh subprocess; wall time and peak memory (resident set size of the whole process tree,
sampled every 20 ms) are measured, repeats are interleaved and the median is reported.

Usage::

    python bench/preprocess_vs_mne.py [--data ../shared/data/eeg/eegmat] [--repeats 3]
        [--long] [--out bench/results]

``--large`` repeats the comparison on 8 synthetic 10-minute, 64-channel, 512 Hz EDF files
(realistic recording sizes, where fixed per-process costs weigh less). ``--long`` adds the
long-recording check: a synthetic 2-hour, 64-channel, 512 Hz FIF file preprocessed with
the default recipe, peak memory against its float32 size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent

PLAIN_SCRIPT = textwrap.dedent(
    """
    import sys, pathlib, mne, numpy as np
    mne.set_log_level("ERROR")
    src, out, order = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.edf")):
        raw = mne.io.read_raw_edf(path, preload=True)
        raw.pick("eeg")
        if order == "resample-first":
            raw.resample(256.0, method="polyphase")
            raw.notch_filter([50.0, 100.0])
            raw.filter(0.1, None)
        else:
            raw.notch_filter([50.0, 100.0])
            raw.filter(0.1, None)
            raw.resample(256.0)
        raw.set_eeg_reference("average", projection=False)
        raw.save(out / (path.stem + "_raw.fif"), overwrite=True)
    """
)

RECIPE_RESAMPLE_FIRST = """
name: bench_resample_first
pick: {types: [eeg, ecg]}
steps:
  - resample: {sfreq: 256, method: polyphase}
  - notch: {freqs: [50.0, 100.0]}
  - bandpass: {l_freq: 0.1, h_freq: null}
  - reference: {eeg: average}
"""

RECIPE_MNE_ORDER = """
name: bench_mne_order
pick: {types: [eeg, ecg]}
steps:
  - notch: {freqs: [50.0, 100.0]}
  - bandpass: {l_freq: 0.1, h_freq: null}
  - resample: {sfreq: 256, method: fft}
  - reference: {eeg: average}
"""


def measure(command: list[str], cwd: Path | None = None) -> dict[str, float]:
    """Run a command; return wall seconds and the peak RSS (MiB) of its process tree."""
    started = time.perf_counter()
    # never from the checkout's root, where "python -m brainfm..." would import its unmapped brainfm/
    process = subprocess.Popen(command, cwd=cwd or tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    handle = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [handle, *handle.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - started
    _, stderr = process.communicate()
    if process.returncode not in (0,):
        raise RuntimeError(f"{command} failed ({process.returncode}):\n{stderr[-3000:]}")
    return {"seconds": wall, "peak_mib": peak / 2**20}


def brainfm_command(data: Path, store: Path, recipe: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "brainfm.cli.main", "preprocess", str(data), str(store),
            "--config", str(recipe), "--jobs", str(jobs), "--quiet", "--dataset", "bench"]


def run_comparison(data: Path, repeats: int, work: Path) -> dict:
    plain = work / "plain.py"
    plain.write_text(PLAIN_SCRIPT)
    recipes = {"resample-first": work / "rf.yaml", "mne-order": work / "mo.yaml"}
    recipes["resample-first"].write_text(RECIPE_RESAMPLE_FIRST)
    recipes["mne-order"].write_text(RECIPE_MNE_ORDER)
    n_files = len(list(data.glob("*.edf")))
    runs: dict[str, list[dict[str, float]]] = {}
    cases = {
        "mne script (notch, filter, resample fft; save FIF)": lambda o: [sys.executable, str(plain), str(data), str(o), "mne-order"],
        "mne script (resample polyphase first; save FIF)": lambda o: [sys.executable, str(plain), str(data), str(o), "resample-first"],
        "brainfm --jobs 1 (MNE order, fft)": lambda o: brainfm_command(data, o, recipes["mne-order"], 1),
        "brainfm --jobs 1 (resample first, polyphase)": lambda o: brainfm_command(data, o, recipes["resample-first"], 1),
        "brainfm --jobs 2 (resample first, polyphase)": lambda o: brainfm_command(data, o, recipes["resample-first"], 2),
    }
    for repeat in range(repeats):
        for name, make in cases.items():
            out = work / f"out{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            runs.setdefault(name, []).append(measure(make(out)))
            shutil.rmtree(out, ignore_errors=True)
            print(f"repeat {repeat + 1}/{repeats}: {name}: {runs[name][-1]['seconds']:.2f} s, {runs[name][-1]['peak_mib']:.0f} MiB", flush=True)
    medians = {
        name: {"seconds": statistics.median(r["seconds"] for r in values), "peak_mib": statistics.median(r["peak_mib"] for r in values)}
        for name, values in runs.items()
    }
    return {"n_files": n_files, "repeats": repeats, "median": medians, "runs": runs}


def make_large(work: Path, n_files: int = 8, minutes: float = 10.0) -> Path:
    """Synthetic 64-channel 512 Hz EEG with 50 Hz line noise, written as EDF."""
    import mne
    import numpy as np

    folder = work / "large"
    folder.mkdir(exist_ok=True)
    sfreq, n_channels = 512.0, 64
    names = mne.channels.make_standard_montage("biosemi64").ch_names
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * sfreq)
    t = np.arange(n) / sfreq
    for index in range(n_files):
        data = np.cumsum(rng.standard_normal((n_channels, n)), axis=1) * 2e-7
        data -= data.mean(axis=1, keepdims=True)
        data += 5e-6 * np.sin(2 * np.pi * 50 * t) + rng.standard_normal((n_channels, n)) * 2e-6
        raw = mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose=False)
        mne.export.export_raw(folder / f"rec{index:02d}.edf", raw, overwrite=True, verbose=False)
    return folder


def run_long(work: Path) -> dict:
    import mne
    import numpy as np

    folder = work / "long"
    folder.mkdir(exist_ok=True)
    sfreq, n_channels, seconds = 512.0, 64, 7200
    path = folder / "long_raw.fif"
    if not path.exists():
        # written in pieces so that the generator itself stays small
        info = mne.create_info([f"EEG{i:03d}" for i in range(n_channels)], sfreq, "eeg")
        rng = np.random.default_rng(0)
        pieces = []
        for _ in range(12):
            block = rng.standard_normal((n_channels, int(sfreq * seconds / 12)), dtype=np.float32)
            block = np.cumsum(block, axis=1, dtype=np.float32) * np.float32(1e-7)
            block -= block.mean(axis=1, keepdims=True)
            pieces.append(mne.io.RawArray(block, info, verbose=False))
        raw = mne.concatenate_raws(pieces, verbose=False)
        raw.set_annotations(None)
        raw.save(path, fmt="single", verbose=False, overwrite=True)
        del raw, pieces
    float32_mib = n_channels * sfreq * seconds * 4 / 2**20
    store = work / "long_store.zarr"
    shutil.rmtree(store, ignore_errors=True)
    recipe = work / "long.yaml"
    recipe.write_text("extends: default\nname: long\n")
    result = measure(brainfm_command(folder, store, recipe, 1))
    shutil.rmtree(store, ignore_errors=True)
    return {"float32_mib": float32_mib, **result, "ratio_to_float32": result["peak_mib"] / float32_mib}


REF = "mne script (notch, filter, resample fft; save FIF)"
REF_POLY = "mne script (resample polyphase first; save FIF)"
ONE = "brainfm --jobs 1 (resample first, polyphase)"
TWO = "brainfm --jobs 2 (resample first, polyphase)"


def _ratio(runs: dict, a: str, b: str, field: str = "seconds") -> str:
    """Median and range over repeats of a/b, each ratio taken within one repeat."""
    values = sorted(x[field] / y[field] for x, y in zip(runs[a], runs[b], strict=True))
    return f"{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})"


def report(comparison: dict) -> str:
    """The comparison table: median seconds and peak memory, ratios taken within each repeat."""
    runs, med = comparison["runs"], comparison["median"]
    lines = [
        f"{comparison['n_files']} recordings, {comparison['repeats']} interleaved repeats "
        "(ratios within each repeat: median (range))",
        f"{'case':<52} {'seconds':>8} {'peak MiB':>9} {'time / mne script':>20} {'memory / mne script':>20}",
    ]
    for name in runs:
        lines.append(
            f"{name:<52} {med[name]['seconds']:>8.2f} {med[name]['peak_mib']:>9.0f} "
            f"{_ratio(runs, name, REF):>20} {_ratio(runs, name, REF, 'peak_mib'):>20}"
        )
    lines.append(f"brainfm --jobs 1 / mne script resampling first with polyphase: {_ratio(runs, ONE, REF_POLY)}")
    lines.append(f"brainfm --jobs 1 / --jobs 2 (speed-up): {_ratio(runs, ONE, TWO)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "eeg" / "eegmat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--long", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {"comparison": run_comparison(args.data, args.repeats, work)}
        if args.large:
            large = make_large(work)
            result["large"] = run_comparison(large, args.repeats, work)
        if args.long:
            result["long"] = run_long(work)
    for key in ("comparison", "large"):
        if key in result:
            print(report(result[key]))
    if "long" in result:
        long = result["long"]
        print(f"long recording (2 h, 64 ch, 512 Hz; float32 {long['float32_mib']:.0f} MiB): peak {long['peak_mib']:.0f} MiB "
              f"= {long['ratio_to_float32']:.2f}x its float32 size, {long['seconds']:.1f} s")
    (args.out / "preprocess_vs_mne.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
