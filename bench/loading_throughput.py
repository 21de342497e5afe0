"""Delivered windows per second: brainfm store vs braindecode (FIF, lazy) vs memory-mapped .npy.

Same recordings, same 2-s windows (no overlap), batches of 256, 0 and 2 DataLoader workers,
measured in one run and printed side by side with ratios; then the peak memory of the
whole process tree while brainfm reads a store larger than 10 GB.

brainfm is measured on three stores of the same recordings, one per signal codec (blosc
lz4, the default; blosc zstd; none), each with ``normalization="none"`` (the same work as
the .npy reader, which does not normalise) and ``"zscore"`` (what training uses), with its
default chunk-aware shuffle; more rows use uniform shuffling (the .npy reader's order) and,
without workers, one torch/blosc thread (the .npy reader copies in one thread). The .npy
reader is also timed in its second epoch, when its pages are already mapped (what a long
run sees when the data fit in memory); ratios are given against both.
Every file is read once first, so that all readers start from the page cache. The machine
is shared and noisy, so every configuration is measured ``--rounds`` times, interleaved
(round-robin); the median rate is reported with its range, and each ratio is taken within
a round, then the median over rounds is reported with its range.

Usage (data is written under --workdir, outside the repository; never commit it)::

    python bench/loading_throughput.py --workdir /work/bench-loading \\
        --braindecode-python /work/bench-venv/bin/python

With ``--real DATA`` the signal encodings (:data:`ENCODINGS`: none, lz4, zstd, 12-bit
mantissa rounding + zstd) are compared on real recordings instead: the EEG datasets of
:data:`REAL_DATASETS` under ``DATA/eeg`` are preprocessed with the default recipe, and each
encoding's stored size and error is printed per dataset; then the 64-channel recordings of
:data:`REAL_THROUGHPUT_DATASET` are repeated to ``--hours`` (each copy a recording and a
file of its own) and written as one store per encoding, as ``.npy`` and as FIF, and every
encoding's store is timed as training reads it (z-score, chunk-aware shuffle) against the
same references::

    python bench/loading_throughput.py --real DATA --hours 3 --rounds 3 --max-s 5 \\
        --workdir /tmp/bench-encodings --braindecode-python /work/bench-venv/bin/python

braindecode 1.8.1 imports torchaudio, so it runs in its own environment (a subprocess);
pass ``--braindecode-python`` to include it. ``--big-gb 0`` skips the memory test.

Memory is sampled every 0.1 s over the reading process and all its children: ``RSS`` sums
each process's resident set (pages shared between the parent and forked workers, such as
the torch libraries, are counted once per process: an upper bound); ``PSS`` divides every
shared page among the processes sharing it (the fair total). Both include the store's
pages while a process maps them (memory-mapped chunks); the page cache itself is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

WINDOW_S = 2.0
BATCH = 256


# -- data -------------------------------------------------------------------------------------

def synth_eeg(n_channels: int, n_times: int, sfreq: float, seed: int) -> np.ndarray:
    """1/f ("pink") background plus intermittent 10 Hz alpha, ~20 uV, in volts (float32)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    # Paul Kellet's pink-noise filter
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    white = rng.standard_normal((n_channels, n_times)).astype(np.float32)
    pink = lfilter(b, a, white, axis=1).astype(np.float32)
    t = np.arange(n_times) / sfreq
    envelope = (np.sin(2 * np.pi * 0.05 * t + rng.uniform(0, 6.28)) > 0.3).astype(np.float32)
    alpha = np.sin(2 * np.pi * 10.0 * t)[None, :] * envelope[None, :] * rng.uniform(0.5, 1.5, (n_channels, 1))
    signal = pink / pink.std(axis=1, keepdims=True) * 15e-6 + alpha.astype(np.float32) * 10e-6
    return signal.astype(np.float32)


def _channels(n_channels: int):
    from brainfm.data import empty_channel_table

    return empty_channel_table([f"E{i:03d}" for i in range(n_channels)], ["eeg"] * n_channels)


