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


def _batches(store: Path, window_s: float, seed: int, split: str):
    from brainfm.loading import WindowDataModule

    data = WindowDataModule(store, window_s=window_s, batch_size=16, seed=seed, val_fraction=0.25,
                            split_unit="subject", on_unknown_subject="ignore")
    yield from data.make_dataloader(split, shuffle=False)


def _sequences(batch, tokenizer, n_loss: int):
    """Real-channel rows of one batch: tokens (M, 81), lags (M, n_loss, 80), channel ids, recordings."""
    from brainfm.models.next_token import sequences_of

    with torch.no_grad():
        tokens = tokenizer.encode(batch)
    seq, n = sequences_of(tokens, 81)  # (B n, C, 81)
    sig, _ = sequences_of(batch.signal, 81)
    mask = batch.channel_mask.repeat_interleave(n, 0)  # (B n, C)
    # the 80 samples before each target, zero-padded where the sequence is shorter (MEG-GPT sees the same span)
    padded = F.pad(sig, (n_loss - 1, 0))
    lags = torch.stack([padded[..., p - 81 + n_loss: p - 1 + n_loss] for p in range(81 - n_loss, 81)], dim=2)
    return seq, lags, mask, batch.channel_ids.repeat_interleave(n, 0), batch.recording_ids.repeat_interleave(n, 0)


def evaluate(store: Path, tokenizer, model_path: Path, window_s: float, n_loss: int = 8,
             max_ar_rows: int = 200_000) -> dict[str, float]:
    """Cross-entropy (nats) on the held-out subjects' last n_loss positions: unigram, AR-80, MEG-GPT."""
    from brainfm.checkpoint import load_model

    vocab = int(tokenizer.vocab_size)
    counts = torch.zeros(vocab, dtype=torch.float64)
    xs, ys, rows = [], [], 0
    n_train = 0
    for batch in _batches(store, window_s, 0, "train"):
        seq, lags, mask, _, _ = _sequences(batch, tokenizer, n_loss)
        counts += torch.bincount(seq[mask].flatten(), minlength=vocab).double()
        n_train += int(mask.sum())
        if rows < max_ar_rows:
            x, y = lags[mask].reshape(-1, 80), seq[..., -n_loss:][mask].reshape(-1)
            xs.append(x)
            ys.append(y)
            rows += len(x)
    log_p = ((counts + 1.0) / (counts + 1.0).sum()).log().float()
    L.seed_everything(0, verbose=False)
    ar = torch.nn.Linear(80, vocab)
    optimizer = torch.optim.Adam(ar.parameters(), lr=3e-3)
    x_train, y_train = torch.cat(xs), torch.cat(ys)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2000):
        pick = torch.randint(0, len(x_train), (4096,), generator=generator)
        loss = F.cross_entropy(ar(x_train[pick]), y_train[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    backbone = load_model(model_path).backbone
    sums = {"unigram": 0.0, "ar80": 0.0, "meg_gpt_tiny": 0.0}
    n = 0
    with torch.no_grad():
        for batch in _batches(store, window_s, 0, "val"):
            seq, lags, mask, channels, recordings = _sequences(batch, tokenizer, n_loss)
            target = seq[..., -n_loss:][mask].reshape(-1)
            sums["unigram"] += float(F.cross_entropy(log_p.expand(len(target), vocab), target, reduction="sum"))
            sums["ar80"] += float(F.cross_entropy(ar(lags[mask].reshape(-1, 80)), target, reduction="sum"))
            logits = backbone(seq[..., :80], channels, recordings, mask, last=n_loss)[mask].reshape(-1, vocab)
            sums["meg_gpt_tiny"] += float(F.cross_entropy(logits, target, reduction="sum"))
            n += len(target)
    result: dict[str, float] = {k: v / n for k, v in sums.items()}
    result.update(n_heldout_targets=n, n_train_channel_sequences=n_train, ar_training_rows=int(len(x_train)))
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
    result = evaluate(store, tokenizer, latest_checkpoint(gpt_root), 0.648)
    steps = [line.split(",")[1] for line in (next(gpt_root.glob("lightning_logs/version_*")) / "metrics.csv")
             .read_text().splitlines()[1:]]
    result["training_steps"] = int(max(int(s) for s in steps)) + 1 if steps else 0
    print(json.dumps(result, indent=2))
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main_cli()
