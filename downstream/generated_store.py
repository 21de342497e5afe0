"""Synthetic recordings from a generative checkpoint, written as a new store (``brainfm generate``).

MEG-GPT's generation protocol (spec ``meg-gpt.md`` §6): for each chosen recording of a store,
a prompt of ``context`` tokens per channel is drawn from the unigram token distribution of the
store's tokenised windows; the model then samples every channel independently, step by step
(temperature, nucleus / top-k filtering, the unknown token 0 excluded), conditioned on the
recording's embedding when the model was trained on it. The prompt is dropped and the tokens
are detokenised with the checkpoint's tokenizer, giving z-scored signals that are rescaled
with the recording's stored channel means and standard deviations, so the new store holds
SI units like any other and every brainfm tool reads it. Sampling is seeded and batched over
recordings; the output does not depend on the batch size.

The realism report (Welch PSD error per band, burst statistics, fingerprints) compares the
generated recordings and an 80-lag autoregressive baseline fitted on the same real recordings
with the real ones (:mod:`brainfm.downstream.generation`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainfm._logging import logger
from brainfm.errors import ConfigError

__all__ = ["generate_store"]


def _check_out(out: Path, store: Path) -> None:
    """Refuse to write into (or over) the source store, or into a non-empty folder."""
    out_r, store_r = out.resolve(), store.resolve()
    if out_r == store_r or store_r in out_r.parents or out_r in store_r.parents:
        raise ConfigError(f"The output {out} is the source store {store} or overlaps it: generated data are never "
                          "written into the source store. Give another folder.")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"The output folder {out} exists and is not empty: give a new folder.")


def _check_codes(store: Any, tokenizer: Any) -> None:
    """Refuse a store whose cached token codes (``brainfm tokenize``) all come from another tokenizer
    than the checkpoint's (another class, configuration, vocabulary or weights)."""
    from brainfm.checkpoint import state_digest

    inner = getattr(tokenizer, "inner", tokenizer)
    spec = _inner_spec(tokenizer)
    digest = state_digest(inner.state_dict())
    found: list[tuple[str, str, dict[str, Any]]] = []
    for rid in store:
        try:
            codes = store[rid]._group["codes"]
        except KeyError:
            continue
        found += [(rid, name, dict(codes[name].attrs)) for name in codes.array_keys()]
    if not found:
        return

    def same(attrs: dict[str, Any]) -> bool:
        theirs = attrs.get("tokenizer") if isinstance(attrs.get("tokenizer"), dict) else {}
        if theirs.get("digest") is not None:
            return theirs["digest"] == digest
        return (theirs.get("class_path") == spec["class_path"] and theirs.get("init_args") == spec["init_args"]
                and int(attrs.get("vocab_size", tokenizer.vocab_size)) == int(tokenizer.vocab_size))

    if any(same(attrs) for _, _, attrs in found):
        return
    rid, name, attrs = found[0]
    theirs = attrs.get("tokenizer") if isinstance(attrs.get("tokenizer"), dict) else {}
    raise ConfigError(
        f"The store's token codes {name!r} (recording {rid}) were made by another tokenizer "
        f"({theirs.get('class_path', 'unknown')}, vocabulary {attrs.get('vocab_size')}, weights "
        f"{str(theirs.get('digest'))[:12]}) than the checkpoint's ({spec['class_path']}, vocabulary "
        f"{tokenizer.vocab_size}, weights {digest[:12]}): tokenize the store with the checkpoint's tokenizer, "
        "or use a store without codes."
    )


def _inner_spec(tokenizer: Any) -> dict[str, Any]:
    from brainfm.checkpoint import module_spec

    inner = getattr(tokenizer, "inner", tokenizer)
    return module_spec(inner)


