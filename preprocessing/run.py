"""Preprocess a whole dataset folder into a store: discovery, sharding, workers, skipping, summary.

Each worker process opens the store itself and writes whole recordings; a recording group
becomes visible only once complete, so parallel workers, cluster array jobs (``shard``) and
interrupted runs never expose half-written data. Re-running skips recordings whose source
hash and configuration hash are unchanged.

A source whose sha256 the store already holds under another recording id (the same folder run
again with another ``pattern`` or ``dataset``, or the same file in two folders) is a
*duplicate*: it is named in a warning and, by default (``on_duplicate="skip"``), not stored
again, since its data are already there; ``on_duplicate="keep"`` stores it under its new id too.

Problems of the data (a :class:`~brainfm.errors.BrainFMError`, which covers the readers'
translated errors, or an operating-system error such as a file that cannot be opened) fail
their recording: it is listed in ``failed`` and recorded in the store's manifest. Any other
exception in a worker (``TypeError``, ``KeyError``, ``AttributeError``...) is a bug in
brainfm, not a property of the file: it is an *internal error*, logged with its traceback,
listed apart and not recorded as bad data, and the run exits with :data:`EXIT_INTERNAL_ERROR`.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainfm._logging import logger, verbose
from brainfm.errors import BrainFMError, ConfigError, ExcludedByRecipe
from brainfm.preprocessing.recipe import Recipe, load_recipe
from brainfm.preprocessing.source import Source

__all__ = [
    "DUPLICATE_ACTIONS",
    "EXIT_FAILED",
    "EXIT_INTERNAL_ERROR",
    "EXIT_OK",
    "PreprocessSummary",
    "hash_files",
    "parse_shard",
    "preprocess",
]

#: Exit status: every recording stored, skipped or excluded.
EXIT_OK = 0
#: Exit status: some recordings failed (bad data), or the folder held nothing that could be read.
EXIT_FAILED = 1
#: Exit status: an internal error (a bug in brainfm; its traceback is in the log). 2 stays
#: "unusable arguments", as for every brainfm command.
EXIT_INTERNAL_ERROR = 3
#: What ``preprocess`` does with a source the store already holds under another recording id.
DUPLICATE_ACTIONS = ("skip", "keep")


@dataclass
class PreprocessSummary:
    """What a preprocessing run did.

    Attributes
    ----------
    store : str
        The store path.
    processed, skipped : list of str
        Recording ids written, and ids already up to date.
    excluded : list of dict
        ``{"path", "reason"}`` per source whose channels are all of types the recipe does
        not keep (e.g. iEEG files under an EEG/MEG recipe); not a failure.
    failed : list of dict
        ``{"path", "error"}`` per source that could not be stored (plus ``error_type`` and
        ``recording_id``).
    duplicate_sources : list of dict
        ``{"path", "recording_id", "duplicate_of", "action"}`` per source whose sha256 the store
        already held under other recording ids (``duplicate_of``); ``action`` is ``"skipped"``
        (not stored again) or ``"kept"`` (stored under its own id as well). Not a failure.
    internal_errors : list of dict
        ``{"path", "error"}`` per source whose processing hit a bug in brainfm (plus
        ``error_type``, ``recording_id`` and ``traceback``); not recorded in the store.
    error : str | None
        A problem of the whole run: the folder held nothing that could be read.
    ignored : dict of str to int
        Files that are not recordings, counted by extension.
    rows : list of dict
        One row per source for the summary table.
    seconds : float
        Wall time of the run.
    """

    store: str
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    duplicate_sources: list[dict[str, Any]] = field(default_factory=list)
    internal_errors: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    ignored: dict[str, int] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        """:data:`EXIT_INTERNAL_ERROR` (3) after an internal error, else :data:`EXIT_FAILED` (1)
        when a recording failed or nothing could be read, else :data:`EXIT_OK` (0)."""
        if self.internal_errors:
            return EXIT_INTERNAL_ERROR
        return EXIT_FAILED if self.failed or self.error else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``brainfm preprocess --json``."""
        return {
            "store": self.store,
            "processed": list(self.processed),
            "skipped": list(self.skipped),
            "excluded": [{"path": e["path"], "reason": e["reason"]} for e in self.excluded],
            "failed": [{"path": f["path"], "error": f["error"]} for f in self.failed],
            "duplicate_sources": [{k: d[k] for k in ("path", "recording_id", "duplicate_of", "action")} for d in self.duplicate_sources],
            "internal_errors": [{"path": f["path"], "error": f["error"]} for f in self.internal_errors],
            "error": self.error,
            "ignored": dict(self.ignored),
            "seconds": round(self.seconds, 3),
        }

    def table(self) -> str:
        """A human summary table (one line per source, then totals)."""
        lines = [f"{'recording':<48} {'status':<8} {'channels':<28} {'duration':>9} {'sfreq':>7} {'time':>6}"]
        for row in self.rows:
            channels = ", ".join(f"{n} {t}" for t, n in row.get("channel_types", {}).items())
            duration = f"{row['duration_s']:.1f} s" if row.get("duration_s") is not None else ""
            sfreq = f"{row['sfreq']:g}" if row.get("sfreq") else ""
            seconds = f"{row['seconds']:.1f}" if row.get("seconds") is not None else ""
            lines.append(
                f"{row['id'][:48]:<48} {row['status']:<8} {channels[:28]:<28} {duration:>9} {sfreq:>7} {seconds:>6}"
            )
        for excluded in self.excluded:
            lines.append(f"EXCLUDED {excluded['path']}\n       {excluded['reason']}")
        for duplicate in self.duplicate_sources:
            lines.append(f"DUPLICATE SOURCE {duplicate['path']}\n       {duplicate_message(duplicate)}")
        for failure in self.failed:
            lines.append(f"FAILED {failure['path']}\n       {failure['error']}")
        for failure in self.internal_errors:
            lines.append(f"INTERNAL ERROR {failure['path']}\n       {failure['error']}")
        if self.error:
            lines.append(f"ERROR {self.error}")
        ignored = sum(self.ignored.values())
        ignored_text = ", ".join(f"{ext or '(none)'}: {n}" for ext, n in sorted(self.ignored.items()))
        lines.append(
            f"{len(self.processed)} stored, {len(self.skipped)} skipped (up to date), "
            + "".join(f"{n} duplicate sources {action}, " for action in ("skipped", "kept")
                      if (n := sum(d["action"] == action for d in self.duplicate_sources)))
            + f"{len(self.excluded)} excluded by the recipe, {len(self.failed)} failed, "
            + (f"{len(self.internal_errors)} internal errors, " if self.internal_errors else "")
            + f"{ignored} other files ignored{f' ({ignored_text})' if ignored else ''}; {self.seconds:.1f} s -> {self.store}"
        )
        return "\n".join(lines)


