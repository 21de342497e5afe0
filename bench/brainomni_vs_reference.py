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

    OMP_NUM_THREADS=2 .venv/bin/python bench/brainomni_vs_reference.py --threads 2 --rounds 3 \\
        --reference-python /tmp/brainomni-ref/venv/bin/python --reference-src /tmp/brainomni-ref/src

Each round runs brainfm then the reference (each in a fresh process, the same thread count) and
prints tokens per second; the summary gives the median ratio brainfm / reference.
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


def _grid(torch):  # noqa: ANN001, ANN202
    g = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(B, LATENTS, STEPS, TOKEN_DIM, generator=g), dim=-1)
    indices = torch.randint(0, CODES, (B, LATENTS, STEPS, LEVELS), generator=g)
    return features, indices


PRECISION = "32"


def _time(step, n_warmup: int, n_steps: int) -> float:  # noqa: ANN001
    import torch

    def run() -> None:
        # bf16: autocast on the CPU, as Lightning's precision="bf16-mixed" does (weights and optimiser in float32)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=PRECISION == "bf16"):
            step()

    for _ in range(n_warmup):
        run()
    start = time.perf_counter()
    for _ in range(n_steps):
        run()
    return (time.perf_counter() - start) / n_steps


def worker_brainfm(n_warmup: int, n_steps: int, compile_model: bool) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from brainfm.models import BrainOmni, MaskedTokenObjective

    features, indices = _grid(torch)
    backbone = BrainOmni(dim=256, n_heads=8, depth=12, dropout=0.1, token_dim=TOKEN_DIM, n_latents=LATENTS)
    objective = MaskedTokenObjective(dim=256, n_codes=CODES, n_levels=LEVELS)

    class _Tokenizer:  # the latent-channel embeddings (the frozen tokenizer's queries)
        latent_queries = torch.randn(LATENTS, TOKEN_DIM)

    tokenizer = _Tokenizer()
    optimizer = torch.optim.AdamW([*backbone.parameters(), *objective.parameters()], lr=5e-4, betas=(0.9, 0.95))
    if compile_model:
        backbone.blocks = torch.nn.ModuleList(torch.compile(block) for block in backbone.blocks)

    def train_step() -> None:
        loss = objective.grid_loss(features, indices, backbone, tokenizer)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    backbone.train()
    train = _time(train_step, n_warmup, n_steps)
    backbone.eval()

    @torch.no_grad()
    def encode() -> None:
        F.normalize(backbone(features, tokenizer, n_blocks=backbone.depth - 1), dim=-1, eps=1e-6)

    return {"train_s": train, "encode_s": _time(encode, n_warmup, n_steps)}


def worker_reference(src: str, n_warmup: int, n_steps: int) -> dict[str, float]:
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
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, betas=(0.9, 0.95))

    def train_step() -> None:
        loss = model(x, pos, sensor_type)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train = _time(train_step, n_warmup, n_steps)
    model.eval()

    @torch.no_grad()
    def encode() -> None:
        model.encode(x, pos, sensor_type)

    return {"train_s": train, "encode_s": _time(encode, n_warmup, n_steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["brainfm", "reference"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile brainfm's blocks (CPU inductor)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32",
                        help="float32, or bf16 autocast for both models")
    parser.add_argument("--reference-python", default="/tmp/brainomni-ref/venv/bin/python")
    parser.add_argument("--reference-src", default="/tmp/brainomni-ref/src")
    args = parser.parse_args()
    if args.worker is not None:
        import torch

        torch.set_num_threads(args.threads)
        global PRECISION
        PRECISION = args.precision
        if args.worker == "brainfm":
            result = worker_brainfm(args.warmup, args.steps, args.compile)
        else:
            result = worker_reference(args.reference_src, args.warmup, args.steps)
        print(json.dumps(result))
        return 0

    tokens = B * LATENTS * STEPS
    common = ["--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--precision", args.precision]
    runs: dict[str, list[dict[str, float]]] = {"brainfm": [], "reference": []}
    for round_ in range(args.rounds):
        for name, python in (("brainfm", sys.executable), ("reference", args.reference_python)):
            extra = ["--compile"] if (name == "brainfm" and args.compile) else []
            command = [python, __file__, "--worker", name, *common, *extra, "--reference-src", args.reference_src]
            out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[name].append(result)
            print(f"round {round_ + 1} {name:9s}: train {tokens / result['train_s']:7.0f} tokens/s, "
                  f"encode {tokens / result['encode_s']:7.0f} tokens/s", flush=True)
    for what in ("train_s", "encode_s"):
        ratios = [r[what] / b[what] for b, r in zip(runs["brainfm"], runs["reference"], strict=True)]
        mine = statistics.median(tokens / r[what] for r in runs["brainfm"])
        theirs = statistics.median(tokens / r[what] for r in runs["reference"])
        print(f"{what[:-2]:6s}: brainfm {mine:7.0f} tokens/s, reference {theirs:7.0f} tokens/s, "
              f"ratio (median of rounds) {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
