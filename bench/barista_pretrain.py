"""BaRISTA pretraining on real iEEG: validation loss on a held-out recording against the trivial predictor.

    python bench/barista_pretrain.py DATA_DIR OUT_DIR [--steps 150] [--eval-every 10] [--layers 12]
        [--lr 3e-4] [--warmup 0.05] [--target tokenizer_sg|ema_teacher] [--target-norm none|token]
        [--band-hz 200] [--cpu-minutes 30]

DATA_DIR is the folder of real test recordings (``bids/ieeg-ecog``: 78 ECoG contacts, 21.7 s
at 999 Hz; ``ieeg/persyst``: an 83-contact ECoG clip of 4.2 s at 200 Hz from another patient,
typed ECoG by a recipe override). Both go through the ``barista`` preprocessing recipe into
one store (2048 Hz, regions from grid/shaft and positions); with ``--band-hz 200`` the recipe
first resamples every recording to 200 Hz, so that training and held-out signal carry the
same band (the held-out clip was recorded at 200 Hz). The model trains on the BIDS recording
(3-s windows, 0.5-s stride, batch 2, AdamW (0.9, 0.95), weight decay 1e-2, linear warm-up
over ``--warmup`` of the steps then cosine to lr / 30, gradient clip 1.0, one thread) and is
evaluated every ``--eval-every`` steps on the held-out Persyst recording (3-s windows, 0.4-s
stride) with fixed masks (seeded). Its regions are read through the training vocabulary,
frozen: regions the model never saw are "unknown" (zero spatial embedding), not untrained
table rows. The reference is measured in the same run on the same masked tokens: the
trivial predictor, i.e. the mean masked target latent of the evaluation batch
(``latent_baseline``) and, for the raw-patch term, 0 (MSE 1 for per-window z-scored signal).
Training stops after ``--steps`` or ``--cpu-minutes`` of process CPU time. Writes
``curve.csv`` and ``curve.png`` into OUT_DIR and prints a Markdown table.
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
from brainfm.pretrain.schedules import WarmupCosine

RECIPE = """\
extends: barista
name: barista-bench
overrides:
  - {{match: "*.lay", channel_types: {{"*": ecog}}}}
steps:
  - notch: {{freqs: line, harmonics: true, max_freq: 360.0, method: iir, phase: causal, quality: 30.0}}
  - reference: {{seeg: laplacian, dbs: laplacian, ecog: none, laplacian_edges: drop, exclude_regions: [GRID, VENT]}}
{band}  - resample: {{sfreq: 2048, method: polyphase}}
  - regions: {{fallback: shaft, segment_mm: 15.0}}
  - units: {{on_implausible: warn}}
