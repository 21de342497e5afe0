"""Brain Treebank word and sentence events from the movie-to-neural trigger timings (``specs/barista.md`` §3, §4.6, §4.8).

A trial of the Brain Treebank has, beside its neural file, three files that place the film's
words on the neural clock::

    <root>/subject_metadata/sub_<k>_trial<nnn>_metadata.json   {"title": ..., "filename": <movie id>, ...}
    <root>/subject_timings/sub_<k>_trial<nnn>_timings.csv      triggers: movie_time (s), index (neural sample)
    <root>/transcripts/<movie id>/features.csv                 words: start, end (movie s), is_onset, text, ...

A word's neural sample is ``round(index_j + (t - movie_time_j) * sfreq)`` with ``j`` the
trigger nearest in movie time to ``t`` (spec §4.8); its start and end are placed
separately. Words without times, or after the last trigger (the recording stopped before
the film did), are left out. The events, in seconds from the start of the recording:

``word``
    every placed word, lasting from its start to its end;
``sentence_onset``
    the words that start a sentence (``is_onset``), at the same time;
``nonspeech``
    the centres of 3-s chunks (on a 3-s grid from the first sample) that overlap no word
    and no 3-s window centred on a word onset, duration 0.

so that decoding tasks cut the spec's windows as event-locked windows of ``-1.5 s .. 1.5 s``:
sentence onset against non-speech, and speech (``word``) against non-speech.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from brainfm.data.recording import empty_events
from brainfm.errors import SidecarError

__all__ = ["SEGMENT_S", "braintreebank_events", "event_companions", "word_samples"]

#: Length of the spec's segments and label windows (s).
SEGMENT_S = 3.0


def event_companions(root: Path, subject: int, trial: int) -> dict[str, Path]:
    """The trigger-timing and metadata files of one trial (whether or not they exist).

    Parameters
    ----------
    root : pathlib.Path
        The dataset root.
    subject, trial : int
        Subject and trial numbers.

    Returns
    -------
    paths : dict of str to pathlib.Path
        ``"timings"`` and ``"metadata"``.
    """
    stem = f"sub_{subject}_trial{trial:03d}"
    return {"timings": root / "subject_timings" / f"{stem}_timings.csv",
            "metadata": root / "subject_metadata" / f"{stem}_metadata.json"}


def word_samples(times_s: np.ndarray, triggers: pd.DataFrame, sfreq: float) -> np.ndarray:
    """Neural sample of each movie time through the nearest trigger (spec §4.8).

    Parameters
    ----------
    times_s : numpy.ndarray
        Movie times in seconds.
    triggers : pandas.DataFrame
        ``movie_time`` (s) and ``index`` (neural sample) of each trigger, any order.
    sfreq : float
        Sampling rate of the neural data (Hz).

    Returns
    -------
    samples : numpy.ndarray of int64
        ``round(index_j + (t - movie_time_j) * sfreq)``, ``j`` the nearest trigger in movie time.
    """
    order = np.argsort(triggers["movie_time"].to_numpy(dtype=np.float64), kind="stable")
    movie = triggers["movie_time"].to_numpy(dtype=np.float64)[order]
    index = triggers["index"].to_numpy(dtype=np.float64)[order]
    times_s = np.asarray(times_s, dtype=np.float64)
    right = np.clip(np.searchsorted(movie, times_s), 0, len(movie) - 1)
    left = np.clip(right - 1, 0, len(movie) - 1)
    nearest = np.where(np.abs(times_s - movie[left]) <= np.abs(movie[right] - times_s), left, right)
    return np.round(index[nearest] + (times_s - movie[nearest]) * sfreq).astype(np.int64)


def _read_csv(path: Path, columns: list[str], what: str, trial: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise SidecarError(f"The {what} {path} (of {trial.name}) could not be read: {exc}.") from exc
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SidecarError(f"The {what} {path} (of {trial.name}) lacks the columns {missing}; it has "
                           f"{list(table.columns)[:12]}.")
    return table


def braintreebank_events(root: Path, trial_path: Path, companions: dict[str, Path], sfreq: float,
                         n_times: int, notes: list[str]) -> pd.DataFrame:
    """Word, sentence-onset and non-speech events of one trial (module docstring).

    Parameters
    ----------
    root : pathlib.Path
        The dataset root (``transcripts/`` is read from it).
    trial_path : pathlib.Path
        The trial's neural file (for messages).
    companions : dict of str to pathlib.Path
        From :func:`event_companions`.
    sfreq : float
        Sampling rate of the neural data (Hz).
    n_times : int
        Samples in the neural file.
    notes : list of str
        Where notes for the provenance are added (e.g. no timing files: no events).

    Returns
    -------
    events : pandas.DataFrame
        ``onset_s``, ``duration_s``, ``description``, sorted by onset; empty when the trial
        has no trigger timings or metadata.

    Raises
    ------
    brainfm.errors.SidecarError
        A timing, metadata or transcript file exists but is broken, or the metadata names a
        film whose transcript is missing.
    """
    timings, metadata = companions["timings"], companions["metadata"]
    if not (timings.is_file() and metadata.is_file()):
        notes.append(f"No trigger timings or trial metadata ({timings.name}, {metadata.name}): no word events.")
        return empty_events()
    try:
        meta = json.loads(metadata.read_text())
        movie = str(meta["filename"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SidecarError(f"The trial metadata {metadata} (of {trial_path.name}) must be JSON with a 'filename' "
                           f"key naming the film's transcript folder: {exc!r}.") from exc
    transcript = root / "transcripts" / movie / "features.csv"
    if not transcript.is_file():
        raise SidecarError(f"{metadata} names the film {movie!r}, but its transcript {transcript} is missing. "
                           "Put the film's transcripts/<film>/features.csv back, or remove the timing file.")
    triggers = _read_csv(timings, ["movie_time", "index"], "trigger timing table", trial_path).dropna(
        subset=["movie_time", "index"])
    words = _read_csv(transcript, ["start", "end", "is_onset"], "transcript", trial_path)
    if triggers.empty:
        raise SidecarError(f"The trigger timing table {timings} (of {trial_path.name}) has no triggers.")
    words = words.dropna(subset=["start", "end"])
    words = words[words["start"] <= triggers["movie_time"].max()]  # the recording stopped before the film
    start = word_samples(words["start"].to_numpy(), triggers, sfreq)
    end = np.maximum(word_samples(words["end"].to_numpy(), triggers, sfreq), start)
    inside = (start >= 0) & (start < n_times)
    start, end = start[inside], np.minimum(end[inside], n_times)
    onset = words["is_onset"].to_numpy()[inside].astype(float) > 0.5
    rows = [(s / sfreq, (e - s) / sfreq, "word") for s, e in zip(start, end, strict=True)]
    rows += [(s / sfreq, (e - s) / sfreq, "sentence_onset") for s, e in zip(start[onset], end[onset], strict=True)]
    rows += [(c / sfreq, 0.0, "nonspeech") for c in _nonspeech_centres(start, end, sfreq, n_times)]
    if not rows:
        return empty_events()
    events = pd.DataFrame(rows, columns=["onset_s", "duration_s", "description"])
    return events.sort_values(["onset_s", "description"], kind="stable").reset_index(drop=True)


def _nonspeech_centres(start: np.ndarray, end: np.ndarray, sfreq: float, n_times: int) -> list[int]:
    """Centres (samples) of grid chunks free of words and of windows centred on word onsets."""
    size = int(round(SEGMENT_S * sfreq))
    half = size // 2
    busy = np.zeros(n_times + 1, dtype=np.int64)  # +1/-1 at the edges of busy spans, then a cumulative sum
    for lo, hi in [*zip(start, end, strict=True), *zip(start - half, start + size - half, strict=True)]:
        lo, hi = max(int(lo), 0), min(int(hi), n_times)
        if hi > lo:
            busy[lo] += 1
            busy[hi] -= 1
    taken = np.cumsum(busy[:-1]) > 0
    return [first + half for first in range(0, n_times - size + 1, size) if not taken[first:first + size].any()]
