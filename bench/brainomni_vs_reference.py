"""BrainOmni-tiny stage 2 on CPU: brainfm against the reference (OpenTSLab/BrainOmni), same run, alternating.

Both models train on the cached token grid (batch 4 x 16 latents x 160 steps, 256-d quantised
features and 4 code levels of 512): one step = masking, 12 criss-cross blocks, the code head,
cross-entropy at masked positions, backward, AdamW. ``encode`` = all blocks but the last,
L2-normalised, in evaluation mode. The reference runs from its own checkout in its own virtual
environment (never imported by brainfm); its tokenizer is bypassed by handing it the same grid.

Set-up (once, outside the repository)::

    python3 -m venv /tmp/brainomni-ref/venv
    /tmp/brainomni-ref/venv/bin/pip install torch==2.13.0 einops einx vector-quantize-pytorch
    # a checkout of OpenTSLab/BrainOmni at /tmp/brainomni-ref/src

Run::

    OMP_NUM_THREADS=2 .venv/bin/python bench/brainomni_vs_reference.py --threads 2 --rounds 4 [--precision bf16] \\
        --reference-python /tmp/brainomni-ref/venv/bin/python --reference-src /tmp/brainomni-ref/src

Both models live in their own worker process (same thread count) for the whole run; the
timed steps alternate between them one by one (order flipped every round), so load changes on
a shared machine hit both; the summary gives the median of the paired per-round ratios.

``--baseline-src DIR`` adds a third worker: brainfm imported from ``DIR/brainfm`` (e.g. a
``git archive`` of the main branch's ``brainfm/`` folder) in this python, timed in the same
alternation, so a change to brainfm is measured against its previous state in the same run::

    mkdir -p /tmp/omni-main && git archive main brainfm | tar -x -C /tmp/omni-main
    ... bench/brainomni_vs_reference.py ... --baseline-src /tmp/omni-main
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

B, LATENTS, STEPS, TOKEN_DIM, CODES, LEVELS = 4, 16, 160, 256, 512, 4
#: Both clocks: wall-clock, and the CPU time of the worker process. With one thread on a shared,
#: overloaded machine the CPU time is the steadier measure of the work a step costs (the wall
#: clock also counts the time other jobs hold the core).
CLOCKS = ("wall", "cpu")


def _grid(torch):  # noqa: ANN001, ANN202
    g = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(B, LATENTS, STEPS, TOKEN_DIM, generator=g), dim=-1)
    indices = torch.randint(0, CODES, (B, LATENTS, STEPS, LEVELS), generator=g)
    return features, indices


PRECISION = "32"


def _time(step) -> tuple[float, float]:  # noqa: ANN001
    """Wall-clock and CPU seconds (this process, all threads) of one step."""
    import torch

    start, cpu = time.perf_counter(), time.process_time()
    # bf16: autocast on the CPU, as Lightning's precision="bf16-mixed" does (weights and optimiser in float32)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=PRECISION == "bf16"):
        step()
    return time.perf_counter() - start, time.process_time() - cpu


def worker_brainfm(compile_model: bool):  # noqa: ANN201
    import torch
    import torch.nn.functional as F

    from brainfm.models import BrainOmni, MaskedTokenObjective

    features, indices = _grid(torch)
    backbone = BrainOmni(dim=256, n_heads=8, depth=12, dropout=0.1, token_dim=TOKEN_DIM, n_latents=LATENTS)
    objective = MaskedTokenObjective(dim=256, n_codes=CODES, n_levels=LEVELS)

    class _Tokenizer:  # the latent-channel embeddings (the frozen tokenizer's queries)
        latent_queries = torch.randn(LATENTS, TOKEN_DIM)

    tokenizer = _Tokenizer()
    # the recipe's optimiser (configs/pretrain/brainomni.yaml: fused AdamW)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *objective.parameters()], lr=5e-4, betas=(0.9, 0.95),
                                  eps=1e-6, weight_decay=0.05, fused=True)
    if compile_model:
        backbone.blocks = torch.nn.ModuleList(torch.compile(block) for block in backbone.blocks)

    def train_step() -> None:
        loss = objective.grid_loss(features, indices, backbone, tokenizer)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def train() -> None:
        backbone.train()
        train_step()

    @torch.no_grad()
    def encode() -> None:
        backbone.eval()
        F.normalize(backbone(features, tokenizer, n_blocks=backbone.depth - 1), dim=-1, eps=1e-6)

    return train, encode


def worker_reference(src: str):  # noqa: ANN201
    import types

    import torch

    sys.path.insert(0, src)
    # DeepSpeed is only used by the reference's codebooks for collectives: torch.distributed has the same calls.
    deepspeed = types.ModuleType("deepspeed")
    deepspeed.comm = torch.distributed
    sys.modules["deepspeed"], sys.modules["deepspeed.comm"] = deepspeed, torch.distributed
    from brainomni.model import BrainOmni as Reference

    features, indices = _grid(torch)
    model = Reference(window_length=512, n_filters=32, ratios=[8, 4, 2], kernel_size=5, last_kernel_size=5,
                      n_dim=TOKEN_DIM, n_head=4, n_neuro=LATENTS, dropout=0.0, codebook_dim=TOKEN_DIM,
                      codebook_size=CODES, num_quantizers=LEVELS, rotation_trick=True, quantize_optimize_method="ema",
                      overlap_ratio=0.25, lm_dim=256, lm_head=8, lm_depth=12, lm_dropout=0.1, mask_ratio=0.5,
                      num_quantizers_used=LEVELS)
    for p in model.tokenizer.parameters():
        p.requires_grad = False
    model.tokenizer.tokenize = lambda x, pos, sensor_type, overlap_ratio: (features, indices)  # the cached grid
    x, pos, sensor_type = torch.zeros(B, 4, 512), torch.zeros(B, 4, 6), torch.zeros(B, 4, dtype=torch.long)
    # the reference's own (DeepSpeed's AdamW stand-in: torch's default, unfused, implementation)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, betas=(0.9, 0.95),
                                  eps=1e-6, weight_decay=0.05)

    def train_step() -> None:
        loss = model(x, pos, sensor_type)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def train() -> None:
        model.train()
        train_step()

    @torch.no_grad()
    def encode() -> None:
        model.eval()
        model.encode(x, pos, sensor_type)

    return train, encode


def serve(args: argparse.Namespace) -> None:
    """Worker: build the model, then time one ``train`` or ``encode`` step per line read from stdin."""
    import torch

    global PRECISION
    PRECISION = args.precision
    torch.set_num_threads(args.threads)
    if args.worker == "baseline":
        sys.path.insert(0, str(Path(args.baseline_src).resolve()))  # its brainfm/ before the installed one
    if args.worker in ("brainfm", "baseline"):
        train, encode = worker_brainfm(args.compile)
    else:
        train, encode = worker_reference(args.reference_src)
    steps = {"train": train, "encode": encode}
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(_time(steps[line.strip()])), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["brainfm", "baseline", "reference"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="timed steps of each model (alternating)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile brainfm's blocks (CPU inductor)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32",
                        help="float32, or bf16 autocast for both models")
    parser.add_argument("--reference-python", default="/tmp/brainomni-ref/venv/bin/python")
    parser.add_argument("--reference-src", default="/tmp/brainomni-ref/src")
    parser.add_argument("--baseline-src", default=None,
                        help="a folder holding another version's brainfm/ package, timed as a third worker")
    args = parser.parse_args()
    if args.worker is not None:
        serve(args)
        return 0

    tokens = B * LATENTS * STEPS
    common = ["--threads", str(args.threads), "--precision", args.precision, "--reference-src", args.reference_src,
              *(["--baseline-src", args.baseline_src] if args.baseline_src else [])]
    workers = {}
    sides = [("brainfm", sys.executable), ("reference", args.reference_python)]
    if args.baseline_src:
        sides.append(("baseline", sys.executable))
    for name, python in sides:
        extra = ["--compile"] if (name == "brainfm" and args.compile) else []
        workers[name] = subprocess.Popen([python, __file__, "--worker", name, *common, *extra], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent)
        assert workers[name].stdout.readline().strip() == "ready"

    def timed(name: str, what: str) -> tuple[float, float]:
        worker = workers[name]
        worker.stdin.write(what + "\n")
        worker.stdin.flush()
        wall, cpu = json.loads(worker.stdout.readline())
        return float(wall), float(cpu)

    print(f"precision {args.precision}, {args.threads} thread(s), batch {B} x {LATENTS} latents x {STEPS} steps")
    for what in ("train", "encode"):
        for _ in range(args.warmup):
            for name in workers:
                timed(name, what)
        seconds: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in workers} for clock in CLOCKS}
        for round_ in range(args.rounds):
            for name in (workers if round_ % 2 == 0 else reversed(list(workers))):
                for clock, value in zip(CLOCKS, timed(name, what), strict=True):
                    seconds[clock][name].append(value)
            print(f"  {what} round {round_ + 1}: " + ", ".join(
                f"{name} {tokens / seconds['wall'][name][-1]:.0f} tokens/s ({tokens / seconds['cpu'][name][-1]:.0f} "
                "per CPU-s)" for name in workers), flush=True)
        for clock in CLOCKS:
            per = "tokens/s" if clock == "wall" else "tokens per CPU-second"
            speeds = ", ".join(f"{name} {tokens / statistics.median(seconds[clock][name]):.0f}" for name in workers)
            print(f"{what:6s} ({clock}): {speeds} {per}", flush=True)
            for fast, slow in (("brainfm", "reference"), ("baseline", "reference"), ("brainfm", "baseline")):
                if fast in workers and slow in workers:
                    ratios = [s / f for f, s in zip(seconds[clock][fast], seconds[clock][slow], strict=True)]
                    print(f"        {fast} / {slow}: median of paired rounds {statistics.median(ratios):.2f}x "
                          f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