"""


def build_store(files: list[Path], out: Path, name: str, band_hz: float | None,
                crop: tuple[float, float | None] = (0.0, None)) -> Path:
    """Recordings through the barista recipe (optionally band-matched and cropped) into a store."""
    folder = out / f"input-{name}"
    if folder.exists():
        shutil.rmtree(folder)
    for source in files:
        shutil.copytree(source, folder / source.name)
    band = f"  - resample: {{sfreq: {band_hz:g}, method: polyphase}}\n" if band_hz else ""
    tmax = "null" if crop[1] is None else f"{crop[1]:g}"
    recipe = out / f"recipe-{name}.yaml"
    recipe.write_text(RECIPE.format(band=band) + f"crop: {{tmin_s: {crop[0]:g}, tmax_s: {tmax}}}\n")
    store = out / f"{name}.zarr"
    if store.exists():
        shutil.rmtree(store)
    summary = preprocess(folder, store, recipe=recipe)
    if summary.failed:
        raise SystemExit(f"preprocessing failed: {summary.failed}")
    return store


def loader(store: Path, stride_s: float, shuffle: str, vocabulary: Path, frozen: bool) -> WindowDataModule:
    return WindowDataModule(store, window_s=3.0, stride_s=stride_s, batch_size=2, normalization="window",
                            channel_types=["seeg", "ecog", "dbs"], split_unit="window", val_fraction=0.0,
                            shuffle=shuffle, seed=0, vocabulary=vocabulary, freeze_vocabulary=frozen)


def evaluate(backbone: BaristaBackbone, objective: MaskedLatentObjective, batches: list) -> dict[str, float]:
    backbone.eval()
    objective.eval()
    totals: dict[str, float] = {}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(123)  # the same masks at every evaluation
        for batch in batches:
            for key, value in objective(batch, backbone=backbone).items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(batches)
    backbone.train()
    objective.train()
    return totals


def held_out(backbone: BaristaBackbone, objective: MaskedLatentObjective, sets: dict[str, list]) -> dict[str, float]:
    """Loss terms on every held-out set, keys ``<set>_<term>``."""
    return {f"{name}_{k}": v for name, batches in sets.items()
            for k, v in evaluate(backbone, objective, batches).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=float, default=0.05, help="share of the steps spent warming up")
    parser.add_argument("--target", choices=["tokenizer_sg", "ema_teacher"], default="tokenizer_sg")
    parser.add_argument("--target-norm", choices=["none", "token"], default="none")
    parser.add_argument("--band-hz", type=float, default=None, help="resample every recording to this rate first")
    parser.add_argument("--tail-s", type=float, default=6.2, help="seconds at the end of the training recording held out")
    parser.add_argument("--cpu-minutes", type=float, default=30.0, help="stop after this much process CPU time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    bids, other = args.data / "bids" / "ieeg-ecog", args.data / "ieeg" / "persyst"
    split = 21.7 - args.tail_s  # the BIDS recording lasts 21.7 s
    stores = {"train": build_store([bids], args.out, "train", args.band_hz, (0.0, split)),
              "tail": build_store([bids], args.out, "tail", args.band_hz, (split, None)),
              "other": build_store([other], args.out, "other", args.band_hz)}
    vocabulary = args.out / "vocabulary.json"
    vocabulary.unlink(missing_ok=True)
    train = loader(stores["train"], 0.5, "uniform", vocabulary, frozen=False)
    train.setup("fit")
    sets = {name: list(loader(stores[name], 0.4, "none", vocabulary, frozen=True).train_dataloader())
            for name in ("tail", "other")}
    n_regions = max(len(train.index.region_vocabulary), 8)
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(0)
        backbone = BaristaBackbone(n_layers=args.layers, n_regions=n_regions)
        objective = MaskedLatentObjective(target=args.target, target_norm=args.target_norm)
    params = [p for p in [*backbone.parameters(), *objective.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=1e-2)
    scheduler = WarmupCosine(optimizer, total_steps=args.steps, warmup_fraction=args.warmup, start_factor=0.0,
                             end_factor=1 / 30)
    rows = [{"step": 0, "seconds": 0.0, "cpu_s": 0.0, "train_loss": float("nan"), **held_out(backbone, objective, sets)}]
    step, start, cpu0, done = 0, time.perf_counter(), time.process_time(), False
    while not done:
        for batch in train.train_dataloader():
            out = objective(batch, backbone=backbone)
            optimizer.zero_grad()
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            cpu = time.process_time() - cpu0
            done = step >= args.steps or cpu >= 60 * args.cpu_minutes
            if step % args.eval_every == 0 or done:
                rows.append({"step": step, "seconds": time.perf_counter() - start, "cpu_s": cpu,
                             "train_loss": float(out["loss"].detach()), **held_out(backbone, objective, sets)})
                r = rows[-1]
                print(f"step {step:4d}  {cpu:7.1f} s CPU  train {r['train_loss']:.3f}  " + "  ".join(
                    f"{name} latent {r[name + '_latent']:.4f} (trivial {r[name + '_latent_baseline']:.4f}) "
                    f"raw {r[name + '_raw']:.3f}" for name in sets), flush=True)
                _write(rows, args.out)  # after every evaluation: an interrupted run keeps its curve
            if done:
                break
    _figure(rows, args.out / "curve.png", list(sets))
    print("\n| step | CPU s | set | held-out latent MSE | trivial (mean latent) | ratio | raw MSE (trivial 1) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for name in sets:
            print(f"| {row['step']} | {row['cpu_s']:.0f} | {name} | {row[name + '_latent']:.4f} | "
                  f"{row[name + '_latent_baseline']:.4f} | {row[name + '_latent'] / row[name + '_latent_baseline']:.3f}"
                  f" | {row[name + '_raw']:.3f} |")


def _write(rows: list[dict[str, float]], out: Path) -> None:
    with (out / "curve.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)


def _figure(rows: list[dict[str, float]], path: Path, sets: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name in sets:
        left.plot(steps, [r[f"{name}_latent"] / r[f"{name}_latent_baseline"] for r in rows], label=f"held-out {name}")
        right.plot(steps, [r[f"{name}_raw"] for r in rows], label=f"held-out {name}")
    for axis in (left, right):
        axis.axhline(1.0, ls="--", color="grey", label="trivial predictor")
        axis.legend()
    left.set(xlabel="step", ylabel="masked latent MSE / trivial (mean latent)", title="latent term (scale-free)")
    right.set(xlabel="step", ylabel="masked raw-patch MSE (trivial: 0 -> 1)", title="raw-patch term")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
