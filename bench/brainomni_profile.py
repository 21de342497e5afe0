"""Share of matrix products in BrainOmni-tiny's training step and ``encode``, brainfm or the reference.

One side per process (run it once with each python), one thread, the grid and models of
``bench/brainomni_vs_reference.py``: a warm-up call, one unprofiled call (CPU seconds), then one
call under ``torch.profiler``. Printed as JSON: profiled total and matrix-product self CPU
seconds (``mm``, ``addmm``, ``bmm``, ``baddbmm``, fused CPU SDPA), their share, and the top
operators. The ceiling of a speed-up over the reference is (reference total) / (brainfm's
matrix-product time): what brainfm would reach if everything but its matrix products vanished.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/brainomni_profile.py brainfm
    OMP_NUM_THREADS=1 $REF/venv/bin/python bench/brainomni_profile.py reference --reference-src $REF/src
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def main(argv: list[str] | None = None) -> int:
    """Profile one side and print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=["brainfm", "reference"])
    parser.add_argument("--reference-src", default="/tmp/brainomni-ref/src")
    args = parser.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(Path(__file__).parent))
    import brainomni_vs_reference as bench

    torch.set_num_threads(1)
    train, encode = bench.worker_brainfm(False) if args.side == "brainfm" else bench.worker_reference(args.reference_src)
    out: dict = {}
    for name, step in (("train", train), ("encode", encode)):
        step()
        cpu = time.process_time()
        step()
        out[f"{name}_cpu_s_unprofiled"] = time.process_time() - cpu
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM)
        out[f"{name}_profiled_total_s"] = total / 1e6
        out[f"{name}_matrix_products_s"] = gemm / 1e6
        out[f"{name}_matrix_products_share"] = gemm / total
        out[f"{name}_top"] = [(e.key, round(e.self_cpu_time_total / total, 4))
                              for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
