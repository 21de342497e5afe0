"""Data-loader stall of MEG-GPT ``tiny`` on CPU: the share of step time spent waiting for a batch.

Trains MEG-GPT ``tiny`` (tokens from a frozen sample tokenizer, computed in the training process
as in ``brainfm pretrain fit``) from a store with a ``WindowDataModule`` of ``--workers`` worker
processes, and times, per step, the wait for the next batch and the step itself (tokenise,
forward, backward, optimiser). Stall = total wait / (total wait + total step), after warm-up.

    python bench/meg_gpt_loader_stall.py --store /tmp/meggpt_heldout/store \\
        --tokenizer /tmp/meggpt_heldout/tokenizer/lightning_logs/version_0/checkpoints/*.ckpt
"""

from __future__ import annotations

import argparse
import glob
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--tokenizer", required=True, help="sample-tokenizer checkpoint (a glob is expanded)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window-s", type=float, default=3.24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from brainfm.checkpoint import FrozenTokenizer
    from brainfm.loading import WindowDataModule
    from brainfm.models.meg_gpt import MEGGPT, MEGGPT_PRESETS
    from brainfm.models.next_token import NextTokenLoss
    from brainfm.pretrain.facts import data_facts

    tokenizer = FrozenTokenizer(checkpoint=sorted(glob.glob(args.tokenizer))[-1])
    data = WindowDataModule(args.store, window_s=args.window_s, batch_size=args.batch_size, num_workers=args.workers,
                            persistent_workers=True, on_unknown_subject="ignore")
    model = MEGGPT(**MEGGPT_PRESETS["tiny"])
    model.check_data(data_facts(data.index), tokenizer)
    objective = NextTokenLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    wait = work = 0.0
    steps = 0
    loader = data.make_dataloader("train")
    while steps < args.steps + args.warmup:
        iterator = iter(loader)
        while steps < args.steps + args.warmup:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            t1 = time.perf_counter()
            loss = objective(batch, tokenizer=tokenizer, backbone=model)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            t2 = time.perf_counter()
            if steps >= args.warmup:
                wait, work = wait + (t1 - t0), work + (t2 - t1)
            steps += 1
    print(json.dumps({"workers": args.workers, "batch_size": args.batch_size, "steps": args.steps,
                      "mean_step_s": (wait + work) / args.steps, "mean_wait_s": wait / args.steps,
                      "stall": wait / (wait + work)}, indent=2))


if __name__ == "__main__":
    main()
