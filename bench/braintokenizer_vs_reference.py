"""BrainTokenizer speed and k-means memory: brainfm against the reference code, same run, alternating.

The reference (OpenTSLab/BrainOmni, ``braintokenizer/`` and ``model_utils/``) runs in its own
virtual environment, in a subprocess, never imported by brainfm. Its DeepSpeed communication
helpers are replaced by a single-process stub so that it runs on CPU. Both sides build the
published size (spec brainomni.md §4.1), use the same number of threads and the same seeded
inputs; the measurements alternate brainfm / reference (order flipped every repeat) and the
report gives the ratios of medians.

Set-up of the reference environment (outside the repository)::

    python -m venv /work/refenv
    /work/refenv/bin/pip install torch==2.13.0 einops einx vector-quantize-pytorch
    git clone https://github.com/OpenTSLab/BrainOmni /work/brainomni-ref      # or any checkout

Run::

    python bench/braintokenizer_vs_reference.py --reference /work/brainomni-ref \\
        --reference-python /work/refenv/bin/python --threads 2 --repeats 3

Measured (figures in docs/benchmarks.md):

- encode: evaluation-mode tokenisation of B segments of C channels x 10 s, windows (512 samples)
  per second;
- train step: forward, backward and an AdamW step of the training loss (channel dropout, noise);
- both as wall-clock time and as the process's CPU time (``time.process_time``): on a shared,
  loaded machine the CPU time of a one-thread run is the steadier measure of the work done;
- profile (``--tasks profile``): the share of self CPU time per kernel group (convolution,
  LSTM, ELU, padding, ...) of encode and of a train step, from ``torch.profiler``;
- k-means init: the peak resident memory added by one codebook's initialisation from 1024,
  2048 and 4096 sampled vectors of width 256 (a fresh process for each side), and its time.

Codebooks are marked initialised (random unit codes) before the timed steps on both sides,
so the train step measures steady training, not the first step's k-means.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = {"window_length": 512, "n_filters": 32, "ratios": [8, 4, 2], "kernel_size": 5, "last_kernel_size": 5,
          "n_dim": 256, "n_neuro": 16, "n_head": 4, "dropout": 0.0, "codebook_dim": 256, "codebook_size": 512,
          "num_quantizers": 4, "rotation_trick": True, "quantize_optimize_method": "ema"}

_DEEPSPEED_COMM_STUB = '''"""Single-process stand-in for deepspeed.comm (benchmark only)."""
class ReduceOp:
    SUM = "sum"
def is_initialized():
    return False
def get_world_size():
    return 1
def all_reduce(tensor, op=None):
    return tensor
def broadcast(tensor, src=0):
    return tensor
'''


def _inputs(batch: int, channels: int, seconds: float, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    n_times = int(seconds * 256)
    x = torch.randn(batch, channels, n_times, generator=g)
    pos = torch.randn(batch, channels, 6, generator=g)
    # positions as the reference's preprocessing leaves them (spec §3.2 step 5): per recording,
    # centred and scaled to mean squared norm 1/3 (brainfm normalises again: idempotent)
    xyz = pos[..., :3] - pos[..., :3].mean(1, keepdim=True)
    pos[..., :3] = xyz / torch.sqrt(3 * xyz.pow(2).sum(-1).mean(1))[:, None, None]
    types = torch.zeros(batch, channels, dtype=torch.long)
    return x, pos, types


class _Side:
    """One implementation behind a common face: build, encode, train step, k-means init."""

    def __init__(self, name: str) -> None:
        import torch

        self.name = name
        if name == "brainfm":
            from brainfm.tokenizers import BrainTokenizer

            self.model = BrainTokenizer()
        else:
            from braintokenizer.model import (
                BrainTokenizer as Reference,  # the reference checkout on sys.path
            )

            self.model = Reference(**CONFIG)
        # brainfm: its recipe's optimiser (configs/pretrain/braintokenizer.yaml: fused AdamW, the same update);
        # the reference: torch's default AdamW implementation
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=2e-4, betas=(0.5, 0.9), eps=1e-5,
                                           weight_decay=1e-2, fused=name == "brainfm")

    def preinit_codebooks(self) -> None:
        """Mark every codebook initialised with random unit codes, so that timed steps measure steady
        training (the reference's k-means needs ~4 GiB, which a shared machine may not have)."""
        import torch

        g = torch.Generator().manual_seed(3)
        if self.name == "brainfm":
            books = list(self.model.quantizer.layers)
            fields = ("embed", "embed_avg", "cluster_size", "initted")
        else:
            books = [layer._codebook for layer in self.model.quantizer.rvq.layers]
            fields = ("embed", "embed_avg", "cluster_size", "inited")
        with torch.no_grad():
            for book in books:
                embed, embed_avg, size, flag = (getattr(book, f) for f in fields)
                codes = torch.nn.functional.normalize(torch.randn(embed.shape, generator=g), dim=-1)
                embed.copy_(codes)
                embed_avg.copy_(codes * 4.0)
                size.fill_(4.0)
                flag.fill_(True)

    @staticmethod
    def _batch(x, pos, types):
        import torch

        from brainfm.loading.batch import Batch

        b, c, _ = x.shape
        ones = torch.ones(b, c, dtype=torch.bool)
        zeros = torch.zeros(b, c, dtype=torch.long)
        return Batch(signal=x, channel_mask=ones, sensor_pos=pos, sensor_type=types, pos_mask=ones.clone(),
                     frame_ids=zeros, channel_ids=zeros + 1, region_ids=zeros, subject_ids=torch.zeros(b, dtype=torch.long),
                     recording_ids=torch.zeros(b, dtype=torch.long), start=torch.zeros(b, dtype=torch.long))

    def encode(self, x, pos, types):
        import torch

        self.model.eval()
        with torch.no_grad():
            if self.name == "brainfm":
                return self.model.tokenize(self._batch(x, pos, types))[1]
            return self.model.tokenize(x, pos, types, overlap_ratio=0.0)[1]

    def train_step(self, x, pos, types) -> float:
        self.model.train()
        if self.name == "brainfm":
            loss = self.model.loss(self._batch(x, pos, types))["loss"]
        else:
            loss = self.model(x, pos, types)[0]["loss"]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def _kmeans_peak_mib(name: str, samples: int) -> tuple[float, float]:
    """Peak resident memory (MiB) added by one codebook's k-means initialisation (``samples`` of 8192 x 256
    vectors, 512 codes, 10 iterations), and its seconds."""
    import torch

    x = torch.nn.functional.normalize(torch.randn(8192, 256, generator=torch.Generator().manual_seed(0)), dim=-1)
    if name == "brainfm":
        from brainfm.nn.rvq import EuclideanCodebook

        book = EuclideanCodebook(512, 256, kmeans_samples=samples)
        init = book.init_from
    else:
        # the reference's codebook always samples 4096 vectors; its k-means function is called
        # directly for smaller samples (its memory grows with samples x codes x width)
        from model_utils.vq import kmeans

        def init(data):
            return kmeans(data[torch.randperm(data.shape[0])[:samples]], 512, 10)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    init(x)
    seconds = time.perf_counter() - t0
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, seconds


def _equivalence(name: str, path: str) -> dict:
    """Reference: one training step, then save its weights and its evaluation-mode
    outputs on fresh inputs. brainfm: load those weights through the key map and compare."""
    import torch

    x, pos, types = _inputs(2, 19, 4.0, seed=5)
    if name == "reference":
        side = _Side("reference")
        side.preinit_codebooks()  # then one training step moves codes and weights (EMA update included)
        side.train_step(*_inputs(2, 19, 10.0, seed=4))
        side.model.eval()
        with torch.no_grad():
            features, indices = side.model.tokenize(x, pos, types, overlap_ratio=0.0)
            reconstruction = side.model.visualize(x, pos, types)["x_rec"]
        torch.save({"state": side.model.state_dict(), "features": features, "indices": indices,
                    "reconstruction": reconstruction}, path)
        return {}
    from brainfm.tokenizers import load_reference_brain_tokenizer

    saved = torch.load(path, weights_only=True)
    tokenizer = load_reference_brain_tokenizer(saved["state"])
    batch = _Side._batch(x, pos, types)
    with torch.no_grad():
        features, indices = tokenizer.tokenize(batch)
        windows = tokenizer.reconstruct_windows(tokenizer.quantizer.decode(indices), tokenizer.sensor_encoder(pos, types))
    return {"indices_equal": float((indices == saved["indices"]).float().mean()),
            "features_max_abs_diff": float((features - saved["features"]).abs().max()),
            "reconstruction_max_abs_diff": float((windows - saved["reconstruction"]).abs().max()),
            "reconstruction_scale": float(saved["reconstruction"].abs().max())}


_PROFILE_GROUPS = (  # (group, substrings of the aten op name), first match wins
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("convolution", "conv")),
    ("LSTM backward", ("rnn_layer_backward", "lstm_backward")),
    ("LSTM forward", ("rnn", "lstm")),
    ("ELU", ("elu",)),
    ("reflect padding", ("reflection_pad",)),
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("copies", ("copy_", "clone", "contiguous")),
)


