"""The facts a quality report shows, as plain JSON-ready data (``brainfm report --json``).

:func:`report_facts` reads every complete recording's attributes (already parsed when the
store was opened), its per-channel statistics and its event table: a few small reads per
recording and no signal, so the summary covers every recording of even a large store. The
HTML report (:mod:`brainfm.preprocessing.report.html`) renders exactly these facts and adds
figures for the recordings chosen for detailed sections.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from brainfm._check import check_range, ensure_int, suggest
from brainfm.data.channels import DATA_CHANNEL_TYPES
from brainfm.data.windows import bad_spans
from brainfm.errors import ConfigError
from brainfm.store.reader import Store, StoredRecording

__all__ = [
    "DEFAULT_MAX_RECORDINGS",
    "choose_detailed",
    "recording_facts",
    "report_facts",
    "warning_kind",
]

#: Recordings with a detailed section (PSD, layout, events, provenance) by default: about
#: a second each, so a store of any size reports in a minute or two (docs/benchmarks.md).
DEFAULT_MAX_RECORDINGS = 50

# What varies between two warnings of the same kind: quoted text, bracketed lists, file
# names, numbers. Replaced (in this order) to find the kind.
_QUOTED = re.compile(r"(?<!\w)'[^']*'(?!\w)|\"[^\"]*\"")
_BRACKETED = re.compile(r"\[[^\]]*\]|\{[^}]*\}")
_FILE = re.compile(r"(?:[\w.~-]*/)*[\w.~-]+\.[A-Za-z][A-Za-z0-9]{1,4}\b")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def warning_kind(text: str) -> str:
    """The kind of a warning: its first sentence with names, lists, files and numbers masked.

    Two recordings' warnings of one cause (``"64 of 64 EEG channels ... 'colin27_1005' ..."``
    and ``"23 of 81 EEG channels ..."``) share a kind, so the report groups them.

    Parameters
    ----------
    text : str
        One warning as stored in ``provenance.warnings``.

    Returns
    -------
    kind : str
        The masked first sentence (at most 160 characters).
    """
    masked = _QUOTED.sub("'…'", str(text))
    masked = _BRACKETED.sub("[…]", masked)
    masked = _FILE.sub("FILE", masked)
    masked = _NUMBER.sub("N", masked)
    first = re.split(r"(?<=[.;!?])\s", masked.strip(), maxsplit=1)[0]
    return first[:160]


def _amplitudes(recording: StoredRecording, types: np.ndarray, good: np.ndarray) -> dict[str, float | None]:
    """Median over the good channels of each type of the channel's standard deviation (SI units)."""
    stds = np.asarray(recording.stats["std"], dtype=np.float64)
    out: dict[str, float | None] = {}
    for kind in sorted(set(types.tolist())):
        rows = (types == kind) & good & np.isfinite(stds)
        out[kind] = float(np.median(stds[rows])) if rows.any() else None
    return out


def recording_facts(recording: StoredRecording) -> dict[str, Any]:
    """One recording's row of the report's statistics table.

    Parameters
    ----------
    recording : StoredRecording
        A complete recording (``store[id]``).

    Returns
    -------
    row : dict
        ``id``, identity fields, ``subject_source`` (how the subject was derived: ``bids``,
        ``filename``, ``pattern``, ``given``, ``recording`` or ``unknown``), ``duration_s``, ``sfreq``, ``line_freq``, ``n_channels``,
        ``channel_types`` (type -> count), ``n_bad_channels``, ``bad_channels``
        (name -> reason), ``n_positions``, ``frames`` (frame -> channels with a position),
        ``pos_sources``, ``amplitude`` (type -> median standard deviation of its good
        channels, in the type's SI unit), ``n_events``, ``event_counts``, ``n_bad_spans``,
        ``bad_seconds``, ``warnings``, ``recipe``, ``config_hash`` and ``source_path``.
        JSON-ready. :func:`report_facts` adds ``flags``.
    """
    attrs = recording.attrs
    table = attrs["channels"]
    types = np.asarray(table["type"], dtype=str)
    status = np.asarray(table["status"], dtype=str)
    reasons = [str(r) for r in table.get("status_reason", [""] * len(types))]
    xyz = np.array([table["x"], table["y"], table["z"]], dtype=float).T.reshape(len(types), 3)
    placed = np.isfinite(xyz).all(axis=1)
    frames = [str(f) for f in table.get("frame", [""] * len(types))]
    events = recording.events if attrs.get("event_descriptions") else None
    if events is not None and len(events):
        spans = bad_spans(events["onset_s"], events["duration_s"], events["description"], recording.sfreq)
        inside = np.clip(spans, 0, recording.n_times)
        bad_seconds = float((inside[:, 1] - inside[:, 0]).sum()) / recording.sfreq
        event_counts = dict(Counter(str(d) for d in events["description"]))
    else:
        spans, bad_seconds, event_counts = np.zeros((0, 2)), 0.0, {}
    provenance = attrs.get("provenance", {})
    identity = attrs["identity"]
    bad = status == "bad"
    return {
        "id": recording.id,
        "dataset": identity.get("dataset"),
        "subject": identity.get("subject"),
        "subject_source": recording.subject_source,
        "session": identity.get("session"),
        "task": identity.get("task"),
        "acquisition": identity.get("acquisition"),
        "run": identity.get("run"),
        "duration_s": recording.duration_s,
        "sfreq": recording.sfreq,
        "line_freq": attrs.get("line_freq"),
        "n_channels": recording.n_channels,
        "channel_types": dict(Counter(types.tolist())),
        "n_bad_channels": int(bad.sum()),
        "bad_channels": {str(table["name"][i]): reasons[i] or "no reason recorded" for i in np.flatnonzero(bad)},
        "n_positions": int(placed.sum()),
        "frames": dict(Counter(frames[i] or "unknown" for i in np.flatnonzero(placed))),
        "pos_sources": dict(Counter(str(s) for s in table["pos_source"])),
        "amplitude": _amplitudes(recording, types, ~bad),
        "n_events": int(sum(event_counts.values())),
        "event_counts": event_counts,
        "n_bad_spans": int(len(spans)),
        "bad_seconds": bad_seconds,
        "warnings": [str(w) for w in provenance.get("warnings", [])],
        "recipe": provenance.get("recipe"),
        "config_hash": provenance.get("config_hash"),
        "source_path": attrs.get("source", {}).get("path"),
    }