def write_data(workdir: Path, hours: float, n_channels: int, sfreq: float, recording_min: float) -> dict:
    """Write the recordings as FIF files and .npy files (skipped when present)."""
    import mne

    n_recordings = int(np.ceil(hours * 60 / recording_min))
    n_times = int(recording_min * 60 * sfreq)
    marker = workdir / f"data-{hours}h-{n_channels}ch-{sfreq:g}Hz-{n_recordings}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "fif").mkdir(exist_ok=True)
    (workdir / "npy").mkdir(exist_ok=True)
    info = mne.create_info([f"E{i:03d}" for i in range(n_channels)], sfreq, "eeg")
    for i in range(n_recordings):
        signal = synth_eeg(n_channels, n_times, sfreq, seed=i)
        mne.io.RawArray(signal, info, verbose="error").save(workdir / "fif" / f"rec{i:03d}_raw.fif", fmt="single",
                                                            overwrite=True, verbose="error")
        np.save(workdir / "npy" / f"rec{i:03d}.npy", signal)
        print(f"  wrote recording {i + 1}/{n_recordings}", flush=True)
    meta = {"n_recordings": n_recordings, "n_times": n_times, "n_channels": n_channels, "sfreq": sfreq,
            "hours": n_recordings * n_times / sfreq / 3600}
    marker.write_text(json.dumps(meta))
    return meta


def write_store(workdir: Path, sfreq: float, compression: str) -> Path:
    """The .npy recordings as a brainfm store with the given signal encoding (skipped when present).

    ``compression`` names an entry of :data:`ENCODINGS` (``"bitround12+zstd"``...).
    """
    from brainfm.data import Identity, Recording
    from brainfm.store import StoreWriter

    path = workdir / f"store_{compression}"
    marker = workdir / f"store_{compression}.done"
    if marker.exists():
        return path
    writer = StoreWriter(path)
    for i, file in enumerate(sorted((workdir / "npy").glob("*.npy"))):
        signal = np.load(file)
        writer.write(Recording(signal, sfreq, Identity("synth", subject=f"{i:03d}"), _channels(len(signal))),
                     **ENCODINGS[compression])
    marker.write_text("done")
    return path


# -- real recordings --------------------------------------------------------------------------

#: Signal encodings compared: name -> ``StoreWriter.write`` keywords (blosc level 5, the default).
ENCODINGS: dict[str, dict] = {
    "none": {"compression": "none"},
    "lz4": {"compression": "lz4"},
    "zstd": {"compression": "zstd"},
    "bitround12+zstd": {"compression": "zstd", "bitround_keepbits": 12},
}
#: Real EEG datasets of ``--real`` (folders under DATA/eeg), preprocessed with the default recipe.
REAL_DATASETS = ("eegmmidb", "eegmat", "ssvep-exo")
#: The dataset whose recordings are repeated to make the throughput stores (64 channels, like
#: the synthetic setup).
REAL_THROUGHPUT_DATASET = "eegmmidb"


def preprocess_real(data: Path, workdir: Path) -> Path:
    """The real EEG datasets through the default recipe into one uncompressed store (skipped when present)."""
    from brainfm.preprocessing.run import preprocess

    store = workdir / "preprocessed"
    marker = workdir / "preprocessed.done"
    if marker.exists():
        return store
    recipe = workdir / "default-uncompressed.yaml"
    recipe.write_text("name: default-uncompressed\nextends: default\nwrite: {compression: none}\n")
    for name in REAL_DATASETS:
        summary = preprocess(data / "eeg" / name, store, recipe=recipe, dataset=name)
        print(f"  {name}: {len(summary.processed)} stored, {len(summary.failed)} failed", flush=True)
    marker.write_text("done")
    return store


def _stored_recordings(store: Path, dataset: str | None = None) -> list:
    from brainfm.store import open_store

    opened = open_store(store)
    return [opened[rid] for rid in opened if dataset is None or opened[rid].dataset == dataset]


def chunk_bytes(store: Path) -> int:
    """Bytes of the signal chunks of a store (metadata, tables and statistics left out)."""
    return sum(f.stat().st_size for f in store.glob("recordings/*/signal/c/**/*") if f.is_file())