def _profile_shares(step, calls: int = 3) -> dict:
    """Share of self CPU time per kernel group over ``calls`` calls of ``step`` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares: dict = {}
    for event in events:
        group = next((g for g, keys in _PROFILE_GROUPS if any(k in event.key for k in keys)), "other")
        shares[group] = shares.get(group, 0.0) + event.self_cpu_time_total / total
    return shares


def worker(args: argparse.Namespace) -> dict:
    """Measure one side in this process (run by the parent in the right environment)."""
    import torch

    torch.set_num_threads(args.threads)
    if args.task == "kmeans":
        peak, seconds = _kmeans_peak_mib(args.worker, args.kmeans_samples)
        return {f"kmeans{args.kmeans_samples}_peak_mib": peak, f"kmeans{args.kmeans_samples}_s": seconds}
    if args.task == "equivalence":
        return _equivalence(args.worker, args.exchange)
    side = _Side(args.worker)
    side.preinit_codebooks()
    out: dict = {}
    x, pos, types = _inputs(args.batch, args.channels, args.seconds, seed=1)
    if args.task == "profile":  # kernel-group shares of encode and of a train step
        xt, post, typest = _inputs(args.train_batch, args.channels, args.seconds, seed=2)
        for name, step in (("encode", lambda: side.encode(x, pos, types)),
                           ("train", lambda: side.train_step(xt, post, typest))):
            step()
            out.update({f"profile_{name}_{g}": v for g, v in _profile_shares(step).items()})
        return out
    windows = args.batch * args.channels * int(args.seconds * 256 // 512)
    side.encode(x, pos, types)  # warm-up (allocator, first calls)
    if args.task in ("all", "encode"):
        times, cpu = [], []
        for _ in range(args.iters):
            t0, c0 = time.perf_counter(), time.process_time()
            side.encode(x, pos, types)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out["encode_windows_per_s"] = windows / statistics.median(times)
        out["encode_windows_per_cpu_s"] = windows / statistics.median(cpu)
    if args.task in ("all", "train"):
        xt, post, typest = _inputs(args.train_batch, args.channels, args.seconds, seed=2)
        side.train_step(xt, post, typest)  # warm-up
        times, cpu = [], []
        for _ in range(args.iters):
            t0, c0 = time.perf_counter(), time.process_time()
            side.train_step(xt, post, typest)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out["train_step_s"] = statistics.median(times)
        out["train_step_cpu_s"] = statistics.median(cpu)
    return out


def _run_side(name: str, task: str, args: argparse.Namespace, stub_dir: str, kmeans_samples: int = 4096) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if name == "brainfm":
        python = sys.executable
    else:
        python = args.reference_python
        env["PYTHONPATH"] = os.pathsep.join([str(args.reference), stub_dir])
    cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--task", task, "--threads", str(args.threads),
           "--batch", str(args.batch), "--train-batch", str(args.train_batch), "--channels", str(args.channels),
           "--seconds", str(args.seconds), "--iters", str(args.iters), "--kmeans-samples", str(kmeans_samples), "--exchange", str(Path(stub_dir) / "exchange.pt")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0 and task == "kmeans":  # e.g. killed for memory: record it and go on
        return {f"kmeans{kmeans_samples}_exit_status": float(done.returncode)}
    if done.returncode != 0:
        raise SystemExit(f"{name} {task} failed (exit status {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, help="checkout of OpenTSLab/BrainOmni")
    parser.add_argument("--reference-python", help="python of the reference's virtual environment")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--batch", type=int, default=4, help="segments per encode call")
    parser.add_argument("--train-batch", type=int, default=2, help="segments per train step")
    parser.add_argument("--channels", type=int, default=19)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", default="equivalence,encode,train,kmeans")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--kmeans-sizes", type=int, nargs="+", default=[1024, 2048, 4096],
                        help="vectors sampled for k-means (the reference uses 4096; its memory grows linearly)")
    parser.add_argument("--kmeans-samples", type=int, default=4096, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["brainfm", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--task", default="all", help=argparse.SUPPRESS)
    parser.add_argument("--exchange", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.reference is None or args.reference_python is None:
        parser.error("--reference and --reference-python are required")
    results: dict[str, dict[str, list[float]]] = {"brainfm": {}, "reference": {}}
    equivalence = None
    with tempfile.TemporaryDirectory() as stub_dir:
        (Path(stub_dir) / "deepspeed").mkdir()
        (Path(stub_dir) / "deepspeed" / "__init__.py").write_text("")
        (Path(stub_dir) / "deepspeed" / "comm.py").write_text(_DEEPSPEED_COMM_STUB)
        tasks = [t for t in args.tasks.split(",") if t]
        if "equivalence" in tasks:  # outputs of the reference's weights through brainfm's key map
            tasks.remove("equivalence")
            _run_side("reference", "equivalence", args, stub_dir)
            equivalence = _run_side("brainfm", "equivalence", args, stub_dir)
            print(f"equivalence {equivalence}", file=sys.stderr, flush=True)
        for repeat in range(args.repeats):
            order = ("brainfm", "reference") if repeat % 2 == 0 else ("reference", "brainfm")
            for task in tasks:
                for samples in (args.kmeans_sizes if task == "kmeans" else [4096]):
                    for name in order:
                        measured = _run_side(name, task, args, stub_dir, samples)
                        for key, value in measured.items():
                            results[name].setdefault(key, []).append(value)
                        print(f"repeat {repeat} {task:6s} {name:9s} {measured}", file=sys.stderr, flush=True)
    summary: dict = {"equivalence": equivalence, "threads": args.threads, "repeats": args.repeats, "batch": args.batch,
                     "train_batch": args.train_batch, "channels": args.channels, "seconds": args.seconds,
                     "median": {side: {k: statistics.median(v) for k, v in r.items()} for side, r in results.items()},
                     "all": results}
    med = summary["median"]
    ratios = {}
    if "encode_windows_per_s" in med["brainfm"]:
        ratios["encode_speedup"] = med["brainfm"]["encode_windows_per_s"] / med["reference"]["encode_windows_per_s"]
    if "train_step_s" in med["brainfm"]:
        ratios["train_step_speedup"] = med["reference"]["train_step_s"] / med["brainfm"]["train_step_s"]
    if "encode_windows_per_cpu_s" in med["brainfm"]:
        ratios["encode_cpu_speedup"] = med["brainfm"]["encode_windows_per_cpu_s"] / med["reference"]["encode_windows_per_cpu_s"]
    if "train_step_cpu_s" in med["brainfm"]:
        ratios["train_step_cpu_speedup"] = med["reference"]["train_step_cpu_s"] / med["brainfm"]["train_step_cpu_s"]
    for key in med["brainfm"]:
        if key.startswith("kmeans") and key in med["reference"]:
            ratios[f"{key}_reference_over_brainfm"] = med["reference"][key] / max(med["brainfm"][key], 1e-3)
    summary["ratios"] = ratios
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        if summary["equivalence"]:
            print("equivalence", summary["equivalence"])
        for side in ("brainfm", "reference"):
            print(side, {k: round(v, 3) for k, v in med[side].items()})
        print("ratios", {k: round(v, 2) for k, v in ratios.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
