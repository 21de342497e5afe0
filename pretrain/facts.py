"""What the engine takes from the data module: the model-shaping facts and the training record."""

from __future__ import annotations

from typing import Any

import numpy as np

from brainfm.loading.datamodule import WindowDataModule
from brainfm.loading.windows import WindowIndex
from brainfm.nn.data_facts import DataFacts
from brainfm.store import open_store

__all__ = ["data_facts", "training_record"]


def data_facts(index: WindowIndex) -> DataFacts:
    """The facts of a window index (LightningCLI links ``data.index`` through this into the model).

    Parameters
    ----------
    index : WindowIndex
        The data module's index (:attr:`WindowDataModule.index`).

    Returns
    -------
    facts : DataFacts
        Sampling rate, window length, widest recording, vocabulary sizes, channel types.
    """
    recording_types = {layout.recording_id: sorted(set(layout.types)) for layout in index.layouts}
    present = sorted({t for types in recording_types.values() for t in types})
    positioned = {layout.recording_id: int((layout.good & layout.pos_mask).sum()) for layout in index.layouts}
    regioned = {layout.recording_id: int((layout.good & (layout.region_ids > 1)).sum()) for layout in index.layouts}
    unpositioned = {layout.recording_id: int((layout.good & ~layout.pos_mask).sum()) for layout in index.layouts}
    return DataFacts(
        sfreq=float(index.sfreq),
        n_times=int(index.window_size_samples),
        n_channels=int(index.max_channels),
        vocabulary_size=len(index.channel_vocabulary),
        n_regions=len(index.region_vocabulary),
        sensor_types=present,
        recording_types=recording_types,
        positioned=positioned,
        regions=list(index.region_vocabulary.tokens),
        regioned=regioned,
        unpositioned=unpositioned,
        sensor_codes={layout.recording_id: sorted({int(c) for c in layout.sensor_type[layout.good]})
                      for layout in index.layouts},
    )


def training_record(data: WindowDataModule) -> dict[str, Any]:
    """The store, its format version, the preprocessing recipes and the training split's recordings and subjects.

    Parameters
    ----------
    data : WindowDataModule
        The data module (split on first use).

    Returns
    -------
    record : dict
        ``store``, ``store_format_version``, ``preprocessing`` (recipe name -> sorted config
        hashes), ``recordings`` and ``subjects`` (sorted) of the training split, ``sources``
        (recording id -> SHA-256 of its source file, which the leakage guard matches whatever id
        another store gives the same file), and ``loading``:
        the data module's ``normalization``, ``channel_types``, ``sensortype_eps``, ``window_s``
        and ``stride_s`` (so that ``brainfm tokenize`` and ``brainfm tokenizer report`` read
        the data as the model saw it).
    """
    train = data.split("train")
    used = sorted({int(r) for r in np.unique(train.recording)})
    layouts = [train.layouts[i] for i in used]
    store = open_store(data.store)
    recipes: dict[str, set[str]] = {}
    for layout in layouts:
        provenance = store[layout.recording_id].provenance
        recipes.setdefault(str(provenance.get("recipe", "")), set()).add(str(provenance.get("config_hash", "")))
    return {
        "store": str(data.store),
        "store_format_version": int(store.format_version),
        "preprocessing": {name: sorted(hashes) for name, hashes in sorted(recipes.items())},
        "recordings": sorted(layout.recording_id for layout in layouts),
        "subjects": sorted({layout.subject for layout in layouts}),
        "sources": {layout.recording_id: str(store[layout.recording_id].source.get("sha256") or "")
                    for layout in sorted(layouts, key=lambda lay: lay.recording_id)},
        "loading": {
            "normalization": data.normalization,
            "channel_types": None if data.channel_types is None else list(data.channel_types),
            "sensortype_eps": None if data.sensortype_eps is None else dict(data.sensortype_eps),
            "window_s": data.window_s,
            "stride_s": data.stride_s,
        },
    }