def generate_store(checkpoint: str | os.PathLike[str], store: str | os.PathLike[str], seconds: float,
                   out: str | os.PathLike[str], *, recordings: list[str] | None = None, seed: int = 0,
                   temperature: float = 1.0, top_p: float | None = 0.99, top_k: int | None = None,
                   batch_size: int = 8, context: int | None = None, device: str = "cpu", realism: bool = True,
                   ar_baseline: bool = True, real_seconds: float | None = 300.0,
                   progress: bool = False) -> dict[str, Any]:
    """Generate ``seconds`` of signal for recordings of a store and write them as a new store.

    Parameters
    ----------
    checkpoint : path-like
        A generative checkpoint (MEG-GPT) with its sample tokenizer.
    store : path-like
        The real store: channels, conditioning labels, the unigram prompt and the realism reference.
    seconds : float
        Seconds to generate per recording (after the prompt).
    out : path-like
        New, empty folder for the generated store (never the source store).
    recordings : list of str | None
        Store ids to generate for (None: every recording the model can read).
    seed : int
        Seed of the prompts and of sampling.
    temperature, top_p, top_k
        Sampling settings (spec §6: temperature 1, nucleus 0.99).
    batch_size : int
        Recordings sampled together.
    context : int | None
        Prompt length in tokens; must equal the model's context (None: the model's).
    device : str
        Torch device.
    realism, ar_baseline : bool
        Write the realism report (``realism.json`` and figures in ``out/report``), with the
        80-lag AR baseline beside the model.
    real_seconds : float | None
        Seconds of each real recording used by the report and to fit the AR baseline.
    progress : bool
        Progress bar over sampling batches.

    Returns
    -------
    summary : dict
        ``out``, ``recordings``, ``seconds``, ``sfreq``, ``seed``, sampling settings, ``realism``.
    """
    from brainfm.checkpoint import load_model
    from brainfm.data.recording import Identity, Recording
    from brainfm.downstream.embedding import _data_module
    from brainfm.store import open_store
    from brainfm.store.writer import StoreWriter

    store, out = Path(store), Path(out)
    _check_out(out, store)
    model = load_model(checkpoint).to(device)
    if not model.generative:
        raise ConfigError(f"{checkpoint} is not a generative model (its backbone cannot generate).")
    tokenizer, backbone = model.tokenizer, model.backbone
    if tokenizer is None or not hasattr(tokenizer, "detokenize"):
        raise ConfigError(f"{checkpoint} has no sample tokenizer to detokenise generated tokens with.")
    model_context = int(backbone.context)  # type: ignore[union-attr]
    if context is not None and context != model_context:
        raise ConfigError(f"A context of {context} tokens was asked for; the model's context is {model_context} "
                          f"({'longer than' if context > model_context else 'different from'} what it reads).")
    source = open_store(store)
    _check_codes(source, tokenizer)
    data = _data_module(checkpoint, store, None, None, 16, "zscore", model.info)
    layouts = data.index.layouts
    if recordings is not None:
        unknown = sorted(set(recordings) - {layout.recording_id for layout in layouts})
        if unknown:
            raise ConfigError(f"Recordings {unknown} are not in {store} (or have none of the model's channel types).")
        layouts = [layout for layout in layouts if layout.recording_id in set(recordings)]
    if not layouts:
        raise ConfigError(f"{store} has no recording with the model's channel types.")
    sfreq = float(data.sfreq)
    n_steps = int(round(seconds * sfreq))
    if n_steps < 1:
        raise ConfigError(f"--seconds {seconds} gives no sample at {sfreq} Hz.")

    # unigram distribution of the store's tokens (good channels), for the prompts
    counts = torch.zeros(int(tokenizer.vocab_size), dtype=torch.float64)
    with torch.no_grad():
        for i, batch in enumerate(data.make_dataloader("train", shuffle=False)):
            tokens = tokenizer.encode(batch.to(device)).cpu()
            counts += torch.bincount(tokens[batch.channel_mask.cpu()].flatten(), minlength=len(counts)).double()
            if i >= 63:
                break
    counts[0] = 0.0
    if counts.sum() == 0:
        raise ConfigError(f"No token could be read from {store} to draw the prompts from.")
    unigram = counts / counts.sum()

    # conditioning: the row of each recording in the model's recording table, if trained on it
    trained = list((model.info.data.recording_types if model.info.data is not None else {}) or {})
    seen = getattr(backbone, "seen", None)

    def label(rid: str) -> int:
        if rid not in trained:
            return -1
        row = trained.index(rid)
        return row if seen is None or bool(seen[row]) else -1

    generator = torch.Generator().manual_seed(int(seed))
    by_count: dict[int, list[Any]] = {}
    for layout in layouts:
        by_count.setdefault(int(layout.good.sum()), []).append(layout)
    generated: dict[str, np.ndarray] = {}
    groups = [g for count, g in sorted(by_count.items()) if count > 0]
    iterator: Any = [(g, s) for g in groups for s in range(0, len(g), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="generate", unit="batch")
    for group, start in iterator:
        part = group[start:start + batch_size]
        channel_ids = torch.as_tensor(np.stack([layout.channel_ids[layout.good] for layout in part]))  # (R, C)
        r, c = channel_ids.shape
        prompt = torch.multinomial(unigram.float().expand(r * c, -1), model_context, replacement=True,
                                   generator=generator).reshape(r, c, model_context)  # (R, C, context)
        labels = torch.tensor([label(layout.recording_id) for layout in part])
        tokens = backbone.generate(prompt.to(device), n_steps, channel_ids.to(device),  # type: ignore[union-attr]
                                   recording_ids=labels.to(device), temperature=temperature, top_p=top_p,
                                   top_k=top_k, generator=generator, batch_size=r)
        with torch.no_grad():
            z = tokenizer.detokenize(tokens).float().cpu().numpy()  # (R, C, T) z-scored
        for layout, signal in zip(part, z, strict=True):
            generated[layout.recording_id] = signal
        logger.info("generated %d recordings x %d channels x %d samples", r, c, n_steps)

    writer = StoreWriter(out)
    written = []
    for layout in layouts:
        if layout.recording_id not in generated:
            continue
        real = source[layout.recording_id]
        rows = layout.rows[layout.good]
        table = real.channels.iloc[rows].reset_index(drop=True)
        stats = layout.stats[layout.good]  # mean, std, median, iqr of the selected good channels
        signal = (generated[layout.recording_id] * stats[:, 1:2] + stats[:, 0:1]).astype(np.float32)
        identity = Identity(dataset=f"generated-{real.dataset}", subject=real.subject, session=real.session,
                            task=real.task, run=real.run)
        recording = Recording(signal=signal, sfreq=sfreq, identity=identity, channels=table,
                              source={"path": str(store), "relpath": layout.recording_id, "size": 0, "sha256": "",
                                      "format": "generated", "recording_id": f"generated_{layout.recording_id}"},
                              provenance={"recipe": "generate", "config_hash": "", "warnings": [],
                                          "steps": [{"generate": {"checkpoint": str(checkpoint), "seed": int(seed),
                                                                  "temperature": temperature, "top_p": top_p,
                                                                  "top_k": top_k, "seconds": seconds,
                                                                  "conditioned_on": label(layout.recording_id)}}]})
        written.append(writer.write(recording))
    summary: dict[str, Any] = {"out": str(out), "recordings": written, "seconds": float(n_steps / sfreq),
                               "sfreq": sfreq, "seed": int(seed), "temperature": temperature, "top_p": top_p,
                               "top_k": top_k, "context": model_context}
    if realism:
        summary["realism"] = _realism(source, layouts, generated, sfreq, out / "report", ar_baseline, real_seconds,
                                      int(seed))
    return summary


def _realism(source: Any, layouts: list[Any], generated: dict[str, np.ndarray], sfreq: float, report_dir: Path,
             ar_baseline: bool, real_seconds: float | None, seed: int) -> dict[str, Any]:
    """The realism report of the largest group of recordings with one channel count (AR baseline beside)."""
    try:
        from brainfm.downstream.generation import (
            fit_ar_baseline,
            generate_ar,
            realism_report,
            write_realism_report,
        )
    except ImportError as exc:  # the report's module is not installed in this build
        return {"skipped": f"realism report unavailable: {exc}"}
    groups: dict[int, list[Any]] = {}
    for layout in layouts:
        if layout.recording_id in generated:
            groups.setdefault(int(layout.good.sum()), []).append(layout)
    chosen = max(groups.values(), key=len)
    limit = None if real_seconds is None else int(real_seconds * sfreq)
    real = []
    for layout in chosen:
        signal = np.asarray(source[layout.recording_id].signal[layout.rows[layout.good], :limit], dtype=np.float64)
        real.append(signal)
    fake = [generated[layout.recording_id].astype(np.float64) for layout in chosen]
    baselines = None
    if ar_baseline:
        zscored = [(s - s.mean(1, keepdims=True)) / np.maximum(s.std(1, keepdims=True), 1e-12) for s in real]
        ar = fit_ar_baseline(zscored, n_lags=80)
        baselines = {"ar80": list(generate_ar(ar, fake[0].shape[1], n_recordings=len(fake), seed=seed))}
    report = realism_report(real, {"meg_gpt": fake}, sfreq, baselines=baselines)
    write_realism_report(report, report_dir)
    report["recordings"] = [layout.recording_id for layout in chosen]
    return report
