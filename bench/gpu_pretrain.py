"""GPU readiness of every pretraining recipe: tokens/s, step time, peak memory, MFU and loader stall.

For each recipe in ``configs/pretrain/`` (its ``base`` size preset when it has one, the recipe
itself otherwise; recipes added later, such as MEG-GPT, BrainOmni or BaRISTA, are picked up by
name), the recipe is built exactly as ``brainfm pretrain fit`` builds it and trained for
``--warmup + --steps`` steps in bf16 mixed precision on one device, then reports:

- ``input_tokens_per_s``: good channel-samples of the training batches per second of step
  time (one token = one sample of one channel, MEG-GPT's token; divide by a patch length for
  patch-based models), and ``windows_per_s``;
- ``step_ms``: median step time (data wait included), from
  :class:`brainfm.pretrain.loader_stall.LoaderStallMonitor`;
- ``loader_stall``: share of step time spent waiting for the next batch (same callback);
- ``peak_memory_gib``: ``torch.cuda.max_memory_allocated`` on GPU, the process's peak RSS on CPU;
- ``flops_per_step`` and ``mfu``: FLOPs of one training step (forward + backward) counted with
  ``torch.utils.flop_counter.FlopCounterMode`` on a step after the warm-up (that step is left
  out of the timings), scaled per token, times tokens/s, over the card's dense bf16 peak
  (:data:`PEAK_BF16_TFLOPS`, matched on ``torch.cuda.get_device_name``; ``--peak-tflops`` for
  another card). FlopCounterMode counts matrix products, convolutions and attention; fused
  recurrent kernels (cuDNN LSTM/GRU) are not counted, so the MFU of the BrainTokenizer (LSTM)
  and of the sample tokenizer (GRU) is a lower bound.

Data: ``--store STORE`` (a real store the recipes accept), or by default a synthetic store of
32 EEG channels at 256 Hz with 10-20 positions and 1/f noise, written under ``--workdir``
(large enough that the measured steps stay inside one epoch). A recipe that refuses the data is
reported as skipped with its error.

Usage::

    # dry run on CPU (no GPU here): every recipe, 5 measured steps
    python bench/gpu_pretrain.py --device cpu --steps 5 --workdir /tmp/gpu-bench
    # on one GPU (H100/H200): bf16, 50 measured steps after 10 warm-up steps, 8 loader workers
    python bench/gpu_pretrain.py --device cuda --steps 50 --warmup 10 --num-workers 8 \\
        --workdir /scratch/gpu-bench --json gpu_pretrain.json
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: Dense (no sparsity) bf16 tensor-core peak per GPU, TFLOP/s, by a substring of the device name
#: (first match wins, so specific names come first). From NVIDIA's data sheets.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200", 989.4),
    ("GH200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
]


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU from its name, or None when unknown."""
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def recipe_configs(selected: list[str] | None, size: str = "base") -> list[tuple[str, list[Path]]]:
    """``(name, [recipe.yaml, size preset])`` for every shipped recipe (or the selected ones); recipes
    without that preset run as they are."""
    folder = Path(str(importlib.resources.files("brainfm.configs") / "pretrain"))
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    if selected:
        unknown = sorted(set(selected) - set(names))
        if unknown:
            raise SystemExit(f"unknown recipe(s) {unknown}; shipped: {names}")
        names = [n for n in names if n in selected]
    out = []
    for name in names:
        configs = [folder / f"{name}.yaml"]
        if (folder / name / f"{size}.yaml").is_file():
            configs.append(folder / name / f"{size}.yaml")
        out.append((name, configs))
    return out


