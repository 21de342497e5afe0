"""MEG-GPT ``tiny`` trained for a fixed wall time on CPU vs unigram and 80-lag AR baselines.

Builds a 250-Hz store from the real EEG and MEG of a data folder (eegmat, eegmmidb and the MEG
vendor samples), trains a sample tokenizer, then MEG-GPT ``tiny`` through ``brainfm pretrain fit``
for ``--minutes``, and reports the next-token cross-entropy (nats) on held-out subjects
(the data module's validation split) at the same target positions (the last 8 of every
81-token sequence) for:

- MEG-GPT tiny (recordings never seen in training get no recording embedding);
- unigram: the training tokens' frequencies (add-one smoothed);
- AR-80: a linear autoregressive model on the 80 previous z-scored samples with a softmax over
  the tokens (multinomial logistic regression, fitted by Adam on the training sequences).

    python bench/meg_gpt_heldout.py --data ../shared/data --out /tmp/meggpt_heldout --minutes 30
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

RECIPE_EEG = """\
name: bench-eeg
description: EEG at 250 Hz.
pick: {types: [eeg]}
steps:
  - resample: {sfreq: 250, method: polyphase}
  - units: {on_implausible: warn}
"""
RECIPE_MEG = """\
name: bench-meg
description: MEG at 250 Hz.
pick: {types: [mag, grad]}
steps:
  - resample: {sfreq: 250, method: polyphase}
  - units: {on_implausible: warn}
