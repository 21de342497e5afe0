"""Train/validation/test splits of a window index, by subject, recording or window, seeded.

Units (subjects, recordings or single windows) are sorted by name, permuted with a
generator seeded by ``seed`` and cut by the fractions, so a split depends only on the
data's names, the fractions and the seed, never on the order recordings were stored.
Splitting by ``subject`` keeps every window of a subject in one part (brainfm's default;
BrainOmni's reference splits by ``window``, so test windows can come from training subjects).

Two ways a split can hand validation data that training has seen, and what happens:

- **Unknown subjects.** A recording stored without a subject (a plain folder with neither
  ``sub-`` names nor ``--pattern``; ``subject_source`` ``recording``, or ``unknown`` in stores
  written before brainfm recorded it) counts as its own subject, so two recordings of one
  person can land in training and validation. Splitting by subject then *refuses*
  (``on_unknown_subject="raise"``, a :class:`~brainfm.errors.ConfigError` naming the
  recordings and the fix) unless told otherwise: a warning scrolls past in a training log,
  while the leak silently inflates every validation score computed from the split.
- **Overlapping windows split by window.** With ``unit="window"`` and windows that overlap
  (a stride shorter than the window, or event-locked windows closer than their length),
  neighbouring windows in different parts share samples: a warning says how many.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from brainfm._check import check_option
from brainfm._logging import logger, warn
from brainfm.data.recording import KNOWN_SUBJECT_SOURCES
from brainfm.errors import ConfigError
from brainfm.loading.windows import WindowIndex

__all__ = ["ON_UNKNOWN_SUBJECT", "SPLIT_UNITS", "split_index"]

SPLIT_UNITS: tuple[str, ...] = ("subject", "recording", "window")
#: What splitting by subject does when some recordings have no known subject.
ON_UNKNOWN_SUBJECT: tuple[str, ...] = ("raise", "warn", "ignore")


def split_index(
    index: WindowIndex,
    fractions: Mapping[str, float],
    *,
    unit: Literal["subject", "recording", "window"] = "subject",
    seed: int = 0,
    on_unknown_subject: Literal["raise", "warn", "ignore"] = "raise",
) -> dict[str, WindowIndex]:
    """Split windows into named parts.

    Parameters
    ----------
    index : WindowIndex
        The windows.
    fractions : mapping of str to float
        Part name -> fraction of the units, e.g. ``{"train": 0.8, "val": 0.1, "test": 0.1}``;
        fractions are normalised by their sum. Every part with a positive fraction gets at
        least one unit when there are enough units.
    unit : "subject" | "recording" | "window"
        What is kept together.
    seed : int
        Seed of the permutation.
    on_unknown_subject : "raise" | "warn" | "ignore"
        When splitting by subject into more than one part and some recordings have no known
        subject (their ``subject_source`` is ``recording`` or ``unknown``): raise a
        :class:`~brainfm.errors.ConfigError` naming them, or warn, or go on silently; with
        ``"warn"`` and ``"ignore"`` each such recording counts as its own subject.

    Returns
    -------
    parts : dict of str to WindowIndex
        One index per part, in the order of ``fractions``.
    """
    check_option("unit", unit, SPLIT_UNITS)
    check_option("on_unknown_subject", on_unknown_subject, ON_UNKNOWN_SUBJECT)
    names = list(fractions)
    weights = np.array([float(fractions[n]) for n in names])
    if not len(names) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {dict(fractions)}.")
    n_parts = int(np.count_nonzero(weights > 0))
    if unit == "subject" and n_parts > 1:
        _check_subjects_known(index, on_unknown_subject)
    if unit == "window":
        keys = np.arange(len(index))
        units = keys
    else:
        field = "subject" if unit == "subject" else "recording_id"
        keys = index.recording_field(field)
        units = np.array(sorted(set(keys.tolist())), dtype=object)
    rng = np.random.default_rng([int(seed), 0x73706C])
    permuted = units[rng.permutation(len(units))]
    exact = weights / weights.sum() * len(units)
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: len(units) - int(counts.sum())]:
        counts[i] += 1  # largest remainders first
    for i in np.flatnonzero((counts == 0) & (weights > 0)):
        largest = int(np.argmax(counts))
        if counts[largest] > 1:  # a positive part never ends up empty while units can be spared
            counts[largest] -= 1
            counts[i] += 1
    bounds = np.concatenate([[0], np.cumsum(counts)])
    parts = {}
    part_of = np.full(len(index), -1, dtype=np.int64)  # (n_windows,) part of each window (unit "window")
    for i, name in enumerate(names):
        chosen = permuted[bounds[i] : bounds[i + 1]]
        if unit == "window":
            mask = np.zeros(len(index), dtype=bool)
            mask[chosen.astype(np.int64)] = True
            part_of[mask] = i
        else:
            mask = np.isin(keys, chosen)
        parts[name] = index.subset(mask)
    if unit == "window" and n_parts > 1:
        _warn_shared_samples(index, part_of, names)
    return parts


def _check_subjects_known(index: WindowIndex, on_unknown_subject: str) -> None:
    """Refuse (or warn about) a subject split of recordings whose subject is not known."""
    used = np.unique(index.recording)
    layouts = [index.layouts[i] for i in used.tolist()]
    unknown = [layout for layout in layouts if layout.subject_source not in KNOWN_SUBJECT_SOURCES]
    if not unknown or len(layouts) < 2 or on_unknown_subject == "ignore":
        return
    ids = [layout.recording_id for layout in unknown]
    shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
    old = sum(layout.subject_source == "unknown" for layout in unknown)
    why = (" (stores written before brainfm recorded how subjects were derived count as unknown: write them "
           "again, into a new store)" if old else "")
    message = (
        f"Splitting by subject, but {len(unknown)} of the {len(layouts)} recordings have no known subject{why}: "
        f"{shown}. Each would count as its own subject, so recordings of one person could land in both "
        "training and validation (subject leakage), and validation scores would be too good. Give subjects at "
        "ingest and preprocess into a new store: BIDS names (sub-<label>_...), or `brainfm preprocess --pattern` "
        r"with a named group 'subject' matched on the relative path (e.g. --pattern 'S(?P<subject>\d+)R\d+'). "
        "If every recording really is a different person, pass on_unknown_subject='warn' (or 'ignore'); "
        "split_unit='recording' splits by recording on purpose."
    )
    if on_unknown_subject == "raise":
        raise ConfigError(message)
    warn(message, UserWarning)


def _warn_shared_samples(index: WindowIndex, part_of: np.ndarray, names: list[str]) -> None:
    """Warn when windows of different parts overlap in time (they share samples)."""
    order = np.lexsort((index.start, index.recording))
    recording, start, part = index.recording[order], index.start[order], part_of[order]
    # Windows sorted by start: if two windows of different parts overlap, so do two neighbours
    # of different parts (every window between them overlaps both).
    shared = ((recording[1:] == recording[:-1]) & (start[1:] - start[:-1] < index.window_size_samples)
              & (part[1:] != part[:-1]) & (part[1:] >= 0) & (part[:-1] >= 0))
    n_shared = int(np.count_nonzero(shared))
    if not n_shared:
        return
    pairs = sorted({tuple(sorted((names[a], names[b]))) for a, b in zip(part[:-1][shared], part[1:][shared],
                                                                        strict=True)})
    logger.debug("overlapping windows across parts: %s", pairs)
    warn(
        f"split_unit='window' with overlapping windows: {n_shared} pairs of neighbouring windows in different "
        f"parts ({', '.join('/'.join(p) for p in pairs)}) share samples, so the held-out windows hold samples "
        "that training sees. Use a stride at least as long as the window (stride_s >= window_s), or split by "
        "'recording' or 'subject'.",
        UserWarning,
    )
