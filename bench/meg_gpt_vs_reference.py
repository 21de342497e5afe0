"""MEG-GPT training and forward throughput: brainfm's re-release profile vs the reference PyTorch code.

The reference (OHBA-analysis/MEG-GPT, MIT) runs only here, from a separate environment outside
the repository; nothing of it is copied into brainfm. Both models are built in the reference's
``models/meg-gpt/config.yaml`` configuration (100-token context, 52 channels, 66 tokens, width
256, five GASP layers, 621 recordings, loss on the last 16 positions; the recording-embedding
initialisation file is left out) and get the same random tokens, in the same process, with the
same thread count and precision (bf16-mixed autocast by default, the reference config's
``precision``; ``--precision 32`` for float32), timed alternately. A training step is forward + loss + backward + AdamW step.
Input tokens per second count batch x channels x context.

Set up the reference environment once (it reuses brainfm's torch through a ``.pth`` file)::

    python3 -m venv /work/bench_envs/meggpt_ref
    echo "import site; site.addsitedir('$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')')" \\
        > "$(ls -d /work/bench_envs/meggpt_ref/lib/python3.*/site-packages)/brainfm_venv.pth"
    /work/bench_envs/meggpt_ref/bin/pip install omegaconf seaborn
    mkdir -p /work/bench_envs/meggpt_ref/src
    git -C <MEG-GPT clone> archive HEAD meg_gpt models/meg-gpt/config.yaml | tar x -C /work/bench_envs/meggpt_ref/src

then::

    /work/bench_envs/meggpt_ref/bin/python bench/meg_gpt_vs_reference.py --reference /work/bench_envs/meggpt_ref/src
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def reference_model(src: Path) -> torch.nn.Module:
    sys.path.insert(0, str(src))
    from meg_gpt.configs import get_config
    from meg_gpt.models.meg_gpt import MEGGPT
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(src / "models" / "meg-gpt" / "config.yaml").model_config
    cfg.input_embedding.extra_label_specs[0].init_weights = None  # the precomputed file is not published
    return MEGGPT(get_config(cfg))


def brainfm_model() -> tuple[torch.nn.Module, torch.nn.Module]:
    from brainfm.models.meg_gpt import MEGGPT, MEGGPT_PRESETS
    from brainfm.models.next_token import NextTokenLoss

    return MEGGPT(66, 52, 621, recording_dim=66, **MEGGPT_PRESETS["meggpt-v0"]), NextTokenLoss(n_loss=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="folder holding meg_gpt/ and models/")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round and model")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="bf16-mixed",
                        help="bf16-mixed: both under torch.autocast(bfloat16), as Lightning runs the reference's "
                             "config (precision: bf16-mixed); 32: float32")
    parser.add_argument("--unfused", action="store_true",
                        help="brainfm with the reference's foreach AdamW instead of its recipe's fused AdamW")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="also print torch.profiler's top ROWS operators (self CPU time) of one training step "
                             "of each model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from brainfm.loading.batch import Batch

    g = torch.Generator().manual_seed(0)
    b, c, s = args.batch, 52, 100
    tokens = torch.randint(1, 66, (b, c, s + 1), generator=g)  # (B, C, S + 1)
    labels = torch.randint(0, 621, (b,), generator=g)
    ours, objective = brainfm_model()
    ref = reference_model(args.reference)
    n_ours, n_ref = sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in ref.parameters())
    batch = Batch(signal=torch.zeros(b, c, s + 1), channel_mask=torch.ones(b, c, dtype=torch.bool),
                  sensor_pos=torch.zeros(b, c, 6), sensor_type=torch.ones(b, c, dtype=torch.long),
                  pos_mask=torch.ones(b, c, dtype=torch.bool), frame_ids=torch.zeros(b, c, dtype=torch.long),
                  channel_ids=torch.arange(c).expand(b, c), region_ids=torch.zeros(b, c, dtype=torch.long),
                  subject_ids=torch.zeros(b, dtype=torch.long), recording_ids=labels,
                  start=torch.zeros(b, dtype=torch.long))
    batch.codes = tokens
    ref_x = tokens.transpose(1, 2).contiguous()  # (B, S + 1, C), the reference's layout
    ref_labels = [labels[:, None].expand(b, s + 1)]
    # each side's own optimiser: brainfm's recipe (reference_v0.yaml) uses the fused AdamW kernel
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5, betas=(0.9, 0.98), weight_decay=0.01,
                                 fused=not args.unfused)
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-5, betas=(0.9, 0.98), weight_decay=0.01)

    def train_ours() -> float:
        loss = objective(batch, backbone=ours)["loss"]
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        opt_ours.step()
        return loss.item()

    def train_ref() -> float:
        loss = ref(ref_x, ref_labels)["total_loss"]
        opt_ref.zero_grad(set_to_none=True)
        loss.backward()
        opt_ref.step()
        return loss.item()

    def forward_ours() -> None:
        with torch.no_grad():
            ours(tokens[..., :s], batch.channel_ids, labels)

    def forward_ref() -> None:
        with torch.no_grad():
            ref(ref_x, ref_labels)

    def timed(fn, n: int) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed"):
            for _ in range(n):
                fn()
        return (time.perf_counter() - start) / n

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        ours.train(), ref.train()
        timed(train_ours, 1), timed(train_ref, 1)  # warm-up
        for name, fn in (("brainfm", train_ours), ("reference", train_ref)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                seconds = timed(fn, 1)
            print(f"{name}: one training step, {seconds:.2f} s", file=sys.stderr)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile,
                                            max_name_column_width=45), file=sys.stderr)
    results: dict[str, list[float]] = {"train_ours": [], "train_ref": [], "fwd_ours": [], "fwd_ref": []}
    for mode, (a, r) in (("train", (train_ours, train_ref)), ("fwd", (forward_ours, forward_ref))):
        ours.train(mode == "train")
        ref.train(mode == "train")
        timed(a, 1), timed(r, 1)  # warm-up
        for _ in range(args.rounds):  # alternating
            results[f"{mode}_ours"].append(timed(a, args.steps))
            results[f"{mode}_ref"].append(timed(r, args.steps))
    per_step = {k: statistics.median(v) for k, v in results.items()}
    n_tokens = b * c * s
    summary = {
        "batch": b, "threads": args.threads, "precision": args.precision, "params_brainfm": n_ours, "params_reference": n_ref,
        "train_tokens_per_s_brainfm": n_tokens / per_step["train_ours"],
        "train_tokens_per_s_reference": n_tokens / per_step["train_ref"],
        "train_speedup": per_step["train_ref"] / per_step["train_ours"],
        "forward_tokens_per_s_brainfm": n_tokens / per_step["fwd_ours"],
        "forward_tokens_per_s_reference": n_tokens / per_step["fwd_ref"],
        "forward_speedup": per_step["fwd_ref"] / per_step["fwd_ours"],
        "per_round_train_ratio": [r / o for o, r in zip(results["train_ours"], results["train_ref"], strict=True)],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
