"""Per-window embeddings of any pretrained brainfm model, written to HDF5 (``brainfm embed``).

Written once against the shared model interface: :func:`brainfm.checkpoint.load_model` gives a
model whose ``features(batch)`` returns token features (B, N, D), whatever the model (MEG-GPT,
a BrainTokenizer, ...). The windows are cut from the store with the checkpoint's own channel
vocabulary (frozen), channel types and window length.

HDF5 layout (plain h5py datasets, readable without brainfm):

==========================  ==========  =====================================================
dataset                     shape       meaning
==========================  ==========  =====================================================
``embeddings``              (W, D)      mean of the window's N token features (float32)
``tokens``                  (W, N, D)   the token features themselves (with ``tokens=True``)
``window/recording``        (W,)        index into ``recordings``
``window/start``            (W,)        first sample of the window in its recording
``window/in_training``      (W,)        the recording was in the model's training data
``recordings``              (R,)        store ids (UTF-8)
``subjects``                (R,)        subject of each recording (UTF-8)
==========================  ==========  =====================================================

Root attributes: ``checkpoint``, ``model`` (backbone or tokenizer class), ``feature_dim``,
``n_tokens_per_window``, ``store``, ``sfreq``, ``window_samples``, ``stride_samples``,
``normalization``, ``brainfm_version``, ``pooling`` ("mean over tokens").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainfm._logging import logger
from brainfm._version import __version__
from brainfm.errors import ConfigError

__all__ = ["EmbeddingSummary", "embed_store"]


@dataclass
class EmbeddingSummary:
    """What :func:`embed_store` wrote."""

    out: str
    n_windows: int
    n_recordings: int
    feature_dim: int
    n_tokens_per_window: int
    model: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _data_module(checkpoint: str | os.PathLike[str], store: Path, window_s: float | None, stride_s: float | None,
                 batch_size: int, normalization: str, info: Any) -> Any:
    from brainfm.checkpoint import read_checkpoint
    from brainfm.loading import WindowDataModule

    facts = info.data
    if window_s is None:
        if facts is None:
            raise ConfigError(f"{checkpoint} records no data facts: give the window length (--window-s).")
        window_s = facts.n_times / facts.sfreq
    types = list(facts.sensor_types) if facts is not None and facts.sensor_types else None
    data = WindowDataModule(store, window_s=window_s, stride_s=stride_s, batch_size=batch_size,
                            normalization=normalization, channel_types=types, split_unit="recording",
                            val_fraction=0.0, on_unknown_subject="ignore", freeze_vocabulary=True)
    saved = read_checkpoint(checkpoint).get("WindowDataModule")
    if saved:
        data.load_state_dict(saved)  # the pretrained model's channel and region ids
    else:
        raise ConfigError(f"{checkpoint} holds no channel vocabulary (no data-module state): it was not written by "
                          "'brainfm pretrain fit'.")
    if facts is not None and abs(data.sfreq - facts.sfreq) > 1e-6:
        raise ConfigError(f"The store {store} is sampled at {data.sfreq} Hz, the model was trained at "
                          f"{facts.sfreq} Hz: preprocess the store with the model's recipe.")
    return data


def embed_store(checkpoint: str | os.PathLike[str], store: str | os.PathLike[str], out: str | os.PathLike[str], *,
                window_s: float | None = None, stride_s: float | None = None, batch_size: int = 16,
                normalization: str = "zscore", tokens: bool = False, device: str = "cpu",
                progress: bool = False) -> EmbeddingSummary:
    """Embed every window of a store with a pretrained model and write them to HDF5.

    Parameters
    ----------
    checkpoint : path-like
        A checkpoint of ``brainfm pretrain fit`` (any recipe).
    store : path-like
        The store to embed (preprocessed like the model's training data).
    out : path-like
        The HDF5 file to write (replaced when it exists).
    window_s : float | None
        Window length in seconds; None: the model's training window.
    stride_s : float | None
        Seconds between window starts; None: ``window_s`` (no overlap).
    batch_size : int
        Windows per forward pass.
    normalization : str
        Load-time normalisation (as in training; ``zscore`` for the shipped recipes but BrainOmni's ``sensortype``).
    tokens : bool
        Also write every window's token features (W, N, D).
    device : str
        Torch device of the model.
    progress : bool
        Show a progress bar.

    Returns
    -------
    summary : EmbeddingSummary
        Counts and sizes.
    """
    import h5py

    from brainfm.checkpoint import load_model

    model = load_model(checkpoint).to(device)
    _ = model.feature_dim  # a checkpoint without features is refused before anything is written
    data = _data_module(checkpoint, Path(store), window_s, stride_s, batch_size, normalization, model.info)
    loader = data.make_dataloader("train", shuffle=False)
    trained = set(model.info.training_data.get("recordings") or [])
    names = data.recording_names
    subjects = [layout.subject for layout in data.index.layouts]
    part = model.backbone if model.backbone is not None else model.tokenizer
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    n_windows, n_tokens = 0, 0
    with h5py.File(tmp, "w") as f:
        string = h5py.string_dtype("utf-8")
        f.create_dataset("recordings", data=np.array(names, dtype=object), dtype=string)
        f.create_dataset("subjects", data=np.array(subjects, dtype=object), dtype=string)
        iterator = loader
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(loader, desc="embed", unit="batch")
        with torch.no_grad():
            for batch in iterator:
                features = model.features(batch.to(device)).float().cpu()  # (B, N, D)
                if n_windows == 0:
                    n_tokens = features.shape[1]
                    d = features.shape[2]
                    f.create_dataset("embeddings", shape=(0, d), maxshape=(None, d), dtype="f4", chunks=(256, d))
                    if tokens:
                        f.create_dataset("tokens", shape=(0, n_tokens, d), maxshape=(None, n_tokens, d), dtype="f4",
                                         chunks=(1, n_tokens, d))
                    for key, dtype in (("window/recording", "i8"), ("window/start", "i8"),
                                       ("window/in_training", "bool")):
                        f.create_dataset(key, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
                b = len(features)
                rows = slice(n_windows, n_windows + b)
                for key in ("embeddings", "window/recording", "window/start", "window/in_training") + (
                        ("tokens",) if tokens else ()):
                    f[key].resize(n_windows + b, axis=0)
                f["embeddings"][rows] = features.mean(1).numpy()
                if tokens:
                    f["tokens"][rows] = features.numpy()
                recording = batch.recording_ids.cpu().numpy()
                f["window/recording"][rows] = recording
                f["window/start"][rows] = batch.start.cpu().numpy()
                f["window/in_training"][rows] = np.array([names[r] in trained for r in recording])
                n_windows += b
        if n_windows == 0:
            raise ConfigError(f"The store {store} has no window of {data.n_times} samples to embed.")
        f.attrs.update({
            "checkpoint": str(checkpoint), "model": f"{type(part).__module__}.{type(part).__qualname__}",
            "feature_dim": int(model.feature_dim), "n_tokens_per_window": int(n_tokens), "store": str(store),
            "sfreq": float(data.sfreq), "window_samples": int(data.n_times),
            "stride_samples": int(round((stride_s or data.n_times / data.sfreq) * data.sfreq)),
            "normalization": normalization, "brainfm_version": __version__, "pooling": "mean over tokens",
        })
    os.replace(tmp, out)
    logger.info("embedded %d windows of %d recordings into %s", n_windows, len(names), out)
    return EmbeddingSummary(str(out), n_windows, len(names), int(model.feature_dim), int(n_tokens),
                            f"{type(part).__module__}.{type(part).__qualname__}")
