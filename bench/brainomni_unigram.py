"""The trivial predictor of a BrainOmni run: unigram code frequencies of the training split, scored on validation.

Cross-entropy (nats) of every RVQ level's validation codes under that level's training
frequencies (add-one smoothed), averaged over levels as ``val/loss`` averages over positions and
levels. A stage-2 run has learned something only when its ``val/loss`` falls below this.

Run with the data settings of the run (same store, window, split)::

    .venv/bin/python bench/brainomni_unigram.py TOKENIZER.ckpt STORE --window-s 2.0 --val-fraction 0.25 \\
        --on-unknown-subject warn [--metrics RUN/metrics.csv]
"""

from __future__ import annotations

import argparse
import csv

import torch

from brainfm.checkpoint import FrozenTokenizer
from brainfm.loading import WindowDataModule


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer")
    parser.add_argument("store")
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--on-unknown-subject", default="raise")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--metrics", help="the run's metrics.csv: print its val/loss curve beside the baseline")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = FrozenTokenizer(checkpoint=args.tokenizer)
    data = WindowDataModule(args.store, window_s=args.window_s, batch_size=16, normalization="sensortype",
                            channel_batching="bucket", channel_types=["eeg", "mag", "grad"],
                            val_fraction=args.val_fraction, on_unknown_subject=args.on_unknown_subject)
    counts: dict[str, torch.Tensor] = {}
    n_latents = tokenizer.n_latents
    for split in ("train", "val"):
        total = torch.zeros(n_latents, tokenizer.n_levels, tokenizer.vocab_size)  # by latent channel and level
        for batch in data.make_dataloader(split, shuffle=False):
            _, codes = tokenizer.tokenize(batch, overlap=args.overlap)  # (B, C', W, levels)
            for latent in range(n_latents):
                for level in range(tokenizer.n_levels):
                    total[latent, level] += torch.bincount(codes[:, latent, :, level].flatten(),
                                                           minlength=tokenizer.vocab_size)
        counts[split] = total

    def cross_entropy(train: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        probability = (train + 1) / (train + 1).sum(-1, keepdim=True)  # add-one smoothing
        return -(val * probability.log()).sum(-1) / val.sum(-1)

    per_level = cross_entropy(counts["train"].sum(0), counts["val"].sum(0))
    # the model knows each position's latent channel (its embedding): frequencies per latent channel
    per_latent = cross_entropy(counts["train"], counts["val"])  # (C', levels)
    weights = counts["val"].sum(-1)
    recordings = sorted({data.split("val").layouts[int(r)].recording_id for r in data.split("val").recording})
    print(f"held-out recordings: {', '.join(recordings)}")
    print(f"unigram cross-entropy per level: {[round(float(v), 3) for v in per_level]}; "
          f"mean {float(per_level.mean()):.3f} nats")
    by_level = (per_latent * weights).sum(0) / weights.sum(0)
    print(f"unigram per latent channel, per level: {[round(float(v), 3) for v in by_level]}; "
          f"mean {float(by_level.mean()):.3f} nats")
    if args.metrics:
        with open(args.metrics) as file:
            for row in csv.DictReader(file):
                if row.get("val/loss"):
                    print(f"epoch {row['epoch']:>3} step {row['step']:>5}: val/loss {float(row['val/loss']):.3f}, "
                          f"val/acc {float(row['val/acc']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