def synthetic_store(path: Path, n_recordings: int, seconds: float, sfreq: float = 256.0) -> Path:
    """A store of 32-channel EEG with 10-20 template positions and 1/f noise (50 uV scale)."""
    import mne

    from brainfm.data import Identity, Recording, empty_channel_table
    from brainfm.store import StoreWriter, open_store

    if (path / "zarr.json").is_file() and len(open_store(path)) == n_recordings:
        return path
    montage = mne.channels.make_standard_montage("standard_1020").get_positions()["ch_pos"]
    names = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz", "C4", "T8",
             "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8", "PO3", "PO4", "O1", "Oz", "O2", "AF3", "AF4"]
    rng = np.random.default_rng(0)
    n_times = int(seconds * sfreq)
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    shaping = 1.0 / np.sqrt(np.maximum(freqs, 0.5))  # 1/f power
    writer = StoreWriter(path)
    for r in range(n_recordings):
        spectrum = (rng.standard_normal((len(names), freqs.size)) + 1j * rng.standard_normal((len(names), freqs.size)))
        signal = np.fft.irfft(spectrum * shaping, n=n_times, axis=1)
        signal *= 50e-6 / signal.std(axis=1, keepdims=True)
        channels = empty_channel_table(names, ["eeg"] * len(names))
        channels[["x", "y", "z"]] = np.array([montage[n] for n in names])
        channels["frame"] = "head"
        channels["pos_source"] = "template"
        writer.write(Recording(
            signal=signal.astype(np.float32), sfreq=sfreq, identity=Identity("synthetic", f"{r:03d}", task="rest"),
            channels=channels, source={"path": f"synthetic/{r}", "sha256": str(r)},
            provenance={"recipe": "gpu-bench-synthetic", "config_hash": "synthetic"},
        ))
    return path


