"""Why BrainTokenizer collapses on real EEG in short CPU runs (diagnosis, issue 7 follow-up).

Trains the tiny BrainTokenizer on a brainomni-preprocessed store (split by subject) and reports,
at initialisation and after ``--steps`` AdamW steps: how much the latents depend on the input
(``|latent(x) - latent(0)| / |latent(x)|``), their mean pairwise cosine, the compression
attention's departure from uniform, the encoder's data spread against its output for a zero
input, how much the reconstruction differs between channels, and held-out PCC and codebook
usage per level. ``--variant noq`` bypasses the quantiser (L2-normalised latents go straight to
the reconstructor) to separate the codebook from the rest of the path.

    brainfm preprocess --recipe brainomni --dataset eegmat \
        --pattern 'Subject(?P<subject>\\d+)_(?P<run>\\d)' RAW_DIR /tmp/collapse/eeg.zarr
    OMP_NUM_THREADS=1 python bench/braintokenizer_collapse.py /tmp/collapse/eeg.zarr --steps 100
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from brainfm.loading import WindowDataModule
from brainfm.tokenizers import BrainTokenizer
from brainfm.tokenizers.brain_tokenizer import brain_tokenizer_losses


def _mean_cos(v: torch.Tensor, n: int = 400) -> float:
    v = F.normalize(v.reshape(-1, v.shape[-1]), dim=-1)[:n]
    c = v @ v.T
    return float((c.sum() - len(v)) / (len(v) ** 2 - len(v)))


def probe(tok: BrainTokenizer, batch) -> dict:
    """Input dependence of the latents, attention uniformity, encoder bias share, channel spread of the output."""
    was = tok.training
    tok.eval()
    with torch.no_grad():
        lat, sens, win = tok.encode_latents(batch)
        zero = copy.copy(batch)
        object.__setattr__(zero, "signal", torch.zeros_like(batch.signal))
        lat0, _, _ = tok.encode_latents(zero)
        b, c, n, w = win.shape
        enc = tok.encoder(win.reshape(-1, 1, w))  # (B C N, D, S)
        enc0 = tok.encoder(torch.zeros(1, 1, w))
        d, s = tok.dim, tok.steps
        z = enc.reshape(b, c, n, d, s).permute(0, 2, 4, 1, 3).reshape(-1, c, d)
        v = sens[:, None].expand(b, n * s, c, d).reshape(-1, c, d)
        h = tok.compress.n_heads
        k = tok.compress.key(z + v).reshape(-1, c, h, d // h).transpose(1, 2)
        q = tok.latent_queries.reshape(tok.n_latents, h, d // h).transpose(0, 1)
        att = torch.softmax(torch.einsum("hqd,ghkd->ghqk", q, k) / (d // h) ** 0.5, -1)
        rec = tok.reconstruct_windows(tok.quantize(lat)[0], sens)
    tok.train(was)
    return {
        "latent_input_dependence": float(((lat - lat0).norm(dim=-1) / lat.norm(dim=-1)).mean()),
        "latent_mean_cos": _mean_cos(lat),
        "attention_max_weight": float(att.max(-1).values.mean()), "attention_uniform": 1.0 / c,
        "encoder_spread_over_zero_output": float(enc.std(0).norm(dim=0).mean() / enc0.norm(dim=1).mean()),
        "reconstruction_channel_spread": float(rec.std(1).mean() / rec.std()),
        "signal_channel_mean_over_std": float(batch.signal.mean(1).std() / batch.signal.std()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--normalization", default="sensortype")
    p.add_argument("--variant", choices=["base", "noq"], default="base")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zero-bias", action="store_true", help="zero every bias at init (experiment)")
    p.add_argument("--key-gain", type=float, default=1.0,
                   help="multiply both attention key weights at init (experiment: sharper attention)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.random.manual_seed(args.seed)  # a one-off bench process: model init, dropout and noise
    dm = WindowDataModule(args.store, window_s=2.0, batch_size=8, normalization=args.normalization,
                          channel_batching="bucket", split_unit="subject", val_fraction=0.34, seed=args.seed)
    dm.setup("fit")
    tok = BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=4, n_latents=4, n_heads=4, lstm_layers=1,
                         kmeans_samples=1024)
    with torch.no_grad():
        tok.compress.key.weight.mul_(args.key_gain)
        tok.reconstruct.key.weight.mul_(args.key_gain)
        if args.zero_bias:
            for name, prm in tok.named_parameters():
                if name.endswith("bias") or "bias_" in name:
                    prm.zero_()
    if args.variant == "noq":
        tok.quantize = lambda lat: (F.normalize(lat, dim=-1), None, lat.sum() * 0)
    val = [b for _, b in zip(range(4), dm.val_dataloader(), strict=False)]
    print("init", probe(tok, val[0]), flush=True)
    opt = torch.optim.AdamW(tok.parameters(), lr=args.lr)
    t0, step, it = time.time(), 0, iter(dm.train_dataloader())
    while step < args.steps:
        try:
            b = next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            continue
        terms = tok.loss(b) if args.variant == "base" else _loss_noq(tok, b)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        step += 1
        if step % 20 == 0:
            print(f"step {step} loss {terms['loss'].item():.3f} train PCC {terms['pcc'].item():.3f} "
                  f"{time.time() - t0:.0f}s", flush=True)
    print(f"after {step} steps", probe(tok, val[0]), flush=True)
    tok.eval()
    pcc, idx = [], []
    with torch.no_grad():
        for b in val:
            lat, sens, win = tok.encode_latents(b)
            q, ind, _ = tok.quantize(lat)
            rec = tok.reconstruct_windows(q, sens)
            valid = tok.usable(b)[:, :, None].expand(win.shape[:3])
            pcc.append(brain_tokenizer_losses(rec, tok.target(win), valid)["pcc"].item())
            if ind is not None:
                idx.append(ind.reshape(-1, ind.shape[-1]))
    usage = ([torch.unique(torch.cat(idx)[:, lv]).numel() / tok.n_codes for lv in range(tok.n_levels)]
             if idx else None)
    print({"variant": args.variant, "steps": step, "heldout_pcc": float(np.mean(pcc)), "usage": usage})


def _loss_noq(tok: BrainTokenizer, batch) -> dict:
    latents, sensors, windows = tok.encode_latents(batch)
    rec = tok.reconstruct_windows(F.normalize(latents, dim=-1), sensors)
    valid = tok.usable(batch)[:, :, None].expand(windows.shape[:3])
    terms = brain_tokenizer_losses(rec, tok.target(windows), valid, tok.phase_weight)
    terms["loss"] = terms["reconstruction"]
    return terms


if __name__ == "__main__":
    main()