def choose_detailed(store: Store, pattern: str | None, max_recordings: int) -> list[str]:
    """The recordings that get a detailed section.

    Parameters
    ----------
    store : Store
        An open store.
    pattern : str | None
        Shell-style pattern (``fnmatch``) on recording ids, e.g. ``"eegmmidb_sub-00*"``;
        None selects every recording.
    max_recordings : int
        At most this many; taken in turn from each dataset (in id order within a dataset)
        so that every dataset of a mixed store is shown.

    Returns
    -------
    ids : list of str
        In store order.

    Raises
    ------
    ConfigError
        When ``pattern`` matches no recording of a non-empty store.
    """
    max_recordings = ensure_int("max_recordings", max_recordings)
    check_range("max_recordings", max_recordings, 0, None)
    ids = list(store)
    if pattern is not None:
        selected = [rid for rid in ids if fnmatch.fnmatchcase(rid, pattern)]
        if ids and not selected:
            raise ConfigError(
                f"--recordings {pattern!r} matches none of the {len(ids)} recordings of {store.path} "
                f"(a shell pattern on recording ids, e.g. '{ids[0][:12]}*').{suggest(pattern, ids)}"
            )
        ids = selected
    by_dataset: dict[str, list[str]] = defaultdict(list)
    for rid in ids:
        by_dataset[store[rid].dataset].append(rid)
    chosen: set[str] = set()
    queues = [list(reversed(v)) for _, v in sorted(by_dataset.items())]
    while len(chosen) < max_recordings and any(queues):
        for queue in queues:
            if queue and len(chosen) < max_recordings:
                chosen.add(queue.pop())
    return [rid for rid in ids if rid in chosen]


#: A recording's typical amplitude of a channel type this many times above (or below) the
#: median over the store's recordings, or this share of bad channels, is flagged.
OUTLIER_FACTOR = 5.0
BAD_CHANNEL_SHARE = 0.25


def _flag_outliers(rows: list[dict[str, Any]]) -> None:
    """Add ``flags`` to each row: amplitudes far from the store's median, many bad channels."""
    medians: dict[str, float] = {}
    for kind in sorted({k for row in rows for k in row["amplitude"]}):
        values = [row["amplitude"][kind] for row in rows if row["amplitude"].get(kind)]
        if len(values) >= 3:  # a median of fewer recordings says little
            medians[kind] = float(np.median(values))
    for row in rows:
        flags = []
        for kind, median in medians.items():
            value = row["amplitude"].get(kind)
            if value and median > 0 and not 1 / OUTLIER_FACTOR <= value / median <= OUTLIER_FACTOR:
                flags.append(f"{kind} amplitude {value / median:.2g}x median")
        if row["n_channels"] and row["n_bad_channels"] / row["n_channels"] >= BAD_CHANNEL_SHARE:
            flags.append(f"{row['n_bad_channels']} of {row['n_channels']} channels bad")
        row["flags"] = flags


def _recipes(store: Store) -> list[dict[str, Any]]:
    """Distinct recipes (by configuration hash) with the recordings made with each."""
    found: dict[str, dict[str, Any]] = {}
    for rid in store:
        provenance = store[rid].attrs.get("provenance", {})
        key = str(provenance.get("config_hash"))
        entry = found.setdefault(
            key,
            {
                "recipe": provenance.get("recipe"),
                "origin": provenance.get("recipe_origin"),
                "config_hash": provenance.get("config_hash"),
                "config": provenance.get("recipe_config"),
                "n_recordings": 0,
            },
        )
        entry["n_recordings"] += 1
    return sorted(found.values(), key=lambda e: -e["n_recordings"])


