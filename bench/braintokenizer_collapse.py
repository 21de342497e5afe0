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
        # before the first training batch the codebooks are empty (k-means runs on it): use the
        # L2-normalised latents, which is what the k-means codebook approximates
        quantised = (tok.quantize(lat)[0] if bool(tok.quantizer.layers[0].initted)
                     else F.normalize(lat, dim=-1))
        rec = tok.reconstruct_windows(quantised, sens)
        tgt = tok.target(win)
    tok.train(was)
    return {
        "latent_input_dependence": float(((lat - lat0).norm(dim=-1) / lat.norm(dim=-1)).mean()),
        "latent_mean_cos": _mean_cos(lat), "latent_rms": float(lat.pow(2).mean().sqrt()),
        "attention_max_weight": float(att.max(-1).values.mean()), "attention_uniform": 1.0 / c,
        "encoder_spread_over_zero_output": float(enc.std(0).norm(dim=0).mean() / enc0.norm(dim=1).mean()),
        "reconstruction_channel_spread": float(rec.std(1).mean() / rec.std()),
        "target_channel_spread": float(tgt.std(1).mean() / tgt.std()),
        "sensor_embedding_mean_cos": _mean_cos(sens[0]),
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
    p.add_argument("--compress-key-gain", type=float, default=1.0, help="multiply the compression key weights")
    p.add_argument("--recon-key-gain", type=float, default=1.0, help="multiply the reconstructor's key weights")
    p.add_argument("--recon-value-gain", type=float, default=1.0, help="multiply the reconstructor's value weights")
    p.add_argument("--compress-value-gain", type=float, default=1.0, help="multiply the compression value weights")
    p.add_argument("--encoder-out-gain", type=float, default=1.0, help="multiply the SEANet encoder's last convolution")
    p.add_argument("--conv-gain", type=float, default=None,
                   help="set every SEANet convolution's weight-norm magnitude g to this (1: unit gain per output)")
    p.add_argument("--linear-unit", action="store_true",
                   help="attention value/output weights N(0, 1/fan_in) (unit gain) before the other gains")
    p.add_argument("--type-std", type=float, default=None, help="re-draw the type embedding with this std")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=0, help="held-out PCC every this many steps (0: at the end)")
    p.add_argument("--init", choices=["brainfm", "pytorch"], default="brainfm",
                   help="brainfm's reset_parameters (default) or PyTorch's defaults (the code before the fix)")
    p.add_argument("--size", choices=["tiny", "published"], default="tiny")
    p.add_argument("--val-fraction", type=float, default=0.34, help="share of subjects held out")
    p.add_argument("--val-batches", type=int, default=4,
                   help="held-out batches per channel count (the val loader is bucketed by channel count)")
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999), help="AdamW betas")
    p.add_argument("--codebook-decay", type=float, default=0.99, help="EMA decay of the codebooks")
    p.add_argument("--dead-threshold", type=float, default=2.0, help="EMA count under which a code is replaced")
    p.add_argument("--quantizer-start", type=int, default=0,
                   help="train without the quantiser (L2-normalised latents) before this step, then k-means and RVQ")
    p.add_argument("--clip", type=float, default=0.0, help="gradient-norm clipping (0: none)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.random.manual_seed(args.seed)  # a one-off bench process: model init, dropout and noise
    dm = WindowDataModule(args.store, window_s=2.0, batch_size=8, normalization=args.normalization,
                          channel_batching="bucket", split_unit="subject", val_fraction=args.val_fraction, seed=args.seed)
    dm.setup("fit")
    if args.init == "pytorch":  # skip brainfm's initialisation: every layer keeps PyTorch's default
        BrainTokenizer.reset_parameters = lambda self: None
    tok = (BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=4, n_latents=4, n_heads=4, lstm_layers=1,
                          kmeans_samples=1024, codebook_decay=args.codebook_decay, dead_threshold=args.dead_threshold)
           if args.size == "tiny" else BrainTokenizer(codebook_decay=args.codebook_decay, dead_threshold=args.dead_threshold))
    with torch.no_grad():
        if args.conv_gain is not None:
            for name, prm in tok.named_parameters():
                if name.endswith("parametrizations.weight.original0"):
                    prm.fill_(args.conv_gain)
        if args.linear_unit:
            for lin in (tok.compress.key, tok.compress.value, tok.compress.out, tok.reconstruct.key,
                        tok.reconstruct.value, tok.reconstruct.out):
                lin.weight.normal_(0.0, lin.in_features ** -0.5)
        tok.compress.key.weight.mul_(args.key_gain * args.compress_key_gain)
        tok.reconstruct.key.weight.mul_(args.key_gain * args.recon_key_gain)
        tok.reconstruct.value.weight.mul_(args.recon_value_gain)
        tok.compress.value.weight.mul_(args.compress_value_gain)
        tok.encoder.model[-1].conv.parametrizations.weight.original0.mul_(args.encoder_out_gain)
        if args.type_std is not None:
            tok.sensor_encoder.type_embedding.weight.normal_(0.0, args.type_std)
        if args.zero_bias:
            for name, prm in tok.named_parameters():
                if name.endswith("bias") or "bias_" in name:
                    prm.zero_()
    if args.variant == "noq":
        tok.quantize = lambda lat: (F.normalize(lat, dim=-1), None, lat.sum() * 0)
    val, per_c = [], {}
    for b in dm.val_dataloader():  # up to --val-batches of every channel count
        c = int(b.channel_mask[0].sum())
        if per_c.get(c, 0) < args.val_batches:
            per_c[c] = per_c.get(c, 0) + 1
            val.append(b)
    print("held-out batches per channel count", per_c, flush=True)
    print("init", probe(tok, val[0]), flush=True)
    opt = torch.optim.AdamW(tok.parameters(), lr=args.lr, betas=tuple(args.betas))
    t0, step, it = time.time(), 0, iter(dm.train_dataloader())
    while step < args.steps:
        try:
            b = next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            continue
        terms = tok.loss(b) if args.variant == "base" and step >= args.quantizer_start else _loss_noq(tok, b)
        opt.zero_grad()
        terms["loss"].backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(tok.parameters(), args.clip)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            line = f"step {step} loss {terms['loss'].item():.3f} train PCC {terms['pcc'].item():.3f} "
            if args.eval_every and step % args.eval_every == 0:
                pcc, usage = heldout(tok, val)
                line += f"held-out PCC {pcc:.3f} {heldout_by_channels(tok, val)} usage {usage} "
            print(line + f"{time.time() - t0:.0f}s", flush=True)
    print(f"after {step} steps", probe(tok, val[0]), flush=True)
    pcc, usage = heldout(tok, val)
    print({"variant": args.variant, "steps": step, "heldout_pcc": pcc,
           "heldout_pcc_by_channels": heldout_by_channels(tok, val), "usage": usage})


