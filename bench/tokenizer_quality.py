"""Tokenizer fidelity on subjects the tokenizer never saw (issue 7, quality figures).

``braintokenizer CKPT STORE``: a trained BrainTokenizer's reconstruction of the held-out split,
per sensor type: PCC (per channel and 2-s window, averaged, as the paper's Table 4),
normalised MSE, and codebook usage and perplexity per RVQ level.

``sample CKPT STORE``: a trained MEG-GPT sample tokenizer's percentage of variance explained
(PVE) on the held-out split, beside mu-law and quantile tokenizers of the same vocabulary
size (the sample tokenizer's refactored K'; the quantile bins are fitted on the training split).

The held-out split is the data module's validation split with the training run's
``--val-fraction`` and ``--seed``; the script refuses to report when a held-out subject is
among the subjects the checkpoint records as trained on.

    python bench/tokenizer_quality.py braintokenizer CKPT STORE --window-s 2 --val-fraction 0.25
    python bench/tokenizer_quality.py sample CKPT STORE --window-s 0.78125 --val-fraction 0.25

The metrics are those ``brainfm tokenizer report`` prints (issue 7 item 6); until that command
lands they are computed here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict

import torch

from brainfm.checkpoint import load_tokenizer
from brainfm.loading import WindowDataModule
from brainfm.tokenizers import (
    BrainTokenizer,
    MuLawTokenizer,
    QuantileTokenizer,
    SampleLevelTokenizer,
)

TYPES = {0: "eeg", 1: "mag", 2: "grad"}


def _held_out(args: argparse.Namespace, info, normalization: str, channel_types):
    data = WindowDataModule(args.store, window_s=args.window_s, batch_size=args.batch_size, normalization=normalization,
                            channel_types=channel_types, channel_batching="bucket", split_unit="subject",
                            val_fraction=args.val_fraction, seed=args.seed)
    data.setup("fit")
    trained = set((info.training_data or {}).get("subjects") or [])
    held = {layout.subject for layout in data.split("val").layouts}
    overlap = trained & held
    if overlap:
        raise SystemExit(f"held-out subjects {sorted(overlap)} were trained on: pass the run's --val-fraction/--seed")
    return data, sorted(held), sorted(trained)


@torch.no_grad()
def braintokenizer(args: argparse.Namespace) -> dict:
    """PCC, NMSE per sensor type; usage and perplexity per level, on the held-out split."""
    tokenizer, info = load_tokenizer(args.checkpoint, expected=BrainTokenizer)
    data, held, trained = _held_out(args, info, "sensortype", ["eeg", "mag", "grad"])
    pcc_sum: dict[str, float] = defaultdict(float)
    err_sum: dict[str, float] = defaultdict(float)
    var_sum: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    usage = torch.zeros(tokenizer.n_levels, tokenizer.n_codes, dtype=torch.long)
    n_windows = 0
    for i, batch in enumerate(data.make_dataloader("val")):
        if args.max_batches and i >= args.max_batches:
            break
        latents, sensors, windows = tokenizer.encode_latents(batch)
        quantised, indices, _ = tokenizer.quantize(latents)
        reconstruction = tokenizer.reconstruct_windows(quantised, sensors)  # (B, C, N, W)
        target = tokenizer.target(windows)
        xc = reconstruction - reconstruction.mean(-1, keepdim=True)
        yc = target - target.mean(-1, keepdim=True)
        pcc = (xc * yc).sum(-1) / (xc.norm(dim=-1) * yc.norm(dim=-1) + 1e-8)  # (B, C, N)
        err = (reconstruction - target).pow(2).mean(-1)
        var = target.pow(2).mean(-1)
        valid = tokenizer.usable(batch)
        for code, name in TYPES.items():
            mask = (valid & (batch.sensor_type == code))[..., None].expand_as(pcc)
            if bool(mask.any()):
                pcc_sum[name] += float(pcc[mask].sum())
                err_sum[name] += float(err[mask].sum())
                var_sum[name] += float(var[mask].sum())
                count[name] += int(mask.sum())
        for level in range(tokenizer.n_levels):
            usage[level] += torch.bincount(indices[..., level].flatten(), minlength=tokenizer.n_codes)
        n_windows += windows.shape[0] * windows.shape[2]
    probs = usage.double() / usage.sum(1, keepdim=True).clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(1)
    return {"checkpoint": str(args.checkpoint), "held_out_subjects": held, "trained_subjects": trained,
            "n_windows": n_windows,
            "pcc": {k: pcc_sum[k] / count[k] for k in count},
            "nmse": {k: err_sum[k] / var_sum[k] for k in count},
            "codebook_usage": [float((usage[level] > 0).float().mean()) for level in range(tokenizer.n_levels)],
            "perplexity": [float(math.exp(h)) for h in entropy]}


@torch.no_grad()
def sample(args: argparse.Namespace) -> dict:
    """PVE of the sample tokenizer, mu-law and quantile tokenizers of the same vocabulary, held-out subjects."""
    tokenizer, info = load_tokenizer(args.checkpoint, expected=SampleLevelTokenizer)
    data, held, trained = _held_out(args, info, "zscore", None)
    n_bins = tokenizer.vocab_size - 1  # K' (label 0 reserved)
    mulaw = MuLawTokenizer(n_bins=n_bins).eval()
    quantile = QuantileTokenizer(n_bins=n_bins).train()
    for i, batch in enumerate(data.make_dataloader("train", shuffle=False)):
        if args.max_batches and i >= args.max_batches:
            break
        quantile.loss(batch)  # counts the training samples into its histogram
    quantile.eval()
    sums = {name: [0.0, 0.0] for name in ("sample_tokenizer", "mulaw", "quantile")}
    unknown = 0
    total = 0
    for i, batch in enumerate(data.make_dataloader("val")):
        if args.max_batches and i >= args.max_batches:
            break
        mask = batch.channel_mask[..., None].expand_as(batch.signal)
        x = batch.signal[mask]
        for name, tok in (("sample_tokenizer", tokenizer), ("mulaw", mulaw), ("quantile", quantile)):
            tokens = tok.encode(batch)
            if name == "sample_tokenizer":
                unknown += int((tokens[mask] == 0).sum())
                total += int(mask.sum())
            recon = tok.decode(tokens, batch)[mask]
            sums[name][0] += float((x - recon).pow(2).sum())
            sums[name][1] += float(x.pow(2).sum())
    pve = {name: 100.0 * (1.0 - e / v) for name, (e, v) in sums.items()}
    return {"checkpoint": str(args.checkpoint), "held_out_subjects": held, "trained_subjects": trained,
            "vocab_size": n_bins + 1, "pve": pve, "unknown_token_share": unknown / max(total, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["braintokenizer", "sample"])
    parser.add_argument("checkpoint")
    parser.add_argument("store")
    parser.add_argument("--window-s", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-batches", type=int, default=0, help="0: all")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = braintokenizer(args) if args.kind == "braintokenizer" else sample(args)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