def encoding_table(preprocessed: Path, workdir: Path) -> list[dict]:
    """Stored size and error of each encoding on every real recording, dataset by dataset.

    Each recording is written into one store per encoding (``StoreWriter.write``, as
    preprocessing does) and read back whole (Zarr). The sizes are those of the signal chunks
    on disk (the last chunk of a recording is stored at full size, so an uncompressed store
    can be a little larger than the float32 signal); the error is that of the stored values
    against the exact ones, relative RMS over all samples (0 for lossless encodings). Speed is
    what the throughput rows measure.
    """
    import shutil

    from brainfm.data import Identity, Recording
    from brainfm.store import StoreWriter, open_store

    rows = []
    for dataset in REAL_DATASETS:
        recordings = _stored_recordings(preprocessed, dataset)
        signals = [np.asarray(rec.signal[:]) for rec in recordings]
        raw_bytes = sum(x.nbytes for x in signals)
        power = sum(float(np.sum(x.astype(np.float64) ** 2)) for x in signals)
        for name, kwargs in ENCODINGS.items():
            path = workdir / "encoding-table" / f"{dataset}_{name}"
            shutil.rmtree(path, ignore_errors=True)
            writer = StoreWriter(path)
            ids = [writer.write(Recording(signal, rec.sfreq, Identity(dataset, subject=rec.id), rec.channels),
                                **kwargs) for rec, signal in zip(recordings, signals, strict=True)]
            opened = open_store(path)
            squared = sum(float(np.sum((np.asarray(opened[rid].signal[:], dtype=np.float64) - x) ** 2))
                          for rid, x in zip(ids, signals, strict=True))
            stored = chunk_bytes(path)
            rows.append({"dataset": dataset, "encoding": name, "recordings": len(recordings),
                         "channels": sorted({rec.n_channels for rec in recordings}),
                         "hours": sum(rec.duration_s for rec in recordings) / 3600,
                         "float32_mb": raw_bytes / 1e6, "stored_mb": stored / 1e6,
                         "ratio": raw_bytes / max(stored, 1), "rel_rms_error": float(np.sqrt(squared / power))})
    return rows


def write_real_data(preprocessed: Path, workdir: Path, hours: float) -> dict:
    """The 64-channel real recordings repeated to ``hours``, as .npy and FIF files (skipped when present).

    Each copy is a file of its own (and, in the stores, a recording of its own), so that every
    reader maps, caches and decodes as many distinct bytes as it would for as many distinct
    recordings; the signal of each copy is that of one real preprocessed recording.
    """
    import mne

    recordings = _stored_recordings(preprocessed, REAL_THROUGHPUT_DATASET)
    total_s = sum(rec.duration_s for rec in recordings)
    copies = int(np.ceil(hours * 3600 / total_s))
    marker = workdir / f"data-real-{copies}x{len(recordings)}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    (workdir / "fif").mkdir(parents=True, exist_ok=True)
    (workdir / "npy").mkdir(exist_ok=True)
    sfreq = recordings[0].sfreq
    n_channels = recordings[0].n_channels
    for copy in range(copies):
        for j, rec in enumerate(recordings):
            signal = np.asarray(rec.signal[:])
            if rec.sfreq != sfreq or len(signal) != n_channels:
                raise RuntimeError(f"{rec.id}: {len(signal)} channels at {rec.sfreq} Hz; the throughput "
                                   f"stores need {n_channels} at {sfreq} Hz")
            stem = f"rec{copy:03d}_{j}"
            info = mne.create_info([f"E{i:03d}" for i in range(n_channels)], sfreq, "eeg")
            mne.io.RawArray(signal, info, verbose="error").save(workdir / "fif" / f"{stem}_raw.fif", fmt="single",
                                                                overwrite=True, verbose="error")
            np.save(workdir / "npy" / f"{stem}.npy", signal)
    n_times = sum(rec.n_times for rec in recordings) * copies
    meta = {"n_recordings": copies * len(recordings), "n_times": n_times, "n_channels": n_channels,
            "sfreq": sfreq, "hours": n_times / sfreq / 3600, "copies": copies,
            "sources": [rec.id for rec in recordings]}
    marker.write_text(json.dumps(meta))
    return meta