def _callbacks(flop_batch: int) -> tuple[Any, Any]:
    import torch
    from lightning.pytorch.callbacks import Callback
    from torch.utils.flop_counter import FlopCounterMode

    from brainfm.pretrain.loader_stall import LoaderStallMonitor

    class Throughput(Callback):
        """Tokens and windows of each batch; FLOPs of one step (FlopCounterMode), kept out of the timings."""

        def __init__(self) -> None:
            self.tokens: dict[tuple[int, int], int] = {}
            self.windows: dict[tuple[int, int], int] = {}
            self.flops: int | None = None
            self.flop_tokens: int | None = None
            self._counter: FlopCounterMode | None = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 0 and batch_idx == flop_batch:
                self._counter = FlopCounterMode(display=False)
                self._counter.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            key = (trainer.current_epoch, batch_idx)
            self.tokens[key] = int(batch.channel_mask.sum()) * int(batch.signal.shape[-1])
            self.windows[key] = int(batch.signal.shape[0])
            if self._counter is not None:
                if pl_module.device.type == "cuda":
                    torch.cuda.synchronize(pl_module.device)
                self._counter.__exit__(None, None, None)
                self.flops, self.flop_tokens = int(self._counter.get_total_flops()), self.tokens[key]
                self._counter = None

    class KeyedStall(LoaderStallMonitor):
        """The stall monitor, remembering which batch each measurement belongs to."""

        def __init__(self) -> None:
            super().__init__(skip_first=0, log=False)
            self.keys: list[tuple[int, int]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            before = len(self.step_times)
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if len(self.step_times) > before:
                self.keys.append((trainer.current_epoch, batch_idx))

    return Throughput(), KeyedStall()


def measure(name: str, configs: list[Path], store: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one recipe for warm-up + measured steps and return its figures."""
    import torch

    from brainfm.loading.datamodule import WindowDataModule
    from brainfm.pretrain.cli import PretrainCLI
    from brainfm.pretrain.module import PretrainModule

    accelerator = "gpu" if args.device == "cuda" else "cpu"
    cli_args: list[str] = []
    for config in configs:
        cli_args += ["--config", str(config)]
    cli_args += [
        "--data.store", str(store), "--data.num_workers", str(args.num_workers), "--data.val_fraction", "0.0",
        "--trainer.accelerator", accelerator, "--trainer.devices", "1", "--trainer.precision", args.precision,
        "--trainer.max_steps", str(args.warmup + args.steps + 1), "--trainer.max_epochs", "1000",
        "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(args.workdir / "runs" / name),
    ]
    if args.num_workers > 0:
        cli_args += ["--data.persistent_workers", "true"]
    if args.batch_size:
        cli_args += ["--data.batch_size", str(args.batch_size)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli = PretrainCLI(PretrainModule, WindowDataModule, args=cli_args, run=False,
                              trainer_defaults={"use_distributed_sampler": False},
                              parser_kwargs={"prog": "gpu_pretrain", "default_env": False},
                              auto_configure_optimizers=False)
    except (SystemExit, Exception) as error:  # noqa: BLE001 - a recipe that cannot run is reported, not fatal
        return {"recipe": name, "skipped": f"{type(error).__name__}: {error}"}
    flop_batch = args.warmup  # the first step after the warm-up
    throughput, stall = _callbacks(flop_batch)
    cli.trainer.callbacks.extend([throughput, stall])
    n_parameters = sum(p.numel() for p in cli.model.parameters())
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli.trainer.fit(cli.model, cli.datamodule)
    except Exception as error:  # noqa: BLE001
        return {"recipe": name, "skipped": f"{type(error).__name__}: {error}"}
    wall = time.perf_counter() - started
    # steady state: after the warm-up, without the FLOP-counting step
    kept = [i for i, (epoch, batch) in enumerate(stall.keys)
            if (epoch, batch) != (0, flop_batch) and (epoch > 0 or batch >= args.warmup)]
    steps = np.array([stall.step_times[i] for i in kept])
    waits = np.array([stall.wait_times[i] for i in kept])
    tokens = np.array([throughput.tokens[stall.keys[i]] for i in kept])
    windows = np.array([throughput.windows[stall.keys[i]] for i in kept])
    result: dict[str, Any] = {
        "recipe": name,
        "configs": [str(Path(c).relative_to(Path(c).parents[1] if Path(c).parent.name != "pretrain" else Path(c).parent)) for c in configs],
        "parameters": int(n_parameters),
        "precision": args.precision,
        "measured_steps": len(kept),
        "wall_s": wall,
    }
    if not len(kept):
        result["skipped"] = "no step measured (the data gave too few batches; pass --store or more --minutes)"
        return result
    tokens_per_s = float(tokens.sum() / steps.sum())
    result.update({
        "batch_windows": int(np.median(windows)),
        "step_ms": float(np.median(steps) * 1e3),
        "input_tokens_per_s": tokens_per_s,
        "windows_per_s": float(windows.sum() / steps.sum()),
        "loader_stall": float(waits.sum() / steps.sum()),
    })
    if args.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    if throughput.flops:
        flops_per_token = throughput.flops / throughput.flop_tokens
        result["flops_per_step"] = throughput.flops
        result["achieved_tflops"] = flops_per_token * tokens_per_s / 1e12
        if args.peak_tflops:
            result["mfu"] = result["achieved_tflops"] / args.peak_tflops
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=50, help="measured steps per recipe")
    parser.add_argument("--warmup", type=int, default=10, help="steps before measuring")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipes' batch size")
    parser.add_argument("--recipes", nargs="*", default=None, help="recipe names (default: every shipped recipe)")
    parser.add_argument("--size", default="base", help="size preset used where a recipe has it (default base)")
    parser.add_argument("--store", type=Path, default=None, help="a store to train on (default: synthetic)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="synthetic data per recording, minutes (default 30 on GPU, 4 on CPU)")
    parser.add_argument("--recordings", type=int, default=8, help="synthetic recordings")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: from its name)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the synthetic store and runs go")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for a dry run")
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    if args.device == "cuda" and args.peak_tflops is None:
        args.peak_tflops = peak_tflops(device_name)
    store = args.store
    if store is None:
        minutes = args.minutes if args.minutes is not None else (30.0 if args.device == "cuda" else 4.0)
        store = synthetic_store(args.workdir / f"synthetic-{args.recordings}x{minutes:g}min", args.recordings, minutes * 60)
    rows = []
    for name, configs in recipe_configs(args.recipes, args.size):
        print(f"# {name}: {', '.join(c.name for c in configs)}", file=sys.stderr, flush=True)
        rows.append(measure(name, configs, store, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    header = f"{'recipe':<18}{'params':>10}{'batch':>7}{'step ms':>10}{'tokens/s':>13}{'stall':>8}{'memory GiB':>12}{'TFLOP/s':>9}{'MFU':>7}"
    print(f"device: {device_name}; precision {args.precision}; {args.num_workers} workers; store {store}")
    print(header)
    for row in rows:
        if "skipped" in row:
            print(f"{row['recipe']:<18}skipped: {row['skipped'][:150]}")
            continue
        memory = row.get("peak_memory_gib", row.get("peak_rss_gib"))
        tflops = row.get("achieved_tflops")
        mfu = row.get("mfu")
        print(f"{row['recipe']:<18}{row['parameters']:>10,}{row['batch_windows']:>7}{row['step_ms']:>10.1f}"
              f"{row['input_tokens_per_s']:>13,.0f}{row['loader_stall']:>8.1%}{memory:>12.2f}"
              f"{'-' if tflops is None else f'{tflops:.2f}':>9}{'-' if mfu is None else f'{mfu:.1%}':>7}")
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "peak_tflops": args.peak_tflops, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