def _warning_groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warnings of all recordings grouped by :func:`warning_kind`, most frequent first."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        for text in row["warnings"]:
            group = groups.setdefault(warning_kind(text), {"kind": warning_kind(text), "count": 0, "recordings": [], "example": text})
            group["count"] += 1
            if row["id"] not in group["recordings"]:
                group["recordings"].append(row["id"])
    return sorted(groups.values(), key=lambda g: (-g["count"], g["kind"]))


def report_facts(
    store: Store,
    *,
    recordings: str | None = None,
    max_recordings: int = DEFAULT_MAX_RECORDINGS,
    progress: bool = False,
) -> dict[str, Any]:
    """Everything the quality report states, for every recording of a store.

    Parameters
    ----------
    store : Store
        An open store (:func:`brainfm.open_store`).
    recordings : str | None
        Shell-style pattern on recording ids choosing the detailed sections.
    max_recordings : int
        At most this many detailed sections (see :func:`choose_detailed`).
    progress : bool
        Show a progress bar on stderr while the recordings are read.

    Returns
    -------
    facts : dict
        ``store``, ``format_version``, ``written_by``, ``summary`` (``n_recordings``,
        ``n_failed``, ``n_incomplete``, ``hours``, ``datasets``, ``n_subjects``,
        ``subjects`` (``dataset/subject`` labels), ``n_without_subject`` (recordings without a
        subject label, each counted as a subject of its own), ``subject_sources`` (source ->
        recordings), ``sessions``, ``tasks``, ``channel_types`` (type -> ``channels``,
        ``recordings``), ``sfreqs`` (rate -> recordings), ``line_freqs``,
        ``n_bad_channels``, ``bad_hours``, ``n_events``, ``n_flagged``: recordings with flags), ``recipes``, ``warnings`` (groups:
        ``kind``, ``count``, ``recordings``, ``example``), ``failures`` (``path``, ``error``,
        ``error_type``, ``recording_id``, ``time``), ``incomplete`` (ids), ``recordings``
        (one :func:`recording_facts` row each) and ``detailed`` (ids with a detailed
        section). JSON-ready.
    """
    detailed = choose_detailed(store, recordings, max_recordings)
    ids = list(store)
    if progress and ids:
        from tqdm import tqdm

        ids = tqdm(ids, unit="rec", desc="summary", dynamic_ncols=True)
    rows = [recording_facts(store[rid]) for rid in ids]
    _flag_outliers(rows)
    subjects = sorted({f"{r['dataset']}/{r['subject']}" for r in rows if r["subject"] is not None})
    without_subject = sum(r["subject"] is None for r in rows)
    type_channels: Counter[str] = Counter()
    type_recordings: Counter[str] = Counter()
    for row in rows:
        type_channels.update(row["channel_types"])
        type_recordings.update(row["channel_types"].keys())
    order = {t: i for i, t in enumerate(DATA_CHANNEL_TYPES)}
    channel_types = {
        t: {"channels": int(type_channels[t]), "recordings": int(type_recordings[t])}
        for t in sorted(type_channels, key=lambda t: (order.get(t, len(order)), t))
    }
    sfreqs = Counter(f"{r['sfreq']:g}" for r in rows)
    line_freqs = Counter("unknown" if r["line_freq"] is None else f"{r['line_freq']:g}" for r in rows)
    failures = [
        {k: f.get(k) for k in ("path", "error", "error_type", "recording_id", "time")} for f in store.failed
    ]
    summary = {
        "n_recordings": len(rows),
        "n_failed": len(failures),
        "n_incomplete": len(store.incomplete),
        "hours": sum(r["duration_s"] for r in rows) / 3600.0,
        "datasets": dict(Counter(str(r["dataset"]) for r in rows)),
        # a recording without a subject label counts as a subject of its own
        "n_subjects": len(subjects) + without_subject,
        "subjects": subjects,
        "n_without_subject": without_subject,
        "subject_sources": dict(sorted(Counter(r["subject_source"] for r in rows).items())),
        "sessions": sorted({str(r["session"]) for r in rows if r["session"] is not None}),
        "tasks": sorted({str(r["task"]) for r in rows if r["task"] is not None}),
        "channel_types": channel_types,
        "sfreqs": dict(sorted(sfreqs.items(), key=lambda item: float(item[0]))),
        "line_freqs": dict(line_freqs),
        "n_bad_channels": sum(r["n_bad_channels"] for r in rows),
        "bad_hours": sum(r["bad_seconds"] for r in rows) / 3600.0,
        "n_events": sum(r["n_events"] for r in rows),
        "n_flagged": sum(bool(r["flags"]) for r in rows),
    }
    return {
        "store": str(store.path),
        "format_version": store.format_version,
        "written_by": store.attrs.get("written_by"),
        "summary": summary,
        "recipes": _recipes(store),
        "warnings": _warning_groups(rows),
        "failures": failures,
        "incomplete": store.incomplete,
        "recordings": rows,
        "detailed": detailed,
    }