def print_encoding_table(rows: list[dict]) -> None:
    print("\nencodings on real recordings (default recipe; blosc level 5, ~2 MiB chunks); "
          "ratio = float32 bytes / stored chunk bytes")
    print(f"{'dataset':10s} {'encoding':16s} {'recs':>4s} {'hours':>5s} {'float32 MB':>10s} {'stored MB':>9s} "
          f"{'ratio':>6s} {'rel RMS error':>13s}")
    for r in rows:
        print(f"{r['dataset']:10s} {r['encoding']:16s} {r['recordings']:4d} {r['hours']:5.2f} {r['float32_mb']:10.1f} "
              f"{r['stored_mb']:9.1f} {r['ratio']:6.2f} {r['rel_rms_error']:13.1e}")


def warm_page_cache(folders: list[Path]) -> float:
    """Read every file once so that all readers start from the page cache; returns seconds."""
    start = time.perf_counter()
    buffer = bytearray(8 << 20)
    for folder in folders:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                with open(file, "rb", buffering=0) as handle:
                    while handle.readinto(buffer):
                        pass
    return time.perf_counter() - start


def folder_gb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9


# -- readers ----------------------------------------------------------------------------------

class NpyWindows:
    """Reference reader: memory-mapped float32 .npy files, one window per __getitem__."""

    def __init__(self, folder: Path, window: int) -> None:
        self.files = sorted(folder.glob("*.npy"))
        self.window = window
        self._maps: dict[int, np.ndarray] = {}
        lengths = [np.load(f, mmap_mode="r").shape[1] for f in self.files]
        self.index = [(r, s) for r, n in enumerate(lengths) for s in range(0, n - window + 1, window)]

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}

    def __getitem__(self, i: int):
        import torch

        r, s = self.index[i]
        mm = self._maps.get(r)
        if mm is None:
            mm = self._maps[r] = np.load(self.files[r], mmap_mode="r")
        return torch.from_numpy(np.array(mm[:, s : s + self.window])), 0


def time_loader(loader, max_batches: int, max_s: float) -> tuple[float, int]:
    """Windows per second over up to ``max_batches`` batches after a first (warm-up) batch."""
    iterator = iter(loader)
    next(iterator)
    n, start = 0, time.perf_counter()
    for i, batch in enumerate(iterator):
        signal = batch.signal if hasattr(batch, "signal") else batch[0]
        n += signal.shape[0]
        if i + 1 >= max_batches or time.perf_counter() - start > max_s:
            break
    return n / (time.perf_counter() - start), n


def bench_brainfm(store: Path, workers: int, shuffle: str, normalization: str, max_batches: int,
                  max_s: float, threads: int | None = None) -> tuple[float, int]:
    """brainfm's data module; ``threads`` limits torch's and blosc's threads in this process meanwhile."""
    import numcodecs.blosc
    import torch

    from brainfm.loading import WindowDataModule

    before = torch.get_num_threads(), numcodecs.blosc.get_nthreads()
    if threads is not None:
        torch.set_num_threads(threads)
        numcodecs.blosc.set_nthreads(threads)
    try:
        data = WindowDataModule(store, window_s=WINDOW_S, batch_size=BATCH, num_workers=workers, shuffle=shuffle,
                                val_fraction=0.0, split_unit="window", normalization=normalization)
        data.setup("fit")
        return time_loader(data.train_dataloader(), max_batches, max_s)
    finally:
        torch.set_num_threads(before[0])
        numcodecs.blosc.set_nthreads(before[1])


def bench_npy(folder: Path, window: int, workers: int, max_batches: int, max_s: float,
              second_epoch: bool = False) -> tuple[float, int]:
    """The .npy reader; ``second_epoch`` times the epoch after a full one (pages already mapped)."""
    import torch

    dataset = NpyWindows(folder, window)
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         generator=generator, persistent_workers=second_epoch and workers > 0)
    if second_epoch:
        for _ in loader:
            pass
    return time_loader(loader, max_batches, max_s)