def heldout(tok: BrainTokenizer, val: list) -> tuple[float, list[float] | None]:
    """Mean held-out PCC over the batches ``val`` and the share of codes used per level on them."""
    was = tok.training
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
    tok.train(was)
    usage = ([torch.unique(torch.cat(idx)[:, lv]).numel() / tok.n_codes for lv in range(tok.n_levels)]
             if idx else None)
    return float(np.mean(pcc)), usage

def heldout_by_channels(tok: BrainTokenizer, val: list) -> dict[int, float]:
    """Held-out PCC of the batches ``val`` grouped by their channel count (one dataset per count here)."""
    groups: dict[int, list] = {}
    for b in val:
        groups.setdefault(int(b.channel_mask[0].sum()), []).append(b)
    return {c: round(heldout(tok, bs)[0], 3) for c, bs in sorted(groups.items())}


def _loss_noq(tok: BrainTokenizer, batch) -> dict:
    latents, sensors, windows = tok.encode_latents(batch)
    rec = tok.reconstruct_windows(F.normalize(latents, dim=-1), sensors)
    valid = tok.usable(batch)[:, :, None].expand(windows.shape[:3])
    terms = brain_tokenizer_losses(rec, tok.target(windows), valid, tok.phase_weight)
    terms["loss"] = terms["reconstruction"]
    return terms


if __name__ == "__main__":
    main()
