"""BrainTokenizer ``tokenize`` with SEANet's chunked inference on and off, same process, alternating.

The windows go through the SEANet encoder in chunks of about ``brainfm.nn.seanet.CHUNK_BYTES``
(widest activation) while gradients are off on one thread; this script sets that size per
variant ("one batch" = no chunks) and times ``tokenize`` of the bench's encode input (2 segments
x 19 channels x 10 s = 190 windows of 512 samples, published size), checking that the code
indices are equal. Ratios are medians of the per-round paired ratios (CPU time and wall time).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/seanet_chunk_ab.py --rounds 12 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Time the variants and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import braintokenizer_vs_reference as bench

    from brainfm.nn import seanet

    torch.set_num_threads(args.threads)
    side = bench._Side("brainfm")
    side.preinit_codebooks()
    x, pos, types = bench._inputs(2, 19, 10.0, seed=1)
    sizes = {"one batch": 2**40, "chunks 4 MiB": 4 * 2**20, "chunks 2 MiB": 2 * 2**20}
    saved = seanet.CHUNK_BYTES
    outs = {}
    for name, size in sizes.items():
        seanet.CHUNK_BYTES = size
        outs[name] = side.encode(x, pos, types)
    print("indices equal:", all(torch.equal(o, outs["one batch"]) for o in outs.values()))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sizes}
    for round_ in range(args.rounds + 1):  # round 0: warm-up
        for name in (list(sizes) if round_ % 2 == 0 else list(sizes)[::-1]):
            seanet.CHUNK_BYTES = sizes[name]
            cpu, wall = time.process_time(), time.perf_counter()
            side.encode(x, pos, types)
            if round_:
                times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    seanet.CHUNK_BYTES = saved
    base = times["one batch"]
    for name, values in times.items():
        cpu_ratio = statistics.median(o[0] / n[0] for o, n in zip(base, values, strict=True))
        wall_ratio = statistics.median(o[1] / n[1] for o, n in zip(base, values, strict=True))
        print(f"{name:13s} CPU {statistics.median(v[0] for v in values) * 1e3:6.0f} ms, wall "
              f"{statistics.median(v[1] for v in values) * 1e3:6.0f} ms; one batch / this: CPU {cpu_ratio:.3f}x, "
              f"wall {wall_ratio:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
