"""brainfm's HALS NTF against tensorly 0.10's ``non_negative_parafac_hals``, same run.

Both solvers get the same float32 tensor, rank, random initial factors, iteration cap and
stopping tolerance (tensorly's rule: stop when the relative error changes by less than
``tol``). Each fit runs in a fresh process that loads the tensor first, so the peak RSS of
the process (``ru_maxrss``) minus the RSS after loading is the solver's own memory. Cases:

- ``synthetic``: T = 2,000, W = 8, P = 4,950 (N = 100 nodes), planted rank-8 factors + noise;
- ``real``: the coactivation tensor of the eegmat recordings (8 subjects' rest and arithmetic
  EEG, 19 channels -> 171 pairs; time mode ``concatenated``, 60 s per subject at 128 Hz),
  preprocessed from ``--eegmat`` (skipped when the folder is missing).

Then the time of a rank sweep (brainfm only) on the real tensor.

Usage::

    python bench/connectome_ntf.py --repeats 3 [--eegmat ../shared/data/eeg/eegmat] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _synthetic(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    shape, rank = (2000, 8, 4950), 8
    factors = [rng.random((n, rank)).astype(np.float32) ** 4 for n in shape]  # sparse-ish, non-negative
    tensor = np.einsum("tr,wr,pr->twp", *factors, optimize=True).astype(np.float32)
    tensor += 0.05 * tensor.std() * np.abs(rng.standard_normal(tensor.shape, dtype=np.float32))
    np.save(path, tensor)


def _real(path: Path, eegmat: Path, workdir: Path) -> bool:
    from brainfm.downstream.connectome import ConnectomeConfig
    from brainfm.downstream.connectome.nodes import node_signals
    from brainfm.downstream.connectome.pipeline import _tensor
    from brainfm.preprocessing.run import preprocess
    from brainfm.store.reader import open_store

    if not eegmat.is_dir():
        return False
    store = workdir / "eegmat.zarr"
    if not store.exists():
        preprocess(eegmat, store, recipe="default", pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)", progress=False)
    config = ConnectomeConfig(sfreq=128.0, max_seconds=60.0)
    nodes = node_signals(open_store(store), sfreq=config.sfreq, max_seconds=config.max_seconds)
    tensor, _ = _tensor(nodes, config)
    np.save(path, tensor)
    return True


def _worker(solver: str, tensor_path: str, rank: int, seed: int, n_iter_max: int, tol: float) -> dict:
    """One fit in this process; prints a JSON line."""
    import torch

    tensor = np.load(tensor_path)
    loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from brainfm.downstream.connectome.ntf import random_init

    init = random_init(tensor.shape, rank, seed, norm=float(np.linalg.norm(tensor.ravel())))
    start = time.perf_counter()
    if solver == "brainfm":
        from brainfm.downstream.connectome.ntf import ntf_hals

        fit = ntf_hals(torch.from_numpy(tensor), rank, init=init, n_iter_max=n_iter_max, tol=tol)
        factors, n_iter = [f.numpy() for f in fit.factors], fit.n_iter
    else:
        import tensorly as tl
        from tensorly.cp_tensor import CPTensor
        from tensorly.decomposition import non_negative_parafac_hals

        tl.set_backend("numpy")
        cp, errors = non_negative_parafac_hals(
            tensor, rank, init=CPTensor((np.ones(rank, np.float32), [f.numpy() for f in init])),
            n_iter_max=n_iter_max, tol=tol, return_errors=True,
        )
        factors, n_iter = [np.asarray(f) for f in cp.factors], len(errors)
        factors[0] = factors[0] * np.asarray(cp.weights)[None, :]
    seconds = time.perf_counter() - start
    model = np.einsum("tr,wr,pr->twp", *factors, optimize=True)
    error = float(np.linalg.norm((tensor - model).ravel()) / np.linalg.norm(tensor.ravel()))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"solver": solver, "seconds": seconds, "n_iter": n_iter, "error": error,
            "memory_mib": (peak_kb - loaded_kb) / 1024, "threads": torch.get_num_threads()}


def _run(solver: str, tensor: Path, rank: int, seed: int, n_iter_max: int, tol: float) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", solver, str(tensor), str(rank), str(seed), str(n_iter_max), str(tol)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--n-iter-max", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--eegmat", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/eeg/eegmat")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--sweep-ranks", type=int, nargs="+", default=list(range(2, 11)))
    parser.add_argument("--sweep-restarts", type=int, default=10)
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        solver, path, rank, seed, n_iter_max, tol = args.worker
        print(json.dumps(_worker(solver, path, int(rank), int(seed), int(n_iter_max), float(tol))))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ntf-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cases = {"synthetic (T=2000, W=8, P=4950)": workdir / "synthetic.npy"}
    if not cases["synthetic (T=2000, W=8, P=4950)"].exists():
        _synthetic(cases["synthetic (T=2000, W=8, P=4950)"])
    real = workdir / "real.npy"
    if real.exists() or _real(real, args.eegmat, workdir):
        shape = np.load(real, mmap_mode="r").shape
        cases[f"real eegmat (T={shape[0]}, W={shape[1]}, P={shape[2]})"] = real
    print(f"rank {args.rank}, n_iter_max {args.n_iter_max}, tol {args.tol}, {args.repeats} repeats (seeds 0..)")
    header = f"{'case':<40} {'solver':<9} {'seconds':>8} {'iters':>6} {'rel. error':>10} {'MiB':>7}   time ratio  error diff   memory ratio"
    print(header)
    for name, path in cases.items():
        rows = {"brainfm": [], "tensorly": []}
        for seed in range(args.repeats):
            for solver in ("tensorly", "brainfm"):  # interleaved, same seed: the same initial factors
                rows[solver].append(_run(solver, path, args.rank, seed, args.n_iter_max, args.tol))
        ratios = [t["seconds"] / b["seconds"] for b, t in zip(rows["brainfm"], rows["tensorly"], strict=True)]
        diffs = [b["error"] - t["error"] for b, t in zip(rows["brainfm"], rows["tensorly"], strict=True)]
        memory = [b["memory_mib"] / max(t["memory_mib"], 1e-9) for b, t in zip(rows["brainfm"], rows["tensorly"], strict=True)]
        for solver in ("tensorly", "brainfm"):
            med = {k: statistics.median(r[k] for r in rows[solver]) for k in ("seconds", "n_iter", "error", "memory_mib")}
            extra = "" if solver == "tensorly" else (
                f"   {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                f"  {statistics.median(diffs):+.1e}   {statistics.median(memory):.2f}"
            )
            print(f"{name:<40} {solver:<9} {med['seconds']:>8.2f} {med['n_iter']:>6.0f} {med['error']:>10.5f} "
                  f"{med['memory_mib']:>7.0f}{extra}")
    print("time ratio = tensorly seconds / brainfm seconds (higher: brainfm faster); error diff = brainfm - tensorly")
    if real in cases.values():
        import torch

        from brainfm.downstream.connectome.rank_selection import rank_sweep

        tensor = torch.from_numpy(np.load(real))
        sweep = rank_sweep(tensor, args.sweep_ranks, n_restarts=args.sweep_restarts, n_iter_max=300, tol=args.tol)
        fits = len(args.sweep_ranks) * args.sweep_restarts
        print(f"rank sweep on the real tensor: ranks {args.sweep_ranks[0]}..{args.sweep_ranks[-1]} x "
              f"{args.sweep_restarts} restarts = {fits} fits in {sweep.seconds:.1f} s; chosen rank {sweep.chosen_rank}; "
              f"errors {[round(e, 4) for e in sweep.best_errors]}; stability {[round(s, 2) for s in sweep.stability]}")


if __name__ == "__main__":
    main()