BRAINDECODE_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import mne, torch
from braindecode.datasets import BaseConcatDataset, RawDataset
from braindecode.preprocessing import create_fixed_length_windows
folder, window, workers, max_batches, max_s = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
raws = [mne.io.read_raw_fif(f, preload=False, verbose="error") for f in sorted(folder.glob("*_raw.fif"))]
concat = BaseConcatDataset([RawDataset(raw, target_name=None) for raw in raws])
windows = create_fixed_length_windows(concat, window_size_samples=window, window_stride_samples=window,
                                      drop_last_window=True, preload=False)
loader = torch.utils.data.DataLoader(windows, batch_size=256, shuffle=True, num_workers=workers,
                                     generator=torch.Generator().manual_seed(0))
iterator = iter(loader)
next(iterator)
n, start = 0, time.perf_counter()
for i, (x, y, *_ ) in enumerate(iterator):
    n += x.shape[0]
    if i + 1 >= max_batches or time.perf_counter() - start > max_s:
        break
print(json.dumps({"rate": n / (time.perf_counter() - start), "n": n, "n_windows": len(windows)}))
"""


def bench_braindecode(python: str, folder: Path, window: int, workers: int, max_batches: int, max_s: float) -> tuple[float, int]:
    result = subprocess.run([python, "-c", BRAINDECODE_SCRIPT, str(folder), str(window), str(workers),
                             str(max_batches), str(max_s)], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"braindecode run failed:\n{result.stderr[-3000:]}")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    return out["rate"], out["n"]


# -- memory -----------------------------------------------------------------------------------

def memory_child(store: str, workers: int, result_path: str) -> None:
    """Read every window of ``store`` once while sampling this process tree's memory."""
    import psutil

    me = psutil.Process()
    peak = {"rss": 0, "pss": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = pss = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    full = proc.memory_full_info()
                    rss += full.rss
                    pss += full.pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    from brainfm.loading import WindowDataModule

    data = WindowDataModule(store, window_s=WINDOW_S, batch_size=BATCH, num_workers=workers, val_fraction=0.0,
                            split_unit="window")
    data.setup("fit")
    n, start = 0, time.perf_counter()
    for batch in data.train_dataloader():
        n += len(batch)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    Path(result_path).write_text(json.dumps({"n": n, "seconds": elapsed, "peak_rss": peak["rss"],
                                             "peak_pss": peak["pss"]}))


def write_big_store(workdir: Path, min_gb: float, sfreq: float, compression: str) -> Path:
    """A store larger than ``min_gb`` GB on disk: the .npy recordings written again and again."""
    from brainfm.data import Identity, Recording
    from brainfm.store import StoreWriter

    path = workdir / f"big_store_{compression}"
    marker = workdir / f"big_store_{compression}-{min_gb}.done"
    if marker.exists():
        return path
    writer = StoreWriter(path)
    files = sorted((workdir / "npy").glob("*.npy"))
    i = 0
    while folder_gb(path) < min_gb:
        signal = np.load(files[i % len(files)])
        writer.write(Recording(signal, sfreq, Identity("big", subject=f"{i:04d}"), _channels(len(signal))),
                     compression=compression)
        i += 1
        if i % 20 == 0:
            print(f"  big {compression} store: {i} recordings, {folder_gb(path):.1f} GB", flush=True)
    marker.write_text("done")
    return path


# -- main -------------------------------------------------------------------------------------

CODECS = ("lz4", "zstd", "none")


def plan_real_rows(workdir: Path, window: int, braindecode_python: str | None,
                   encodings: tuple[str, ...] = tuple(ENCODINGS)) -> list[tuple[str, object, set[int] | None]]:
    """The rows of ``--real``: each encoding's store as training reads it (z-score, chunk-aware shuffle)."""
    rows: list[tuple[str, object, set[int] | None]] = []
    for codec in encodings:
        rows.append((f"brainfm {codec} store, zscore", lambda w, b, t, c=codec: bench_brainfm(
            workdir / f"store_{c}", w, "chunk", "zscore", b, t), None))
    # Without workers brainfm's gather, normalisation and decoding use torch's and blosc's
    # threads; on a loaded machine a second thread can cost more than it gains. With one:
    for codec in encodings:
        rows.append((f"brainfm {codec} store, zscore, 1 thread", lambda w, b, t, c=codec: bench_brainfm(
            workdir / f"store_{c}", w, "chunk", "zscore", b, t, threads=1), {0}))
    return rows + reference_rows(workdir, window, braindecode_python)


def reference_rows(workdir: Path, window: int, braindecode_python: str | None) -> list[tuple[str, object, set[int] | None]]:
    """The .npy reader (first and second epoch) and braindecode on the same recordings."""
    rows: list[tuple[str, object, set[int] | None]] = []
    rows.append(("memory-mapped .npy", lambda w, b, t: bench_npy(workdir / "npy", window, w, b, t), None))
    # A long run maps each page once: the .npy reader's later epochs skip the page faults
    # (brainfm maps and unmaps chunks, so every epoch is like its first).
    rows.append(("memory-mapped .npy, 2nd epoch", lambda w, b, t: bench_npy(
        workdir / "npy", window, w, b, t, second_epoch=True), None))
    if braindecode_python:
        rows.append(("braindecode 1.8.1 FIF lazy", lambda w, b, t: bench_braindecode(
            braindecode_python, workdir / "fif", window, w, b, t), None))
    return rows


def plan_rows(workdir: Path, window: int, braindecode_python: str | None) -> list[tuple[str, object, set[int] | None]]:
    """(name, function of (workers, max_batches, max_s) -> (rate, n), worker counts or None for all)."""
    rows: list[tuple[str, object, set[int] | None]] = []
    for codec in CODECS:
        for normalization in ("none", "zscore"):
            label = f"brainfm {codec} store, norm {normalization}"
            rows.append((label, lambda w, b, t, c=codec, n=normalization: bench_brainfm(
                workdir / f"store_{c}", w, "chunk", n, b, t), None))
    # Without workers brainfm's gather and decoding use torch's and blosc's threads (2 here);
    # the .npy reader copies in one thread. The same with one thread:
    for codec in ("lz4", "none"):
        rows.append((f"brainfm {codec} store, zscore, 1 thread", lambda w, b, t, c=codec: bench_brainfm(
            workdir / f"store_{c}", w, "chunk", "zscore", b, t, threads=1), {0}))
    for codec in ("none", "lz4"):
        rows.append((f"brainfm {codec} store, zscore, uniform", lambda w, b, t, c=codec: bench_brainfm(
            workdir / f"store_{c}", w, "uniform", "zscore", b, t), None))
    return rows + reference_rows(workdir, window, braindecode_python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/work/bench-loading"))
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sfreq", type=float, default=256.0)
    parser.add_argument("--recording-min", type=float, default=30.0)
    parser.add_argument("--braindecode-python", default=None)
    parser.add_argument("--max-batches", type=int, default=50, help="timed batches per reader (after one warm-up)")
    parser.add_argument("--max-s", type=float, default=10.0, help="time limit per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per configuration (median reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--big-gb", type=float, default=10.5, help="size of the memory-test stores; 0 skips them")
    parser.add_argument("--big-codecs", nargs="+", default=["lz4", "none"], help="codecs of the memory-test stores")
    parser.add_argument("--real", type=Path, default=None, metavar="DATA",
                        help="measure the encodings on the real recordings of DATA/eeg instead of synthetic EEG: "
                             "their sizes (every dataset of REAL_DATASETS) and the throughput of their stores "
                             f"({REAL_THROUGHPUT_DATASET} repeated to --hours)")
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=list(ENCODINGS),
                        help="with --real: the encodings whose stores are timed (all are sized)")
    parser.add_argument("--memory-child", nargs=3, metavar=("STORE", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.memory_child[2])
        return

    if args.real is not None:
        real = args.workdir / f"real-{args.hours:g}h"
        real.mkdir(parents=True, exist_ok=True)
        print(f"preprocessing {', '.join(REAL_DATASETS)} from {args.real / 'eeg'} (default recipe)", flush=True)
        preprocessed = preprocess_real(args.real, real)
        table = encoding_table(preprocessed, real)
        print_encoding_table(table)
        (real / "encodings.json").write_text(json.dumps(table, indent=1))
        meta = write_real_data(preprocessed, real, args.hours)
        print(f"throughput stores: {REAL_THROUGHPUT_DATASET} ({len(meta['sources'])} recordings) repeated "
              f"{meta['copies']}x", flush=True)
        args.workdir, args.sfreq, args.channels, args.big_gb = real, meta["sfreq"], meta["n_channels"], 0.0
        codecs: tuple[str, ...] = tuple(args.encodings)
    else:
        print(f"writing {args.hours} h of {args.channels}-channel EEG at {args.sfreq:g} Hz to {args.workdir}", flush=True)
        meta = write_data(args.workdir, args.hours, args.channels, args.sfreq, args.recording_min)
        codecs = CODECS
    for codec in codecs:
        write_store(args.workdir, args.sfreq, codec)
    window = int(WINDOW_S * args.sfreq)
    sizes = {name: folder_gb(args.workdir / name) for name in (*(f"store_{c}" for c in codecs), "fif", "npy")}
    print(f"data: {meta['hours']:.1f} h, {meta['n_recordings']} recordings; on disk (GB): "
          + ", ".join(f"{k} {v:.2f}" for k, v in sizes.items()), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip() or "unknown"
    print(f"machine: {os.cpu_count()} cores; commit {commit}; {args.rounds} rounds, up to {args.max_batches} "
          f"batches or {args.max_s:g} s per measurement", flush=True)
    seconds = warm_page_cache([args.workdir / name for name in sizes])
    print(f"page cache warmed ({seconds:.0f} s)", flush=True)

    if args.real is not None:
        rows = plan_real_rows(args.workdir, window, args.braindecode_python, tuple(args.encodings))
    else:
        rows = plan_rows(args.workdir, window, args.braindecode_python)
    rates: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        for workers in args.workers:
            for name, run, only in rows:
                if only is None or workers in only:
                    rate, _ = run(workers, args.max_batches, args.max_s)  # type: ignore[operator]
                    rates.setdefault((name, workers), []).append(rate)
        print(f"  round {round_ + 1}/{args.rounds} done", flush=True)

    # Ratios are taken within each round (readers measured minutes apart on a shared machine
    # drift together), then the median over rounds is reported with its range.
    def ratios(name: str, workers: int, reference: str) -> list[float]:
        return [a / b for a, b in zip(rates[(name, workers)], rates[(reference, workers)], strict=True)]

    def cell(values: list[float]) -> str:
        return f"{np.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"

    print(f"\nwindows of {WINDOW_S:g} s ({window} samples x {args.channels} channels), batch {BATCH}; "
          f"medians of {args.rounds} rounds (range); ratios within each round")
    print(f"{'reader':40s} {'workers':>7s} {'windows/s':>10s} {'range':>13s} {'vs .npy memmap':>20s} "
          f"{'vs .npy 2nd epoch':>20s} {'vs braindecode':>20s}")
    references = ("memory-mapped .npy", "memory-mapped .npy, 2nd epoch", "braindecode 1.8.1 FIF lazy")
    for workers in args.workers:
        for name, _, only in rows:
            if only is not None and workers not in only:
                continue
            values = rates[(name, workers)]
            cells = [cell(ratios(name, workers, ref)) if (ref, workers) in rates else "-" for ref in references]
            print(f"{name:40s} {workers:7d} {np.median(values):10.0f} {f'{min(values):.0f}-{max(values):.0f}':>13s} "
                  + " ".join(f"{c:>20s}" for c in cells))

    if args.big_gb > 0:
        for codec in args.big_codecs:
            print(f"\nwriting a {codec} store > {args.big_gb} GB for the memory test", flush=True)
            big = write_big_store(args.workdir, args.big_gb, args.sfreq, codec)
            out = args.workdir / f"memory_{codec}.json"
            subprocess.run([sys.executable, __file__, "--memory-child", str(big), "2", str(out)], check=True,
                           env={**os.environ})
            result = json.loads(out.read_text())
            print(f"memory test ({codec}): store {folder_gb(big):.1f} GB, {result['n']} windows in "
                  f"{result['seconds']:.0f} s ({result['n'] / result['seconds']:.0f} windows/s, 2 workers, zscore); "
                  f"peak process tree RSS {result['peak_rss'] / 2**30:.2f} GiB, PSS {result['peak_pss'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
