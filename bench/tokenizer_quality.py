"""Tokenizer fidelity on subjects the tokenizer never saw (issue 7, quality figures).

``braintokenizer CKPT STORE``: ``brainfm tokenizer report --split val`` on the recordings the
checkpoint was not trained on (PCC per channel and 2-s window, averaged, as the paper's
Table 4; NMSE; codebook usage and perplexity per RVQ level), with the held-out subjects
checked against those the checkpoint records.

``sample CKPT STORE``: a trained MEG-GPT sample tokenizer's percentage of variance explained
(PVE) on the held-out split, beside mu-law and quantile tokenizers of the same vocabulary
size (the sample tokenizer's refactored K'; the quantile bins are fitted on the training split).

For the sample tokenizer the held-out split is the data module's validation split with the
training run's ``--val-fraction`` and ``--seed``; both modes refuse to report when a held-out
subject is among the subjects the checkpoint records as trained on.

    python bench/tokenizer_quality.py braintokenizer CKPT STORE --window-s 2 --val-fraction 0.25
    python bench/tokenizer_quality.py sample CKPT STORE --window-s 0.78125 --val-fraction 0.25

"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from brainfm.checkpoint import load_tokenizer
from brainfm.loading import WindowDataModule
from brainfm.tokenizers import (
    BrainTokenizer,
    MuLawTokenizer,
    QuantileTokenizer,
    SampleLevelTokenizer,
)


def _held_out(args: argparse.Namespace, info, normalization: str, channel_types):
    data = WindowDataModule(args.store, window_s=args.window_s, batch_size=args.batch_size, normalization=normalization,
                            channel_types=channel_types, channel_batching="bucket", split_unit="subject",
                            val_fraction=args.val_fraction, seed=args.seed)
    data.setup("fit")
    trained = set((info.training_data or {}).get("subjects") or [])
    val = data.split("val")
    held = {val.layouts[int(i)].subject for i in np.unique(val.recording)}  # layouts lists every recording
    overlap = trained & held
    if overlap:
        raise SystemExit(f"held-out subjects {sorted(overlap)} were trained on: pass the run's --val-fraction/--seed")
    return data, sorted(held), sorted(trained)


def braintokenizer(args: argparse.Namespace) -> dict:
    """``brainfm tokenizer report --split val`` (PCC, NMSE, PSD error per type; usage and perplexity per level)."""
    from brainfm.pretrain.tokenizer_report import tokenizer_report

    _, info = load_tokenizer(args.checkpoint, expected=BrainTokenizer)
    report = tokenizer_report(args.checkpoint, args.store, split="val", batch_size=args.batch_size,
                              max_windows=args.max_windows or None, normalization=args.normalization)
    trained = set((info.training_data or {}).get("subjects") or [])
    store_subjects = {layout.recording_id: layout.subject for layout in _layouts(args.store)}
    held = sorted({store_subjects[r] for r in report.recordings})
    if trained & set(held):
        raise SystemExit(f"held-out subjects {sorted(trained & set(held))} were trained on")
    return {"checkpoint": str(args.checkpoint), "held_out_subjects": held, "trained_subjects": sorted(trained),
            **report.summary()}


def _layouts(store: str):
    data = WindowDataModule(store, window_s=2.0, val_fraction=0.0, split_unit="recording")
    data.setup("fit")
    return data.split("train").layouts


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
    parser.add_argument("--max-batches", type=int, default=0, help="sample mode: batches per split (0: all)")
    parser.add_argument("--max-windows", type=int, default=0, help="braintokenizer mode: windows (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--normalization", help="braintokenizer mode: for checkpoints that do not record it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = braintokenizer(args) if args.kind == "braintokenizer" else sample(args)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
