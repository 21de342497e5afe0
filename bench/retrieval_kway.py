"""Time the k-way evaluator against a per-trial Python loop on the same features.

    python bench/retrieval_kway.py [--n-trials 10000] [--repeats 3]

200 test items with 1024-d features (the THINGS-EEG2 test gallery and the OpenCLIP ViT-H-14
width). The loop is what the reference evaluation does: per trial, draw k - 1 distractors with
``Generator.choice`` and take the argmax over the candidates' scores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from brainfm.downstream.retrieval import k_way_accuracy


def _loop(brain: np.ndarray, concepts: np.ndarray, k: int, n_trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    n_items = brain.shape[0]
    hits = 0
    for trial in range(n_trials):
        item = trial % n_items
        others = np.delete(np.arange(n_items), item)
        candidates = np.concatenate([[item], rng.choice(others, size=k - 1, replace=False)])
        scores = concepts[candidates] @ brain[item]
        hits += int(candidates[np.argmax(scores)] == item)
    return hits / n_trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    concepts = rng.standard_normal((200, 1024))
    brain = concepts + 30.0 * rng.standard_normal((200, 1024))
    print(f"{'k':>4} {'brainfm s':>10} {'loop s':>8} {'loop / brainfm':>15} {'top1':>7} {'loop top1':>9}")
    for k in (2, 4, 10, 50, 200):
        ours, loop = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = k_way_accuracy(brain, concepts, k=k, n_trials=args.n_trials, seed=42)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            loop_top1 = _loop(brain, concepts, k, args.n_trials, seed=42)
            loop.append(time.perf_counter() - start)
        ours_s, loop_s = float(np.median(ours)), float(np.median(loop))
        print(f"{k:>4} {ours_s:>10.3f} {loop_s:>8.3f} {loop_s / ours_s:>15.1f} {result['top1']:>7.4f} {loop_top1:>9.4f}")


if __name__ == "__main__":
    main()
