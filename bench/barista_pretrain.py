"""BaRISTA pretraining on real iEEG: validation loss on a held-out recording against the trivial predictor.

    python bench/barista_pretrain.py DATA_DIR OUT_DIR [--steps 150] [--eval-every 10] [--layers 12]
        [--lr 3e-4] [--warmup 0.05] [--target tokenizer_sg|ema_teacher] [--target-norm none|token]
        [--band-hz 200] [--cpu-minutes 30] [--scale parcels|lobes] [--tail-s 6.2] [--train-stride 0.5]

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
``--tail-s 0`` trains on the whole BIDS recording and evaluates on the held-out Persyst recording
only (with the training windows); ``--scale lobes`` encodes lobes, which these recordings' regions
(grid and shaft names, no atlas labels) never map to, so every channel gets the zero spatial
embedding in training and on the held-out recording alike (no montage-specific identity to transfer).
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

from brainfm.data.atlas import lobe_ids
from brainfm.loading import WindowDataModule
from brainfm.models import BaristaBackbone, MaskedLatentObjective
from brainfm.models.barista_objective import masked_mse
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
    """3-s windows of a store, z-scored per window, batch 2, regions read through ``vocabulary``."""
    return WindowDataModule(store, window_s=3.0, stride_s=stride_s, batch_size=2, normalization="window",
                            channel_types=["seeg", "ecog", "dbs"], split_unit="window", val_fraction=0.0,
                            shuffle=shuffle, seed=0, vocabulary=vocabulary, freeze_vocabulary=frozen)


def _neighbour(values: torch.Tensor, masked: torch.Tensor, valid: torch.Tensor, regions: torch.Tensor,
               n_chans: int) -> torch.Tensor:
    """Each masked token predicted by the mean of the visible tokens of its region at the same patch.

    A non-learned reference for what the other channels of a window say about a masked one:
    tokens (B, n * C, F) time-major; channels without a region (ids 0, 1) or whose region has no
    visible channel get the mean of every visible token at that patch.
    """
    b, length, f = values.shape
    n = length // n_chans
    x = values.view(b, n, n_chans, f)
    seen = (valid & ~masked).view(b, n, n_chans).to(values.dtype)  # (B, n, C)
    onehot = torch.nn.functional.one_hot(regions.clamp_min(0), int(regions.max()) + 1).to(values.dtype)  # (B, C, K)
    onehot[..., :2] = 0  # no region / unknown region: no shared region
    sums = torch.einsum("bnc,bck,bncf->bnkf", seen, onehot, x)  # (B, n, K, F)
    counts = torch.einsum("bnc,bck->bnk", seen, onehot)  # (B, n, K)
    region_mean = torch.einsum("bck,bnkf->bncf", onehot, sums / counts.clamp_min(1).unsqueeze(-1))
    region_count = torch.einsum("bck,bnk->bnc", onehot, counts)
    overall = (x * seen.unsqueeze(-1)).sum(2, keepdim=True) / seen.sum(2, keepdim=True).clamp_min(1).unsqueeze(-1)
    guess = torch.where((region_count > 0).unsqueeze(-1), region_mean, overall)  # (B, n, C, F)
    return guess.reshape(b, length, f)


def collect(backbone: BaristaBackbone, objective: MaskedLatentObjective, batches: list) -> list[dict]:
    """Per-token predictions and targets on some batches, with the same (seeded) masks every time."""
    backbone.eval()
    objective.eval()
    outs = []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(123)  # the same masks at every evaluation
        for batch in batches:
            out = objective.predict(batch, backbone)
            out["regions"], out["n_chans"] = batch.region_ids, batch.signal.shape[1]
            outs.append(out)
    backbone.train()
    objective.train()
    return outs


def masked_target_mean(outs: list[dict]) -> torch.Tensor:
    """Mean target over the masked tokens of some batches, (dim,)."""
    total = sum((o["target"] * o["masked"].unsqueeze(-1)).sum((0, 1)) for o in outs)
    return total / sum(o["masked"].sum() for o in outs).clamp_min(1)


def scores(outs: list[dict], train_mean: torch.Tensor) -> dict[str, float]:
    """The model's masked losses and the references on the same masked tokens (means over batches).

    ``latent``: the model; ``trivial``: the mean latent of the training windows (a constant fitted
    on training data, the fair trivial predictor); ``oracle``: the mean masked latent of the
    evaluated batch itself (fitted on the held-out targets: the best any constant can do, the
    reference of the first two passes); ``neighbour``: the region mean of the visible tokens at
    the same patch (non-learned); ``visible_mean``: the mean of all visible tokens at the same patch
    (non-learned, needs no channel identity); ``target_std``: per-feature standard deviation of the masked
    targets, averaged over features (collapse: -> 0); the same for raw patches (``raw``,
    ``raw_neighbour``; the trivial predictor 0 scores ``raw_trivial``, about 1).
    """
    keys = ("latent", "trivial", "oracle", "neighbour", "visible_mean", "raw", "raw_trivial", "raw_neighbour",
            "raw_visible_mean")
    totals = dict.fromkeys(keys, 0.0)
    for o in outs:
        target, masked, raw = o["target"], o["masked"], o["raw_target"]
        batch_mean = masked_target_mean([o])
        no_regions = torch.zeros_like(o["regions"])
        values = {
            "latent": masked_mse(o["latent_prediction"], target, masked),
            "trivial": masked_mse(train_mean.expand_as(target), target, masked),
            "oracle": masked_mse(batch_mean.expand_as(target), target, masked),
            "neighbour": masked_mse(_neighbour(target, masked, o["valid"], o["regions"], o["n_chans"]), target, masked),
            "visible_mean": masked_mse(_neighbour(target, masked, o["valid"], no_regions, o["n_chans"]), target,
                                       masked),
            "raw": masked_mse(o["raw_prediction"], raw, masked),
            "raw_trivial": masked_mse(torch.zeros_like(raw), raw, masked),
            "raw_neighbour": masked_mse(_neighbour(raw, masked, o["valid"], o["regions"], o["n_chans"]), raw, masked),
            "raw_visible_mean": masked_mse(_neighbour(raw, masked, o["valid"], no_regions, o["n_chans"]), raw, masked),
        }
        for key, value in values.items():
            totals[key] += float(value) / len(outs)
    mean = masked_target_mean(outs)
    spread = sum(((o["target"] - mean).square() * o["masked"].unsqueeze(-1)).sum((0, 1)) for o in outs)
    totals["target_std"] = float((spread / sum(o["masked"].sum() for o in outs)).sqrt().mean())
    return totals


def held_out(backbone: BaristaBackbone, objective: MaskedLatentObjective, sets: dict[str, list]) -> dict[str, float]:
    """Scores on every evaluation set, keys ``<set>_<score>``; the trivial predictor is fitted on ``train``."""
    outs = {name: collect(backbone, objective, batches) for name, batches in sets.items()}
    train_mean = masked_target_mean(outs["train"])
    return {f"{name}_{k}": v for name, o in outs.items() for k, v in scores(o, train_mean).items()}


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
    parser.add_argument("--ema-decay", type=float, default=0.996, help="1.0: the teacher stays the initial encoder")
    parser.add_argument("--mask-unit", choices=["channel", "region"], default="channel")
    parser.add_argument("--mask-ratio", type=float, default=0.5)
    parser.add_argument("--raw-weight", type=float, default=1.0)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--band-hz", type=float, default=None, help="resample every recording to this rate first")
    parser.add_argument("--tail-s", type=float, default=6.2, help="seconds at the end of the training recording held out")
    parser.add_argument("--cpu-minutes", type=float, default=30.0, help="stop after this much process CPU time")
    parser.add_argument("--scale", choices=["parcels", "lobes"], default="parcels", help="spatial encoding scale")
    parser.add_argument("--train-stride", type=float, default=0.5, help="seconds between training windows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    bids, other = args.data / "bids" / "ieeg-ecog", args.data / "ieeg" / "persyst"
    split = 21.7 - args.tail_s  # the BIDS recording lasts 21.7 s
    stores = {"train": build_store([bids], args.out, "train", args.band_hz, (0.0, split if args.tail_s > 0 else None))}
    if args.tail_s > 0:
        stores["tail"] = build_store([bids], args.out, "tail", args.band_hz, (split, None))
    stores["other"] = build_store([other], args.out, "other", args.band_hz)
    names = list(stores)
    vocabulary = args.out / "vocabulary.json"
    vocabulary.unlink(missing_ok=True)
    train = loader(stores["train"], args.train_stride, "uniform", vocabulary, frozen=False)
    train.setup("fit")
    print(f"training windows: {len(train.index)} (3 s, {args.train_stride:g}-s stride)", flush=True)
    # "train": training windows at a 1.5-s stride (every one also a training window): overfitting,
    # and the windows the trivial predictor's mean latent is fitted on
    sets = {name: list(loader(stores[name], stride, "none", vocabulary, frozen=True).train_dataloader())
            for name, stride in (("train", 1.5), ("tail", 0.4), ("other", 0.4)) if name in stores}
    print("evaluation windows: " + ", ".join(f"{k} {sum(len(b.signal) for b in v)}" for k, v in sets.items()),
          flush=True)
    n_regions = max(len(train.index.region_vocabulary), 8)
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(0)
        backbone = BaristaBackbone(spatial_scale=args.scale, n_layers=args.layers, n_regions=n_regions,
                                   dropout=args.dropout)
        objective = MaskedLatentObjective(mask_unit=args.mask_unit, mask_ratio=args.mask_ratio, target=args.target,
                                          target_norm=args.target_norm, raw_weight=args.raw_weight,
                                          ema_decay=args.ema_decay)
    if args.scale == "lobes":  # what check_data does in a recipe: region vocabulary -> lobe ids
        lobes = torch.tensor(lobe_ids(train.index.region_vocabulary.tokens), dtype=torch.long)
        backbone.region_lobes[: len(lobes)] = lobes
        print(f"regions with a lobe: {int((lobes > 0).sum())} of {len(lobes)}", flush=True)
    params = [p for p in [*backbone.parameters(), *objective.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=1e-2)
    scheduler = WarmupCosine(optimizer, total_steps=args.steps, warmup_fraction=args.warmup, start_factor=0.0,
                             end_factor=1 / 30)
    rows = [{"step": 0, "seconds": 0.0, "cpu_s": 0.0, "train_loss": float("nan"), **held_out(backbone, objective, sets)}]
    _print(rows[-1], names)
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
                _print(rows[-1], names)
                _write(rows, args.out)  # after every evaluation: an interrupted run keeps its curve
            if done:
                break
    _figure(rows, args.out / "curve.png", names)
    print("\n| step | CPU s | set | latent / trivial | latent / oracle | neighbour / trivial | target std | "
          "raw (trivial ~1) | raw neighbour |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for name in names:
            r = {k[len(name) + 1 :]: v for k, v in row.items() if k.startswith(name + "_")}
            print(f"| {row['step']} | {row['cpu_s']:.0f} | {name} | {r['latent'] / r['trivial']:.3f} | "
                  f"{r['latent'] / r['oracle']:.3f} | {r['neighbour'] / r['trivial']:.3f} | {r['target_std']:.3f} | "
                  f"{r['raw'] / r['raw_trivial']:.3f} | {r['raw_neighbour'] / r['raw_trivial']:.3f} |")


def _print(row: dict[str, float], names: list[str]) -> None:
    parts = []
    for name in names:
        r = {k[len(name) + 1 :]: v for k, v in row.items() if k.startswith(name + "_")}
        parts.append(f"{name} lat/triv {r['latent'] / r['trivial']:.3f} lat/orac {r['latent'] / r['oracle']:.3f} "
                     f"nb/triv {r['neighbour'] / r['trivial']:.3f} vm/triv {r['visible_mean'] / r['trivial']:.3f} "
                     f"rawvm {r['raw_visible_mean'] / r['raw_trivial']:.3f} std {r['target_std']:.3f} "
                     f"raw {r['raw'] / r['raw_trivial']:.3f} rawnb {r['raw_neighbour'] / r['raw_trivial']:.3f}")
    print(f"step {row['step']:4d} {row['cpu_s']:7.1f} s CPU train {row['train_loss']:.3f} | " + " | ".join(parts),
          flush=True)


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
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.6))
    for name in sets:
        line = left.plot(steps, [r[f"{name}_latent"] / r[f"{name}_trivial"] for r in rows], label=name)[0]
        left.plot(steps, [r[f"{name}_latent"] / r[f"{name}_oracle"] for r in rows], ls=":", color=line.get_color())
        middle.plot(steps, [r[f"{name}_target_std"] for r in rows], label=name)
        right.plot(steps, [r[f"{name}_raw"] / r[f"{name}_raw_trivial"] for r in rows], label=name)
    left.axhline(1.0, ls="--", color="grey")
    right.axhline(1.0, ls="--", color="grey")
    left.set_ylim(0.94, 1.10)  # around the trivial predictor (step 0, about 2.4, is off the chart)
    right.set_ylim(0.97, 1.05)
    left.set(xlabel="step", ylabel="masked latent MSE / trivial", title="latent (solid: train-mean, dotted: oracle)")
    middle.set(xlabel="step", ylabel="target std (per feature)", title="target spread")
    right.set(xlabel="step", ylabel="masked raw MSE / predicting 0", title="raw-patch term")
    for axis in (left, middle, right):
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