def duplicate_message(duplicate: dict[str, Any]) -> str:
    """What a duplicate entry of :class:`PreprocessSummary` means, naming the file and both ids.

    Parameters
    ----------
    duplicate : dict
        ``{"path", "recording_id", "duplicate_of", "action"}`` (and ``sha256``).

    Returns
    -------
    message : str
        One sentence for the log and the summary table.
    """
    others = ", ".join(duplicate["duplicate_of"])
    sha = str(duplicate.get("sha256") or "")[:12]
    what = (f"not stored again as {duplicate['recording_id']!r} (its data are in the store already; "
            "--on-duplicate keep stores it under both ids)" if duplicate["action"] == "skipped"
            else f"stored again as {duplicate['recording_id']!r} (--on-duplicate keep)")
    return f"{duplicate['path']} has the same source (sha256 {sha}...) as stored recording {others}: {what}."


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``"I/N"`` (0-based shard I of N) as used by ``--shard``.

    Parameters
    ----------
    text : str | None
        ``"0/4"`` etc., or None.

    Returns
    -------
    shard : tuple of int | None
        ``(index, count)``.
    """
    if text is None:
        return None
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ConfigError(f"--shard must look like I/N (e.g. 0/4), got {text!r}.") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"--shard {text}: I must lie in [0, N-1] and N >= 1 (for SLURM use "
            f"--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-(N-1))."
        )
    return index, count


def hash_files(paths: Sequence[Path]) -> str:
    """sha256 over the contents of files (folders: every file inside), in sorted path order.

    Parameters
    ----------
    paths : sequence of pathlib.Path
        Files or folders.

    Returns
    -------
    sha256 : str
        Hex digest.
    """
    digest = hashlib.sha256()
    for path in sorted(set(_each_file(paths))):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(2**22), b""):
                digest.update(block)
    return digest.hexdigest()


def file_stamps(paths: Sequence[Path]) -> list[list[Any]]:
    """``[relative name, size, mtime_ns]`` of every file (folders: every file inside), sorted.

    A re-run whose stamps equal the stored ones reuses the stored sha256 instead of reading
    every byte again (as make and rsync do); a changed stamp means hashing the content.

    Parameters
    ----------
    paths : sequence of pathlib.Path
        Files or folders of one recording.

    Returns
    -------
    stamps : list of [str, int, int]
        JSON-ready.
    """
    out = []
    for item in _each_file(paths):
        info = item.stat()
        out.append([str(item), int(info.st_size), int(info.st_mtime_ns)])
    return sorted(out)


def _each_file(paths: Sequence[Path]) -> list[Path]:
    """The files a recording consists of: each file given, and every file inside each folder given."""
    out: list[Path] = []
    for path in map(Path, paths):
        out.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return out


def _process_one(
    source: Source, recipe: Recipe, store: str, config_hash: str,
    known: dict[str, list[str]] | None = None, on_duplicate: str = "skip",
) -> dict[str, Any]:
    """Worker body: skip, or preprocess and write, or record the failure. Never raises.

    ``known`` maps source sha256 to the ids stored from it: a source found there under another
    id is a duplicate (row ``duplicate_of``), skipped (status ``"duplicate"``) or stored anyway
    (``on_duplicate="keep"``).
    """
    from brainfm.preprocessing.pipeline import preprocess_source
    from brainfm.store.writer import StoreWriter

    started = time.perf_counter()
    row: dict[str, Any] = {"id": source.recording_id, "path": str(source.path)}
    try:
        writer = StoreWriter(store)
        files = source.files or [source.path]
        stamps = file_stamps(files)
        stored = writer.recording_attrs(source.recording_id) or {}
        if stored.get("source", {}).get("stamps") == stamps and stored.get("source", {}).get("sha256"):
            sha256 = stored["source"]["sha256"]  # same sizes and modification times: same bytes
        else:
            sha256 = hash_files(files)
        if writer.is_up_to_date(source.recording_id, sha256, config_hash):
            if stored["source"].get("stamps") != stamps:  # touched, same bytes: remember the new stamps
                writer.update_source(source.recording_id, {"stamps": stamps})
            return {**row, "status": "skipped", **_shape_facts(stored), "seconds": time.perf_counter() - started}
        row["sha256"] = sha256
        others = [other for other in (known or {}).get(sha256, []) if other != source.recording_id]
        if others:
            row["duplicate_of"] = others
            if on_duplicate == "skip":
                attrs = writer.recording_attrs(others[0]) or {}
                return {**row, "status": "duplicate", **_shape_facts(attrs), "seconds": time.perf_counter() - started}
        recording = preprocess_source(source, recipe, config_hash=config_hash, sha256=sha256)
        recording.source["stamps"] = stamps
        writer.write(
            recording,
            chunk_mib=recipe.write.chunk_mib,
            compression=recipe.write.compression,
            clevel=recipe.write.clevel,
            shuffle=recipe.write.shuffle,
            bitround_keepbits=recipe.write.bitround_keepbits,
        )
        attrs = writer.recording_attrs(source.recording_id) or {}
        return {**row, "status": "stored", **_shape_facts(attrs), "seconds": time.perf_counter() - started}
    except ExcludedByRecipe as exc:
        return {**row, "status": "excluded", "reason": str(exc), "seconds": time.perf_counter() - started}
    except (BrainFMError, OSError, MemoryError) as exc:  # the data (or the disk): this recording fails
        message = str(exc) if isinstance(exc, BrainFMError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError):
            message += " (out of memory: run it alone with --jobs 1, or on a machine with more memory)"
        if str(source.relpath) not in message and str(source.path) not in message:
            message = f"{source.relpath}: {message}"
        logger.debug("failed %s", source.path, exc_info=True)
        return {**_failed_row(source, store, message, type(exc).__name__), "seconds": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001 - a bug in brainfm, not a property of the file
        return {**_internal_error_row(source, exc, traceback.format_exc()), "seconds": time.perf_counter() - started}


def _internal_error_row(source: Source, exc: BaseException, trace: str) -> dict[str, Any]:
    """The summary row of a source whose processing raised an unexpected exception (not recorded in the store)."""
    message = (
        f"{source.relpath}: internal error {type(exc).__name__}: {exc}. This is a bug in brainfm, not a "
        "problem of the file; its traceback is in the log. Please report it with that traceback."
    )
    return {
        "id": source.recording_id, "path": str(source.path), "status": "internal_error", "error": message,
        "error_type": type(exc).__name__, "traceback": trace,
    }


def _shape_facts(attrs: dict[str, Any]) -> dict[str, Any]:
    if not attrs:
        return {}
    types: dict[str, int] = {}
    for kind in attrs.get("channels", {}).get("type", []):
        types[kind] = types.get(kind, 0) + 1
    return {
        "channel_types": types,
        "sfreq": attrs.get("sfreq"),
        "duration_s": attrs["n_times"] / attrs["sfreq"] if attrs.get("sfreq") else None,
    }


@verbose
def preprocess(
    input_dir: str | Path,
    store: str | Path,
    *,
    recipe: str | Path | Recipe = "default",
    jobs: int = 1,
    shard: tuple[int, int] | str | None = None,
    pattern: str | None = None,
    dataset: str | None = None,
    on_duplicate: str = "skip",
    progress: bool = False,
    verbose: bool | str | int | None = None,
) -> PreprocessSummary:
    """Normalise every recording of a dataset folder into a store.

    Parameters
    ----------
    input_dir : str | pathlib.Path
        A BIDS root or any folder of recordings (BIDS roots inside it are found too).
    store : str | pathlib.Path
        The store folder (created when absent; existing recordings are kept).
    recipe : str | pathlib.Path | Recipe
        Shipped recipe name, YAML file or Recipe.
    jobs : int
        Worker processes (1 runs in this process).
    shard : tuple of int | str | None
        ``(I, N)`` or ``"I/N"``: process only every N-th recording starting at I, for cluster
        array jobs writing into one store.
    pattern : str | None
        Regular expression with named groups (``subject``, ``session``, ``task``,
        ``acquisition``, ``run``) matched against each file's relative path (plain folders).
    dataset : str | None
        Dataset name (default: the folder's name).
    on_duplicate : {"skip", "keep"}
        A source whose sha256 the store already holds under another recording id is named in a
        warning and listed in ``duplicate_sources``; ``"skip"`` does not store it again (nothing is
        lost: its data are in the store), ``"keep"`` stores it under its new id as well.
        Duplicates within one run are found as they are stored with ``jobs=1``; with more jobs,
        among recordings written at the same time, only after the run (then warned and kept).
    progress : bool
        Show a progress bar on stderr.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    summary : PreprocessSummary
        Processed, skipped and failed recordings.
    """
    from brainfm.preprocessing.discover import discover
    from brainfm.store.writer import StoreWriter

    started = time.perf_counter()
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise ConfigError(f"Input folder {input_dir} does not exist or is not a folder.")
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs!r}.")
    if on_duplicate not in DUPLICATE_ACTIONS:
        raise ConfigError(f"on_duplicate must be one of {', '.join(DUPLICATE_ACTIONS)}, got {on_duplicate!r}.")
    if isinstance(shard, str):
        shard = parse_shard(shard)
    the_recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    discovery = discover(input_dir, dataset=dataset, pattern=pattern)
    # the resolved name: --dataset set to the folder's own name changes nothing stored
    config_hash = the_recipe.config_hash(pattern=pattern, dataset=dataset or Path(os.path.abspath(input_dir)).name)
    writer = StoreWriter(store)  # creates the store before workers start
    known = writer.source_hashes()

    sources = sorted(discovery.sources, key=lambda s: s.recording_id)
    problems = list(discovery.problems)
    if shard is not None:
        index, count = shard
        sources = sources[index::count]
        problems = [p for p in problems if int(hashlib.sha1(str(p[0]).encode()).hexdigest(), 16) % count == index]
    summary = PreprocessSummary(
        store=str(store),
        ignored={ext: len(paths) for ext, paths in discovery.ignored.items()},
    )
    for path, error in problems:
        message = str(error)
        writer.record_failure(str(path), message)
        summary.failed.append({"path": str(path), "error": message, "error_type": type(error).__name__})
    if not discovery.sources and not discovery.problems:
        ignored = ", ".join(f"{ext or '(no extension)'}: {len(paths)}" for ext, paths in sorted(discovery.ignored.items()))
        summary.error = (
            f"No recording found in {input_dir}"
            + (f"; its {discovery.n_ignored} files are not recordings brainfm reads ({ignored})" if ignored else "; it holds no files")
            + ". Point brainfm at a folder of EEG, MEG or iEEG recordings (docs/preprocessing.md lists the formats)."
        )
    logger.info("%d recordings to process in %s (%d jobs)", len(sources), input_dir, jobs)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(sources), unit="rec", desc="preprocess", dynamic_ncols=True)
    rows: dict[str, dict[str, Any]] = {}
    try:
        if jobs == 1 or len(sources) <= 1:
            for source in sources:
                if bar is not None:
                    bar.set_postfix_str(source.relpath[-40:])
                row = _process_one(source, the_recipe, str(store), config_hash, known, on_duplicate)
                if row["status"] == "stored" and row.get("sha256"):  # later sources of this run see it
                    known.setdefault(row["sha256"], []).append(source.recording_id)
                rows[source.recording_id] = row
                if bar is not None:
                    bar.update()
        else:
            for row in _run_pool(sources, the_recipe, str(store), config_hash, jobs, bar, known, on_duplicate):
                rows[row["id"]] = row
            _find_parallel_duplicates(rows, known)
    finally:
        if bar is not None:
            bar.close()
    for source in sources:
        row = rows[source.recording_id]
        summary.rows.append(row)
        if row.get("duplicate_of"):
            duplicate = {"path": row["path"], "recording_id": row["id"], "duplicate_of": row["duplicate_of"],
                         "action": "skipped" if row["status"] == "duplicate" else "kept", "sha256": row.get("sha256")}
            summary.duplicate_sources.append(duplicate)
            logger.warning("%s", duplicate_message(duplicate))
        if row["status"] == "stored":
            summary.processed.append(row["id"])
        elif row["status"] == "skipped":
            summary.skipped.append(row["id"])
        elif row["status"] == "duplicate":
            pass  # listed in summary.duplicate_sources above
        elif row["status"] == "excluded":
            summary.excluded.append({"path": row["path"], "reason": row["reason"], "recording_id": row["id"]})
        elif row["status"] == "internal_error":
            logger.error("Internal error while preprocessing %s:\n%s", row["path"], row["traceback"].rstrip())
            summary.internal_errors.append(
                {"path": row["path"], "error": row["error"], "error_type": row["error_type"],
                 "recording_id": row["id"], "traceback": row["traceback"]}
            )
        else:
            summary.failed.append(
                {"path": row["path"], "error": row["error"], "error_type": row.get("error_type"), "recording_id": row["id"]}
            )
    summary.seconds = time.perf_counter() - started
    return summary


def _pool_context() -> multiprocessing.context.BaseContext:
    """How worker processes start.

    ``fork`` on Linux with Python < 3.12: workers start in milliseconds with every module
    already imported (importing MNE, SciPy's signal module, pandas and zarr takes 2-3 s,
    which would otherwise be paid again by every worker). zarr resets its I/O thread and
    lock after a fork, and the workers create their own store handles. Elsewhere, and on
    Python >= 3.12 (which warns about forking a process that has threads), ``forkserver``
    with the heavy modules preloaded once, or ``spawn``.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and sys.version_info < (3, 12) and "fork" in methods:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(
            ["brainfm.preprocessing.pipeline", "brainfm.preprocessing.readers", "brainfm.store.writer", "scipy.signal"]
        )
        return context
    return multiprocessing.get_context("spawn")


def _import_before_fork(sources: list[Source]) -> None:
    """Import what every worker needs (SciPy's signal module, MNE's filters and the readers
    of the formats present) once in the parent, so that forked workers inherit it."""
    import mne.filter
    import scipy.signal  # noqa: F401

    from brainfm.preprocessing import pipeline, readers  # noqa: F401
    from brainfm.preprocessing.formats import read_function

    for key in sorted({source.format for source in sources}):
        try:
            read_function(key)
        except Exception:  # noqa: BLE001 - a missing optional reader fails later, per file, with its message
            logger.debug("could not import the reader of %s", key)
    del mne


def _limit_threads() -> None:
    """Worker initializer: one BLAS/OpenMP thread per worker (the workers already run in
    parallel; a forked worker inherits the parent's already-started BLAS thread pool, so
    environment variables alone do not limit it)."""
    global _THREAD_LIMITS
    from threadpoolctl import threadpool_limits

    _THREAD_LIMITS = threadpool_limits(limits=1)


_THREAD_LIMITS: Any = None


def _failed_row(source: Source, store: str, message: str, kind: str) -> dict[str, Any]:
    """Record a failure of ``source`` in the store (a warning if that fails too); return its summary row."""
    from brainfm.store.writer import StoreWriter

    try:
        StoreWriter(store).record_failure(str(source.path), message, source.recording_id)
    except Exception:  # noqa: BLE001
        logger.warning("could not record the failure of %s in the store", source.path)
    return {"id": source.recording_id, "path": str(source.path), "status": "failed", "error": message, "error_type": kind}


def _find_parallel_duplicates(rows: dict[str, dict[str, Any]], known: dict[str, list[str]]) -> None:
    """Mark rows stored by this parallel run from a source another row of the run also stored.

    Workers compare with the store as it was when the run started; two copies written at the
    same time are found here, after the fact: the later ids (in sorted order) become kept duplicates.
    """
    by_hash: dict[str, list[str]] = {}
    for recording_id in sorted(rows):
        row = rows[recording_id]
        if row["status"] == "stored" and row.get("sha256") and not row.get("duplicate_of"):
            by_hash.setdefault(row["sha256"], []).append(recording_id)
    for sha256, ids in by_hash.items():
        for recording_id in ids[1:]:
            rows[recording_id]["duplicate_of"] = [i for i in [*known.get(sha256, []), *ids] if i != recording_id]


def _pool_pass(
    sources: list[Source], recipe: Recipe, store: str, config_hash: str, workers: int,
    context: multiprocessing.context.BaseContext, bar: Any, results: list[dict[str, Any]],
    known: dict[str, list[str]] | None = None, on_duplicate: str = "skip",
) -> list[Source]:
    """Run sources in one pool; return those left unfinished when a worker process died."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_limit_threads)
    unfinished: list[Source] = []
    completed = False
    try:
        pending: dict[Future[dict[str, Any]], Source] = {
            pool.submit(_process_one, source, recipe, store, config_hash, known, on_duplicate): source
            for source in sources
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                source = pending.pop(future)
                try:
                    results.append(future.result())
                except BrokenProcessPool:
                    unfinished.append(source)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a source that cannot be pickled: a bug
                    results.append(_internal_error_row(source, exc, traceback.format_exc()))
                if bar is not None:
                    bar.update()
        completed = True
    finally:
        # on an error in this process (Ctrl-C...), do not run the rest of the queue
        pool.shutdown(wait=True, cancel_futures=not completed)
    return unfinished


def _run_pool(
    sources: list[Source], recipe: Recipe, store: str, config_hash: str, jobs: int, bar: Any,
    known: dict[str, list[str]] | None = None, on_duplicate: str = "skip",
) -> list[dict[str, Any]]:
    """Run sources on ``jobs`` worker processes.

    A worker process that dies (killed by the system, e.g. out of memory) breaks its pool:
    the unfinished sources then run again in a fresh pool, and if that breaks too, one at a
    time, each in its own process, so that only the source that kills its worker fails.
    """
    context = _pool_context()
    if context.get_start_method() == "fork":
        _import_before_fork(sources)
    thread_vars = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in thread_vars}
    for name in thread_vars:  # spawned/forkserver children read these at start
        os.environ[name] = "1"
    results: list[dict[str, Any]] = []
    try:
        unfinished = _pool_pass(sources, recipe, store, config_hash, min(jobs, len(sources)), context, bar, results,
                                known, on_duplicate)
        if unfinished:
            logger.warning("a worker process died; running %d unfinished recordings again", len(unfinished))
            unfinished = _pool_pass(unfinished, recipe, store, config_hash, min(jobs, len(unfinished)), context, bar,
                                    results, known, on_duplicate)
        for source in unfinished:  # one at a time: a death now names its source
            if _pool_pass([source], recipe, store, config_hash, 1, context, bar, results, known, on_duplicate):
                message = (
                    f"{source.relpath}: the worker process preprocessing it died (killed by the system, most "
                    f"likely out of memory). Run it alone with --jobs 1, or on a machine with more memory."
                )
                results.append(_failed_row(source, store, message, "WorkerDied"))
                if bar is not None:
                    bar.update()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return results
