"""The trials of a ``data`` section: a store, THINGS-EEG2 or THINGS-MEG, with their embeddings.

:func:`load_trials` turns a validated :class:`~brainfm.downstream.retrieval.run_config.DataConfig`
into :class:`~brainfm.downstream.retrieval.paired_data.PairedTrials`, with concept embeddings
read from a file or computed from concept names (``data.text_model``), and
:func:`held_out_mask` says which trials are held out for testing.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np

from brainfm._logging import warn
from brainfm.downstream.retrieval.paired_data import (
    ConceptEmbeddings,
    PairedTrials,
    load_concept_embeddings,
    load_paired_trials,
)
from brainfm.downstream.retrieval.run_config import DataConfig
from brainfm.errors import ConfigError
from brainfm.store import open_store

__all__ = ["draw_held_out", "held_out_mask", "load_trials"]


def _store_concepts(data: DataConfig) -> list[str]:
    """Concept ids named by the store's events (for text embeddings)."""
    regex = re.compile(data.pattern) if data.pattern is not None else None
    opened = open_store(data.store)
    names = set()
    for rid in opened:
        for description in opened[rid].events["description"]:
            description = str(description)
            if description.upper().startswith("BAD"):
                continue
            match = regex.fullmatch(description) if regex is not None else None
            if regex is None or match is not None:
                names.add(match.group(1) if match is not None else description)
    return sorted(names)


def _embeddings(data: DataConfig, names: list[str]) -> ConceptEmbeddings:
    if data.embeddings is not None:
        return load_concept_embeddings(data.embeddings)
    from brainfm.downstream.retrieval.text_embeddings import embed_concept_names

    return embed_concept_names(names, data.text_model, template=data.text_template)


def load_trials(data: DataConfig, part: Literal["train", "test", "all"] = "all") -> PairedTrials:
    """Read the trials and concept embeddings a ``data`` section describes.

    Parameters
    ----------
    data : DataConfig
        The validated section.
    part : {"train", "test", "all"}
        THINGS layouts: which of the dataset's splits to read ("all": both, with ``is_test``).
        A store is always read whole (its split is drawn by :func:`draw_held_out`).

    Returns
    -------
    trials : PairedTrials
    """
    if data.layout == "store":
        names = _store_concepts(data) if data.text_model is not None else []
        return load_paired_trials(
            data.store, _embeddings(data, names), data.tmin, data.tmax, pattern=data.pattern,
            normalization=data.normalization, channel_types=data.channel_types,
        )
    from brainfm.downstream.retrieval.things_layouts import load_things

    splits = ["train", "test"] if part == "all" else [part]
    parts = [
        load_things(data.layout, data.root, data.images, split, subjects=data.subjects, targets=data.targets,
                    tmin=data.tmin, tmax=data.tmax)
        for split in splits
    ]
    keys = [key for p in parts for key in p.keys]
    embeddings = _embeddings(data, list(dict.fromkeys(keys)))
    row_of = {key: row for row, key in enumerate(embeddings.ids)}
    missing = sorted({key for key in keys if key not in row_of})
    if missing:
        raise ConfigError(
            f"{len(missing)} {data.targets} id(s) of {data.root} have no embedding in {data.embeddings or data.text_model} "
            f"(first: {missing[:5]}); the embeddings must be keyed by {data.targets} id (data.targets)."
        )
    is_test = np.concatenate([np.full(len(p.keys), split == "test") for p, split in zip(parts, splits, strict=True)])
    return PairedTrials(
        np.concatenate([p.signals for p in parts]), np.array([row_of[k] for k in keys], dtype=np.int64), embeddings,
        np.concatenate([p.subjects for p in parts]), is_test=is_test,
    )


def draw_held_out(trials: PairedTrials, data: DataConfig) -> dict[str, Any]:
    """Choose what is held out: the dataset's own test split, or a seeded share of concepts or recordings.

    Parameters
    ----------
    trials : PairedTrials
        All trials.
    data : DataConfig
        ``split``, ``test_fraction`` and ``split_seed``.

    Returns
    -------
    held_out : dict
        ``{"unit": "dataset" | "concepts" | "recordings", "ids": [...]}`` (concept ids of the
        test trials for ``dataset`` and ``concepts``; recording ids for ``recordings``), as saved
        in the checkpoint.
    """
    if trials.is_test is not None:
        rows = np.unique(trials.concepts[trials.is_test])
        return {"unit": "dataset", "ids": [trials.embeddings.ids[r] for r in rows]}
    if data.split == "recordings":
        present = np.unique(trials.recordings.astype(str))
        unit = "recordings"
    else:
        present = np.array([trials.embeddings.ids[r] for r in np.unique(trials.concepts)])
        unit = "concepts"
    n_test = max(1, round(data.test_fraction * present.size))
    if n_test >= present.size:
        raise ConfigError(
            f"Only {present.size} {unit} have trials; holding out {n_test} would leave none for training. "
            + ("Use data.split: recordings for data with few concepts." if unit == "concepts" else "")
        )
    held = np.random.default_rng(data.split_seed).permutation(present)[:n_test]
    return {"unit": unit, "ids": sorted(str(h) for h in held)}


def held_out_mask(trials: PairedTrials, held_out: dict[str, Any]) -> np.ndarray:
    """(n_trials,) bool: the trials ``held_out`` (from :func:`draw_held_out`) sets aside for testing.

    Parameters
    ----------
    trials : PairedTrials
        The trials.
    held_out : dict
        As saved in the checkpoint.

    Returns
    -------
    mask : numpy.ndarray of bool
    """
    if held_out["unit"] == "dataset":
        if trials.is_test is None:
            raise ConfigError("The run was trained on a dataset's own test split, but the data now come from a store.")
        return trials.is_test.copy()
    if held_out["unit"] == "recordings":
        if trials.recordings is None:
            raise ConfigError("The run held out recordings, but these trials carry no recording ids.")
        mask = np.isin(trials.recordings.astype(str), held_out["ids"])
    else:
        row_of = {c: r for r, c in enumerate(trials.embeddings.ids)}
        known = [row_of[c] for c in held_out["ids"] if c in row_of]
        if len(known) < len(held_out["ids"]):
            warn(f"{len(held_out['ids']) - len(known)} held-out concept(s) of the run have no embedding any more.")
        mask = np.isin(trials.concepts, known)
    if not mask.any():
        raise ConfigError(f"No trial of the held-out {held_out['unit']} ({held_out['ids'][:5]}) is in the data.")
    return mask
