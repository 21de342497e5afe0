"""How predictable is a masked iEEG channel from the other channels of its window? (BaRISTA, issue 9)

    python bench/barista_predictability.py DATA_DIR OUT_DIR [--band-hz 200] [--tail-s 6.2]

A reference for ``bench/barista_pretrain.py``: with channel masking, all 12 patches of a masked
channel are hidden, so the only information about it is in the other channels at the same
time. On the same stores as the pretraining benchmark (the BIDS ECoG recording: training part
and held-out tail; per-window z-scored 3-s windows at 2048 Hz), this fits, for every channel,
a ridge regression of its samples on the simultaneous samples of the other channels (all of
them, or a random visible half as under 50 % masking) on the training windows and scores it on
the held-out tail: R^2 = 1 - MSE / MSE of predicting 0 (the window mean). It also prints the
channel correlations and the region sizes the ``parcels`` encoding sees. No model is trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from barista_pretrain import build_store, loader


def windows(store: Path, stride_s: float, vocabulary: Path, frozen: bool) -> tuple[np.ndarray, np.ndarray]:
    """Signal (n_windows, C, T) and region ids (C,) of a store's 3-s windows."""
    data = loader(store, stride_s, "none", vocabulary, frozen)
    batches = list(data.train_dataloader())
    return torch.cat([b.signal for b in batches]).numpy(), batches[0].region_ids[0].numpy()


def ridge_r2(train: np.ndarray, test: np.ndarray, target: int, inputs: np.ndarray, lam: float) -> tuple[float, float]:
    """R^2 of channel ``target`` from channels ``inputs`` (samples pooled over windows), train and test."""
    x, y = train[inputs].T, train[target]
    w = np.linalg.solve(x.T @ x + lam * np.eye(len(inputs)), x.T @ y)
    fit = 1 - np.mean((x @ w - y) ** 2) / np.mean(y**2)
    held = 1 - np.mean((test[inputs].T @ w - test[target]) ** 2) / np.mean(test[target] ** 2)
    return float(fit), float(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--band-hz", type=float, default=200.0)
    parser.add_argument("--tail-s", type=float, default=6.2)
    parser.add_argument("--ridge", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    bids = args.data / "bids" / "ieeg-ecog"
    split = 21.7 - args.tail_s
    train_store = build_store([bids], args.out, "train", args.band_hz, (0.0, split))
    tail_store = build_store([bids], args.out, "tail", args.band_hz, (split, None))
    vocabulary = args.out / "vocabulary.json"
    vocabulary.unlink(missing_ok=True)
    train, regions = windows(train_store, 0.5, vocabulary, frozen=False)
    tail, _ = windows(tail_store, 0.4, vocabulary, frozen=True)
    a, b = np.concatenate(list(train), axis=1), np.concatenate(list(tail), axis=1)  # (C, n * T)
    n_chans = a.shape[0]
    corr = np.abs(np.corrcoef(a))
    np.fill_diagonal(corr, np.nan)
    _, sizes = np.unique(regions[regions > 1], return_counts=True)
    print(f"{len(train)} training and {len(tail)} held-out windows, {n_chans} channels; "
          f"regions: {len(sizes)} (channels per region: median {np.median(sizes):g}, max {sizes.max()})")
    print(f"|correlation| between channels: median {np.nanmedian(corr):.3f}; "
          f"best partner per channel: median {np.nanmedian(np.nanmax(corr, axis=1)):.3f}")
    everyone = [ridge_r2(a, b, c, np.array([k for k in range(n_chans) if k != c]), args.ridge) for c in range(n_chans)]
    rng = np.random.default_rng(0)
    half = []
    for _ in range(5):
        visible = rng.permutation(n_chans)[: n_chans // 2]
        half += [ridge_r2(a, b, c, visible, args.ridge) for c in range(n_chans) if c not in set(visible)]
    print("\n| inputs | R^2 training windows | R^2 held-out tail |")
    print("|---|---|---|")
    for name, rows in (("all other channels", everyone), ("a random visible half (5 draws)", half)):
        print(f"| {name} | {np.mean([r[0] for r in rows]):.3f} | {np.mean([r[1] for r in rows]):.3f} |")


if __name__ == "__main__":
    main()
