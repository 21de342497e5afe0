"""Benchmark: ``brainfm report`` on a 400-recording store, against references in the same run.

The script writes a synthetic store with brainfm's store writer (by default 400 EEG
recordings: 19 channels with 10-20 positions, 60 s at 256 Hz, 50 Hz line noise, events, a
bad span and a bad channel in some, warnings in some), then times, each as a fresh process:

- ``brainfm store info STORE --json``: reads the same metadata as the report's summary
  (the floor for a summary of every recording);
- ``brainfm report STORE --max-recordings 0``: the summary, failures, warnings and the
  per-recording statistics table of every recording, no detailed section;
- ``brainfm report STORE`` (default ``--max-recordings``): the same plus the detailed
  sections;
- an MNE script making the same detailed sections the MNE way: for each of the same
  recordings ``StoredRecording.to_raw()`` then ``mne.Report.add_raw(raw, psd=True)``,
  then ``Report.save``.

Repeats are interleaved; the median is reported with ratios taken within each repeat.

Usage::

    python bench/report_speed.py [--recordings 400] [--repeats 1] [--detailed 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

MNE_SCRIPT = textwrap.dedent(
    """
    import sys, mne
    from brainfm.store.reader import open_store
    from brainfm.preprocessing.report.facts import choose_detailed
    mne.set_log_level("ERROR")
    store = open_store(sys.argv[1])
    report = mne.Report(title="mne add_raw", image_format="png")
    for rid in choose_detailed(store, None, int(sys.argv[3])):
        raw = store[rid].to_raw()
        report.add_raw(raw, title=rid, psd=True, butterfly=False)
    report.save(sys.argv[2], open_browser=False, overwrite=True)
    """
)

TEN_TWENTY = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8",
              "P7", "P3", "Pz", "P4", "P8", "O1", "O2"]


def build_store(path: Path, n_recordings: int, seconds: float, sfreq: float) -> None:
    """Write ``n_recordings`` synthetic EEG recordings with the store writer."""
    import mne
    import numpy as np
    import pandas as pd

    from brainfm.data.channels import empty_channel_table
    from brainfm.data.recording import Identity, Recording
    from brainfm.store.writer import StoreWriter

    montage = mne.channels.make_standard_montage("colin27_1020").get_positions()["ch_pos"]
    writer = StoreWriter(path)
    rng = np.random.default_rng(0)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    for i in range(n_recordings):
        subject, run = f"{i // 4 + 1:03d}", f"{i % 4 + 1:02d}"
        white = rng.standard_normal((len(TEN_TWENTY), n))
        pink = np.cumsum(white, axis=1) * 0.05 + white  # more power at low frequencies
        signal = (pink * 1e-5 + 2e-6 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
        table = empty_channel_table(TEN_TWENTY, ["eeg"] * len(TEN_TWENTY))
        xyz = np.array([montage[name] for name in TEN_TWENTY])
        table["x"], table["y"], table["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        table["frame"], table["pos_source"] = "head", "template"
        warnings = []
        if i % 7 == 0:
            table.loc[3, "status"], table.loc[3, "status_reason"] = "bad", "flat"
            signal[3] *= 1e-3
        if i % 5 == 0:
            warnings.append(f"{len(TEN_TWENTY)} of {len(TEN_TWENTY)} EEG channels without measured positions got "
                            "template positions from MNE's 'standard_1020' montage (pos_source='template').")
        onsets = np.arange(2.0, seconds - 2, 4.0)
        events = pd.DataFrame({"onset_s": onsets, "duration_s": np.full(len(onsets), 1.0),
                               "description": np.where(np.arange(len(onsets)) % 2, "T1", "T2")})
        if i % 3 == 0:
            events.loc[len(events)] = [seconds / 2, 2.5, "BAD_muscle"]
        writer.write(Recording(
            signal=signal, sfreq=sfreq, identity=Identity(dataset="synth", subject=subject, run=run),
            channels=table, events=events, line_freq=50.0,
            source={"recording_id": f"synth_sub-{subject}_run-{run}", "path": f"/data/synth/S{subject}R{run}.edf",
                    "format": "edf", "size": int(signal.nbytes), "sha256": "", "files": []},
            provenance={
                "recipe": "default", "recipe_origin": "packaged:default", "config_hash": "bench", "recipe_config": {},
                "steps": [{"step": "notch", "params": {}, "effect": {"freqs": [50.0, 100.0], "line_freq": 50.0}},
                          {"step": "bandpass", "params": {}, "effect": {"l_freq": 0.1, "h_freq": None}}],
                "warnings": warnings,
            },
        ))
    for k in range(3):
        writer.record_failure(f"/data/synth/broken{k}.edf", f"broken{k}.edf is truncated: header declares 60 s, file holds 12 s.")


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir())
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--detailed", type=int, default=None, help="--max-recordings of the full report (default: brainfm's)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="write the store and reports here and keep them")
    args = parser.parse_args()
    from brainfm.preprocessing.report.facts import DEFAULT_MAX_RECORDINGS

    detailed = DEFAULT_MAX_RECORDINGS if args.detailed is None else args.detailed
    work = args.keep or Path(tempfile.mkdtemp(prefix="brainfm-report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store.zarr"
    if not store.exists():
        started = time.perf_counter()
        build_store(store, args.recordings, args.seconds, 256.0)
        print(f"wrote {args.recordings} recordings to {store} in {time.perf_counter() - started:.1f} s")
    cli = [sys.executable, "-m", "brainfm.cli.main"]
    cases = {
        "store info --json": cli + ["store", "info", str(store), "--json"],
        "report --max-recordings 0": cli + ["report", str(store), str(work / "summary.html"), "--max-recordings", "0", "-q"],
        f"report (--max-recordings {detailed})": cli + ["report", str(store), str(work / "report.html"),
                                                        "--max-recordings", str(detailed), "-q"],
        f"mne add_raw(psd=True) x {detailed}": [sys.executable, "-c", MNE_SCRIPT, str(store), str(work / "mne.html"), str(detailed)],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, command in cases.items():
            times[name].append(_timed(command))
    names = list(cases)
    info, summary, full, mne_ref = names
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{args.recordings} recordings x {len(TEN_TWENTY)} channels x {args.seconds:g} s at 256 Hz; "
          f"median of {args.repeats} repeats (fresh process each)")
    print(f"{'case':<40} {'seconds':>8}")
    for name in names:
        print(f"{name:<40} {median[name]:>8.2f}")

    def ratio(a: str, b: str) -> str:
        values = [x / y for x, y in zip(times[a], times[b], strict=True)]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    per_detail = [(f - s) / max(detailed, 1) for f, s in zip(times[full], times[summary], strict=True)]
    per_mne = [(m - i) / max(detailed, 1) for m, i in zip(times[mne_ref], times[info], strict=True)]
    print(f"summary of every recording / store info: {ratio(summary, info)}")
    print(f"detailed sections: brainfm {statistics.median(per_detail):.3f} s each, "
          f"mne add_raw {statistics.median(per_mne):.3f} s each; "
          f"brainfm / mne: {statistics.median(per_detail) / statistics.median(per_mne):.2f}")
    print(f"full report / mne add_raw script: {ratio(full, mne_ref)}")
    sizes = {p.name: p.stat().st_size / 2**20 for p in (work / "summary.html", work / "report.html", work / "mne.html")}
    print("HTML sizes (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    per_summary = (median[summary]) / args.recordings
    print(f"extrapolated to 1000 recordings (summary {per_summary * 1000:.0f} s at most, linear in recordings, "
          f"+ {detailed} detailed sections): about {per_summary * 1000 + statistics.median(per_detail) * detailed:.0f} s")


if __name__ == "__main__":
    main()
