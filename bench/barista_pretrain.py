"""BaRISTA pretraining on real iEEG: validation loss on a held-out recording against the trivial predictor.

    python bench/barista_pretrain.py DATA_DIR OUT_DIR [--steps 150] [--eval-every 10] [--layers 12]

DATA_DIR is the folder of real test recordings (``bids/ieeg-ecog``: 78 ECoG contacts, 21.7 s;
``ieeg/persyst``: an 83-contact ECoG clip of 4.2 s from another patient, typed ECoG by a recipe
override). Both go through the ``barista`` preprocessing recipe into one store (2048 Hz,
regions from grid/shaft and positions). The model trains on the BIDS recording (3-s windows,
0.5-s stride, batch 2, AdamW lr 1e-3, one thread) and is evaluated every ``--eval-every``
steps on the held-out Persyst recording (3-s windows, 0.4-s stride) with fixed masks (seeded),
in the same run as the reference: the trivial predictor, i.e. the mean masked target latent
of the evaluation batch (``latent_baseline``) and, for the raw-patch term, 0 (MSE 1 for
per-window z-scored signal). Writes ``curve.csv`` and ``curve.png`` into OUT_DIR and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import torch

from brainfm.loading import WindowDataModule
from brainfm.models import BaristaBackbone, MaskedLatentObjective
from brainfm.preprocessing.run import preprocess

RECIPE = """\
extends: barista
name: barista-bench
overrides:
  - {match: "*.lay", channel_types: {"*": ecog}}
"""


def build_store(data: Path, out: Path) -> Path:
    """Both recordings through the barista recipe into one store."""
    folder = out / "input"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(data / "bids" / "ieeg-ecog", folder / "ieeg-ecog")
    shutil.copytree(data / "ieeg" / "persyst", folder / "persyst")
    (out / "recipe.yaml").write_text(RECIPE)
    store = out / "store.zarr"
    summary = preprocess(folder, store, recipe=out / "recipe.yaml")
    if summary.failed:
        raise SystemExit(f"preprocessing failed: {summary.failed}")
    return store


def loader(store: Path, dataset: str, stride_s: float, batch_size: int, shuffle: str) -> object:
    data = WindowDataModule(store, window_s=3.0, stride_s=stride_s, batch_size=batch_size, normalization="window",
                            channel_types=["seeg", "ecog", "dbs"], datasets=[dataset], split_unit="window",
                            val_fraction=0.0, shuffle=shuffle, seed=0)
    return data


def evaluate(backbone: BaristaBackbone, objective: MaskedLatentObjective, batches: list) -> dict[str, float]:
    backbone.eval()
    totals: dict[str, float] = {}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(123)  # the same masks at every evaluation
        for batch in batches:
            for key, value in objective(batch, backbone=backbone).items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(batches)
    backbone.train()
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    store = build_store(args.data, args.out)
    train = loader(store, "ieeg-ecog", 0.5, 2, "uniform")
    held = loader(store, "input", 0.4, 2, "none")  # plain files: the dataset is named after the folder
    held_batches = list(held.train_dataloader())
    n_regions = max(len(train.index.region_vocabulary), 8)
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(0)
        backbone = BaristaBackbone(n_layers=args.layers, n_regions=n_regions)
        objective = MaskedLatentObjective()
    optimizer = torch.optim.AdamW([*backbone.parameters(), *objective.parameters()], lr=1e-3, betas=(0.9, 0.95),
                                  weight_decay=1e-2)
    rows = []
    step, start = 0, time.perf_counter()
    rows.append({"step": 0, "seconds": 0.0, "train_loss": float("nan"), **evaluate(backbone, objective, held_batches)})
    while step < args.steps:
        for batch in train.train_dataloader():
            out = objective(batch, backbone=backbone)
            optimizer.zero_grad()
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_([*backbone.parameters(), *objective.parameters()], 1.0)
            optimizer.step()
            step += 1
            if step % args.eval_every == 0 or step == args.steps:
                held_out = evaluate(backbone, objective, held_batches)
                rows.append({"step": step, "seconds": time.perf_counter() - start, "train_loss": float(out["loss"]),
                             **held_out})
                print(f"step {step:4d}  {rows[-1]['seconds']:7.1f} s  train {float(out['loss']):.3f}  held-out latent "
                      f"{held_out['latent']:.4f} (trivial {held_out['latent_baseline']:.4f})  raw {held_out['raw']:.3f}",
                      flush=True)
            if step >= args.steps:
                break
    with (args.out / "curve.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)
    _figure(rows, args.out / "curve.png")
    print("\n| step | s | held-out latent MSE | trivial (mean latent) | ratio | held-out raw MSE (trivial 1) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['seconds']:.0f} | {row['latent']:.4f} | {row['latent_baseline']:.4f} | "
              f"{row['latent'] / row['latent_baseline']:.3f} | {row['raw']:.3f} |")


def _figure(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(steps, [r["latent"] for r in rows], label="BaRISTA (held-out)")
    left.plot(steps, [r["latent_baseline"] for r in rows], "--", label="trivial: mean latent")
    left.set(xlabel="step", ylabel="masked latent MSE", title="latent term")
    left.legend()
    right.plot(steps, [r["raw"] for r in rows], label="BaRISTA (held-out)")
    right.axhline(1.0, ls="--", color="C1", label="trivial: 0")
    right.set(xlabel="step", ylabel="masked raw-patch MSE", title="raw-patch term")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