"""


def build_store(data: Path, out: Path) -> Path:
    from brainfm.preprocessing.run import preprocess

    store = out / "store"
    if (out / "store.done").exists():
        return store
    (out / "eeg.yaml").write_text(RECIPE_EEG)
    (out / "meg.yaml").write_text(RECIPE_MEG)
    for name, folder, pattern, recipe in (
        ("eegmat", data / "eeg" / "eegmat", r"Subject(?P<subject>\d+)_(?P<run>\d)", "eeg.yaml"),
        ("eegmmidb", data / "eeg" / "eegmmidb", r"S(?P<subject>\d+)R(?P<run>\d+)", "eeg.yaml"),
    ):
        preprocess(folder, store, recipe=out / recipe, dataset=name, pattern=pattern)
    for vendor in ("fif", "ctf", "kit"):
        tmp = out / f"meg_{vendor}"
        if not tmp.exists():
            shutil.copytree(data / "meg" / vendor, tmp)
        preprocess(tmp, store, recipe=out / "meg.yaml", dataset=f"meg_{vendor}")
    (out / "store.done").write_text("")
    return store


def latest_checkpoint(root: Path) -> Path:
    return sorted(root.glob("lightning_logs/version_*/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime)[-1]


def run(argv: list[str]) -> None:
    from brainfm.cli.main import main

    status = main(argv)
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")


def heldout_sequences(store: Path, tokenizer, window_s: float, seed: int) -> dict[str, torch.Tensor]:
    """Tokens, signals, channel ids and recording ids of the validation (held-out subject) windows."""
    from brainfm.loading import WindowDataModule
    from brainfm.models.next_token import sequences_of

    out: dict[str, list[torch.Tensor]] = {"tokens": [], "signal": [], "channels": [], "mask": [], "recordings": [],
                                          "split": []}
    for split in ("train", "val"):
        data = WindowDataModule(store, window_s=window_s, batch_size=16, seed=seed, val_fraction=0.25,
                                split_unit="subject", on_unknown_subject="ignore")
        for batch in data.make_dataloader(split, shuffle=False):
            with torch.no_grad():
                tokens = tokenizer.encode(batch)
            seq, n = sequences_of(tokens, 81)
            sig, _ = sequences_of(batch.signal, 81)
            out["tokens"].append(seq)
            out["signal"].append(sig)
            out["channels"].append(batch.channel_ids.repeat_interleave(n, 0))
            out["mask"].append(batch.channel_mask.repeat_interleave(n, 0))
            out["recordings"].append(batch.recording_ids.repeat_interleave(n, 0))
            out["split"].append(torch.full((len(seq),), split == "val"))
    c = max(t.shape[1] for t in out["tokens"])

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, 0) * (t.dim() - 2) + (0, c - t.shape[1])) if t.dim() >= 2 else t

    return {k: torch.cat([pad(t) for t in v]) for k, v in out.items()}


def evaluate(model_path: Path, seqs: dict[str, torch.Tensor], vocab: int, n_loss: int = 8) -> dict[str, float]:
    from brainfm.checkpoint import load_model

    val, train = seqs["split"], ~seqs["split"]
    tokens, mask = seqs["tokens"], seqs["mask"]
    targets = tokens[..., -n_loss:]  # (N, C, 8)

    def ce_of(logits: torch.Tensor, rows: torch.Tensor) -> float:
        m = mask[rows]
        return float(F.cross_entropy(logits[m].reshape(-1, vocab).float(), targets[rows][m].reshape(-1)))

    result: dict[str, float] = {}
    # unigram
    counts = torch.bincount(tokens[train][mask[train]].flatten(), minlength=vocab).double() + 1.0
    log_p = (counts / counts.sum()).log().float()
    result["unigram"] = ce_of(log_p.expand(*targets[val].shape, vocab).clone(), val)
    # AR-80 on the z-scored samples -> softmax over tokens
    signal = seqs["signal"]  # (N, C, 81)
    lags = torch.stack([signal[..., p - 80: p] for p in range(81 - n_loss, 81)], dim=2)  # (N, C, 8, 80)
    L.seed_everything(0, verbose=False)
    ar = torch.nn.Linear(80, vocab)
    optimizer = torch.optim.Adam(ar.parameters(), lr=3e-3)
    x_train, y_train = lags[train][mask[train]].reshape(-1, 80), targets[train][mask[train]].reshape(-1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3000):
        pick = torch.randint(0, len(x_train), (4096,), generator=generator)
        loss = F.cross_entropy(ar(x_train[pick]), y_train[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        result["ar80"] = ce_of(ar(lags[val]), val)
        model = load_model(model_path)
        backbone = model.backbone
        logits = []
        for start in range(0, int(val.sum()), 64):
            rows = torch.nonzero(val).flatten()[start:start + 64]
            logits.append(backbone(tokens[rows, :, :80], seqs["channels"][rows], seqs["recordings"][rows],
                                   mask[rows], last=n_loss))
        result["meg_gpt_tiny"] = ce_of(torch.cat(logits), val)
    result["n_heldout_sequences"] = int(val.sum())
    result["n_train_sequences"] = int(train.sum())
    return result


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/meggpt_heldout"))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--tokenizer-minutes", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    store = build_store(args.data, args.out)
    print(f"store ready in {time.time() - t0:.0f} s", flush=True)
    common = ["--data.store", str(store), "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
              "--data.val_fraction", "0.25", "--data.on_unknown_subject", "ignore"]
    tok_root = args.out / "tokenizer"
    if not tok_root.exists():
        minutes = int(args.tokenizer_minutes)
        run(["pretrain", "fit", "--recipe", "sample_tokenizer", *common, "--trainer.default_root_dir", str(tok_root),
             "--model.tokenizer.init_args.n_units", "32", "--model.tokenizer.init_args.n_tokens", "64",
             "--model.optimizer.init_args.lr", "3e-3", "--trainer.max_epochs", "10",
             "--trainer.max_time", f"00:00:{minutes:02d}:00", "--data.batch_size", "16"])
    tokenizer_ckpt = latest_checkpoint(tok_root)
    gpt_root = args.out / "meg_gpt"
    if not gpt_root.exists():
        t1 = time.time()
        minutes = int(args.minutes)
        run(["pretrain", "fit", "--recipe", "meg_gpt", "--size", "tiny", *common,
             "--model.tokenizer.init_args.checkpoint", str(tokenizer_ckpt),
             "--trainer.default_root_dir", str(gpt_root), "--trainer.max_epochs", "1000",
             "--trainer.max_time", f"00:{minutes // 60:02d}:{minutes % 60:02d}:00", "--data.window_s", "0.648",
             "--data.batch_size", "16"])
        print(f"MEG-GPT trained for {(time.time() - t1) / 60:.1f} min", flush=True)
    from brainfm.checkpoint import load_model

    tokenizer = load_model(tokenizer_ckpt).tokenizer
    seqs = heldout_sequences(store, tokenizer, 0.648, seed=0)
    result = evaluate(latest_checkpoint(gpt_root), seqs, tokenizer.vocab_size)
    print(json.dumps(result, indent=2))
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main_cli()
