"""Find the recordings of a dataset folder: BIDS roots and plain folders, walked in sorted order.

:func:`discover` walks the input folder in sorted order, skipping hidden folders,
``derivatives/`` and ``sourcedata/``. A folder holding ``dataset_description.json`` is a BIDS
root (nested roots are allowed: each becomes its own dataset, named after its folder) and
is read through :mod:`brainfm.preprocessing.bids`; a folder laid out as the Brain Treebank
(``electrode_labels/``, ``localization/`` and ``sub_<k>_trial<nnn>.h5`` files) through
:mod:`brainfm.preprocessing.braintreebank`; every other folder goes through the
format registry (:func:`brainfm.preprocessing.formats.scan_folder`).

Identity of plain files comes from a regular expression with named groups ``subject``,
``session``, ``task``, ``acquisition``, ``run``: a user ``pattern`` is searched in the path
relative to the input folder (``S(?P<subject>\\d+)R(?P<run>\\d+)`` on ``S001R03.edf``); the
default, :data:`DEFAULT_PATTERN`, reads BIDS-style ``key-value`` entities in the file name
(``sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay``). A source whose identity has a
subject gets the id :meth:`Identity.recording_id`, the others an id built from the path.
Two sources with the same id: the first in path order keeps it; the later ones are reported
in :attr:`Discovery.problems` with a :class:`~brainfm.errors.DuplicateRecordingError`.

Files whose content is not there (git-annex/DataLad placeholders of a clone whose data were
never fetched, broken links; :mod:`brainfm.preprocessing.placeholders`) are found first. A
recording with such a file, and such a file that looks like a recording on its own (a BIDS
``_eeg.edf`` link that a file listing would skip), is reported in :attr:`Discovery.problems`
with a :class:`~brainfm.errors.ContentNotFetchedError` naming the ``datalad get`` to run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from brainfm._logging import logger
from brainfm.data.recording import IDENTITY_FIELDS, Identity, path_recording_id
from brainfm.errors import ConfigError, DuplicateRecordingError
from brainfm.preprocessing.bids import discover_bids, is_bids_root
from brainfm.preprocessing.braintreebank import discover_braintreebank, is_braintreebank_root
from brainfm.preprocessing.formats import DATA_EXTENSIONS, _ext, scan_folder
from brainfm.preprocessing.placeholders import find_placeholders, placeholder_error
from brainfm.preprocessing.source import Source

__all__ = ["DEFAULT_PATTERN", "SKIPPED_FOLDERS", "Discovery", "discover", "identity_from_path"]

_VALUE = r"[A-Za-z0-9]+"
_OTHER = rf"(?:_[A-Za-z]+-{_VALUE})*?"
#: Default identity pattern: BIDS-style entities in the file name, in BIDS order, other
#: entities allowed in between.
DEFAULT_PATTERN = (
    rf"(?:^|_)sub-(?P<subject>{_VALUE})"
    rf"(?:{_OTHER}_ses-(?P<session>{_VALUE}))?"
    rf"(?:{_OTHER}_task-(?P<task>{_VALUE}))?"
    rf"(?:{_OTHER}_acq-(?P<acquisition>{_VALUE}))?"
    rf"(?:{_OTHER}_run-(?P<run>{_VALUE}))?"
)
#: Folder names never walked into.
SKIPPED_FOLDERS = ("derivatives", "sourcedata")
_GROUPS = IDENTITY_FIELDS[1:]


@dataclass
class Discovery:
    """What :func:`discover` found.

    Parameters
    ----------
    sources : list of Source
        Recordings in path order, ids unique.
    ignored : dict of str to list of str
        Files that are not recordings nor parts of one, by lower-case extension (``""`` for
        none), paths relative to the input folder.
    problems : list of tuple of (str, Exception)
        Recordings found but unusable before reading (duplicate ids, content not fetched),
        by absolute path.
    placeholders : list of str
        Every file under the folder whose content is not there (git-annex placeholders,
        broken links), relative to the input folder.
    """

    sources: list[Source] = field(default_factory=list)
    ignored: dict[str, list[str]] = field(default_factory=dict)
    problems: list[tuple[str, Exception]] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)

    @property
    def n_ignored(self) -> int:
        """Number of ignored files."""
        return sum(len(v) for v in self.ignored.values())


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"Invalid value for the 'pattern' parameter: {pattern!r} is not a regular expression ({exc}).") from exc
    unknown = sorted(set(compiled.groupindex) - set(_GROUPS))
    if unknown:
        raise ConfigError(
            f"Invalid value for the 'pattern' parameter: named groups must be among {list(_GROUPS)}, "
            f"but {pattern!r} has {unknown}."
        )
    if not compiled.groupindex:
        raise ConfigError(
            f"Invalid value for the 'pattern' parameter: {pattern!r} has no named group; use e.g. "
            r"'S(?P<subject>\d+)R(?P<run>\d+)'."
        )
    return compiled


def identity_from_path(dataset: str, relpath: str, pattern: str | re.Pattern[str] | None = None) -> Identity:
    """Read an identity from a path with a pattern.

    Parameters
    ----------
    dataset : str
        Dataset name.
    relpath : str
        Path relative to the dataset folder, ``/``-separated.
    pattern : str | re.Pattern | None
        Regular expression with named groups among ``subject``, ``session``, ``task``,
        ``acquisition``, ``run``, searched in ``relpath``; ``None`` searches
        :data:`DEFAULT_PATTERN` in the file name.

    Returns
    -------
    identity : Identity
        Fields the pattern did not match are ``None``.
    """
    if pattern is None:
        match = re.search(DEFAULT_PATTERN, relpath.rsplit("/", 1)[-1])
    else:
        compiled = pattern if isinstance(pattern, re.Pattern) else _compile(pattern)
        match = compiled.search(relpath) if compiled is not None else None
    values = match.groupdict() if match else {}
    return Identity(dataset=dataset, **{k: values.get(k) or None for k in _GROUPS})


def discover(
    input_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    pattern: str | None = None,
) -> Discovery:
    """Find every recording under a folder.

    Parameters
    ----------
    input_dir : path-like
        The dataset folder (BIDS or plain, possibly holding BIDS roots).
    dataset : str | None
        Dataset name; defaults to the folder's name. A BIDS root below the input folder is
        always named after its own folder.
    pattern : str | None
        Identity pattern for plain files (see :func:`identity_from_path`); ignored for BIDS.

    Returns
    -------
    discovery : Discovery
        Sources, ignored files and problems.
    """
    # absolute and normalised, but symbolic links kept: recorded paths are the user's paths
    root = Path(os.path.abspath(Path(input_dir).expanduser()))
    if not root.is_dir():
        raise FileNotFoundError(f"The input folder {root} does not exist or is not a folder.")
    compiled = _compile(pattern)
    dataset = dataset or root.name
    result = Discovery()
    found: list[Source] = []
    ignored: list[Path] = []
    placeholders = find_placeholders(root, SKIPPED_FOLDERS)

    def walk(folder: Path) -> None:
        if is_bids_root(folder):
            name = dataset if folder == root else folder.name
            scan = discover_bids(folder, name)
            found.extend(scan.sources)
            ignored.extend(scan.ignored)
            return
        if is_braintreebank_root(folder):
            name = dataset if folder == root else folder.name
            trials, skipped = discover_braintreebank(folder, name)
            found.extend(trials)
            ignored.extend(skipped)
            return
        children = sorted(folder.iterdir())
        # placeholders (broken links are not is_file()) are listed so that the recording they
        # belong to is found and reported with them
        files = [c.name for c in children if (c.is_file() or c in placeholders) and not c.name.startswith(".")]
        dirs = [c.name for c in children if c.is_dir() and not c.name.startswith(".")]
        scan = scan_folder(folder, files, dirs)
        for entry in scan.entries:
            relpath = entry.path.relative_to(root).as_posix()
            identity = identity_from_path(dataset, relpath, compiled)
            recording_id = (
                identity.recording_id() if identity.subject else path_recording_id(dataset, relpath)
            )
            found.append(
                Source(
                    path=entry.path, relpath=relpath, format=entry.format, files=entry.files,
                    dataset=dataset, identity=identity, recording_id=recording_id,
                    companions=dict(entry.companions),
                    subject_source=("pattern" if compiled else "filename") if identity.subject else "recording",
                )
            )
        ignored.extend(scan.ignored)
        for name in dirs:
            if name in scan.recording_dirs or name in SKIPPED_FOLDERS:
                continue
            walk(folder / name)

    walk(root)
    owners: dict[str, Source] = {}
    for source in sorted(found, key=lambda s: s.path.relative_to(root).as_posix()):
        other = owners.get(source.recording_id)
        if other is not None:
            if source.bids_root is not None:
                fix = (
                    "Their subject, session, task, acquisition and run entities are the same, and "
                    "recording ids use no other BIDS entity (rec-, proc-, desc-...): rename or "
                    "move one of them."
                )
            else:
                fix = (
                    "Give a --pattern whose groups tell them apart (for example one that also "
                    "captures the session or run), or move one of the files."
                )
            result.problems.append((str(source.path), DuplicateRecordingError(
                f"{source.path} maps to the recording id {source.recording_id!r}, which "
                f"{other.path} already has. {fix}"
            )))
            continue
        owners[source.recording_id] = source
        result.sources.append(source)
    _report_placeholders(result, placeholders, root)
    for path in sorted(ignored):
        result.ignored.setdefault(_ext(path.name), []).append(path.relative_to(root).as_posix())
    logger.info(
        "Found %d recordings in %s (%d files ignored, %d problems)",
        len(result.sources), root, result.n_ignored, len(result.problems),
    )
    return result


def _report_placeholders(result: Discovery, placeholders: dict[Path, str], root: Path) -> None:
    """Move the sources with placeholder files to the problems; report lone data placeholders."""
    if not placeholders:
        return
    result.placeholders = [p.relative_to(root).as_posix() for p in sorted(placeholders)]
    claimed: set[Path] = set()
    kept = []
    for source in result.sources:
        paths = {source.path, *source.files, *source.companions.values()}
        hits = [p for p in placeholders if p in paths or source.path in p.parents]
        if hits:
            claimed.update(hits)
            result.problems.append((str(source.path), placeholder_error(source.path, hits, placeholders, root)))
        else:
            kept.append(source)
    result.sources = kept
    lone = [p for p in sorted(placeholders) if p not in claimed and _ext(p.name) in DATA_EXTENSIONS]
    for path in lone:
        result.problems.append((str(path), placeholder_error(path, [path], placeholders, root)))
    others = len(placeholders) - len(claimed) - len(lone)
    if others:
        logger.warning(
            "%d other files under %s are placeholders whose content is not there (git-annex, broken links); "
            "they are not recordings, but fetch them too if the recordings need them.", others, root,
        )
