"""``brainfm demo``: the pipeline on the bundled sample (EEGMMIDB subject 1, runs 3 and 4)."""

from __future__ import annotations

import argparse
import sys
from importlib.resources import as_file, files
from pathlib import Path

from brainfm.cli._output import add_verbosity, log_level


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare the arguments of ``brainfm demo``."""
    parser.add_argument("--out", default="demo_out", help="folder for the demo's store and reports (default ./demo_out)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for preprocessing")
    add_verbosity(parser)


def run(args: argparse.Namespace, command: str) -> int:
    """Preprocess the bundled sample into ``OUT/store.zarr`` and print what the store holds."""
    from brainfm._logging import use_log_level
    from brainfm.cli.store_cmd import _info_table
    from brainfm.preprocessing.report import write_report
    from brainfm.preprocessing.run import preprocess
    from brainfm.store.reader import open_store
    from brainfm.store.summary import store_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "store.zarr"
    with as_file(files("brainfm") / "sample_data" / "eegmmidb") as sample:
        sys.stdout.write(f"[1/4] preprocess {sample} -> {store_path} (recipe 'default')\n")
        with use_log_level(log_level(args)):
            summary = preprocess(
                sample, store_path, recipe="default", jobs=args.jobs, dataset="eegmmidb",
                pattern=r"S(?P<subject>\d+)R(?P<run>\d+)", progress=not args.quiet and sys.stderr.isatty(),
            )
    sys.stdout.write(summary.table() + "\n")
    sys.stdout.write(f"[2/4] brainfm store info {store_path}\n")
    sys.stdout.write(_info_table(store_info(open_store(store_path))) + "\n")
    report = write_report(store_path, out / "report.html")
    sys.stdout.write(
        f"[3/4] brainfm report {store_path} {report['html']}\n  quality report (PSDs, sensor layout, events, "
        f"provenance) of {report['summary']['n_recordings']} recordings: open it in a browser\n"
    )
    sys.stdout.write(_load_report(store_path) + "\n")
    return summary.exit_status


def _load_report(store_path: Path) -> str:
    """Read one training epoch of labelled 4-s windows (T1 left vs T2 right fist) as batches."""
    import time

    from brainfm.loading import WindowDataModule

    data = WindowDataModule(
        store_path, window_s=None, tmin=0.0, tmax=4.0, label_map={"T1": 0, "T2": 1},
        batch_size=8, split_unit="recording", val_fraction=0.5, seed=0,
    )
    data.setup("fit")
    started = time.perf_counter()
    n_windows, first = 0, None
    for batch in data.train_dataloader():
        first = first or batch
        n_windows += batch.signal.shape[0]
    seconds = time.perf_counter() - started
    assert first is not None
    return (
        f"[4/4] load event-locked windows (T1 left fist -> 0, T2 right fist -> 1), split by recording\n"
        f"  train: {n_windows} windows in {seconds:.2f} s; first batch signal {tuple(first.signal.shape)}, "
        f"sensor_pos {tuple(first.sensor_pos.shape)}, labels {first.labels.tolist()}\n"
        f"  channels linked into models: n_channels={data.n_channels}, n_times={data.n_times}, "
        f"sfreq={data.sfreq:g}, vocabulary_size={data.vocabulary_size}"
    )
