"""Synthetic retrieval check: 10-way top-1 on held-out concepts against SNR.

    python bench/retrieval_synthetic.py [--snrs -20 -15 -10 -5 0 5] [--steps 200]

Trials are generated from 64-d concept embeddings by one fixed random mixing with 1/f noise
(``brainfm.downstream.retrieval.synthetic``): 250 concepts x 4 trials, 8 channels x 64 samples;
200 concepts train, 50 are held out. A width-32 adapter is trained 200 steps (batch 64, AdamW
lr 1e-3, one thread) in each loss mode. The reference, fitted in the same run on the same
split, is ridge regression from the flattened trials to the embeddings (scikit-learn
``RidgeCV``). Scores: k_way_accuracy over 10,000 trials of single held-out trials.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from brainfm.downstream.retrieval import k_way_accuracy
from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.synthetic import make_synthetic_retrieval
from brainfm.downstream.retrieval.training import encode, seeded_init, train_contrastive

CONFIG = AdapterConfig(
    n_chans=8, n_times=64, d_model=32, n_heads=2, d_ff=32, temporal_kernel=5, pool_kernel=5,
    pool_stride=2, n_filters=8, out_dim=64,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snrs", type=float, nargs="+", default=[-20, -15, -10, -5, 0, 5])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--modes", nargs="+", default=["standard", "brainflora"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = f"{'SNR dB':>7} {'ridge top1':>10}" + "".join(f" {m + ' top1':>16} {'/ ridge':>7}" for m in args.modes)
    print(header + f" {'untrained top1':>14} {'train s':>8}")
    for snr in args.snrs:
        data = make_synthetic_retrieval(n_concepts=250, n_repeats=4, snr_db=snr, seed=0)
        train = data.concept_ids < 200
        held_out = data.concept_ids[~train]
        truth = data.targets[held_out]
        flat = data.signals.reshape(len(data.signals), -1)
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(flat[train], data.targets[data.concept_ids[train]])
        ridge_top1 = k_way_accuracy(ridge.predict(flat[~train]), truth, k=10, n_trials=10_000)["top1"]
        row = f"{snr:>7.0f} {ridge_top1:>10.3f}"
        signals, targets = torch.from_numpy(data.signals), torch.from_numpy(data.targets)
        seconds = []
        for mode in args.modes:
            model = seeded_init(lambda: ModalityAdapter(CONFIG), seed=0)
            if mode == args.modes[0]:
                untrained = k_way_accuracy(encode(model, signals[~train]), truth, k=10, n_trials=10_000)["top1"]
            start = time.perf_counter()
            train_contrastive(
                model, ContrastiveLoss(mode), signals[train], targets[data.concept_ids[train]],
                n_steps=args.steps, batch_size=64, lr=1e-3,
            )
            seconds.append(time.perf_counter() - start)
            top1 = k_way_accuracy(encode(model, signals[~train]), truth, k=10, n_trials=10_000)["top1"]
            row += f" {top1:>16.3f} {top1 / ridge_top1:>7.2f}"
        print(row + f" {untrained:>14.3f} {np.mean(seconds):>8.1f}", flush=True)


if __name__ == "__main__":
    main()
