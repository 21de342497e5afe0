"""Files whose content is not there: git-annex/DataLad placeholders and broken links.

A fresh ``datalad clone`` or ``git clone`` of an annexed dataset (every OpenNeuro dataset)
holds the names of its data files but not their content until ``datalad get`` /
``git annex get`` fetches it. git-annex leaves one of two kinds of placeholder:

* a symbolic link into ``.git/annex/objects/...`` whose target does not exist yet (the
  usual, "locked" state); ``Path.is_file()`` is False for it, so a folder walk that lists
  files silently skips it;
* a small pointer file whose whole content is the object's path, ``/annex/objects/<key>``
  (unlocked files, adjusted branches) or ``../.git/annex/objects/...`` (a link written as a
  file on file systems without symbolic links); a reader then fails on a few bytes of text.

:func:`placeholder_kind` tells both apart from real files, and from other broken links;
:func:`find_placeholders` walks a folder the way discovery does; :func:`placeholder_error`
builds the error that names the files and the command that fetches them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from brainfm.errors import ContentNotFetchedError
from brainfm.preprocessing.formats import DATA_EXTENSIONS, _ext

__all__ = ["MAX_POINTER_BYTES", "find_placeholders", "placeholder_error", "placeholder_kind"]

#: git-annex pointer files hold one object path (a key of ~100-200 characters); larger files are data.
MAX_POINTER_BYTES = 1024
_POINTER = re.compile(rb"\s*(?:/annex/objects/|(?:\.\./)*\.git/annex/objects/)[^\s]+\s*")


def placeholder_kind(path: Path) -> str | None:
    """Say whether a path is a placeholder for content that is not there.

    Parameters
    ----------
    path : pathlib.Path
        A file or link found in a dataset folder.

    Returns
    -------
    kind : str | None
        ``"annex"`` for a git-annex link whose object is missing or a git-annex pointer file,
        ``"broken_link"`` for another symbolic link whose target does not exist, None for a
        real file or folder.
    """
    path = Path(path)
    if path.is_symlink():
        if path.exists():
            return None
        target = os.readlink(path).replace("\\", "/")
        return "annex" if "annex/objects/" in target else "broken_link"
    try:
        info = path.stat()
    except OSError:
        return None
    if not path.is_file() or info.st_size > MAX_POINTER_BYTES or info.st_size == 0:
        return None
    try:
        with path.open("rb") as handle:
            head = handle.read(MAX_POINTER_BYTES)
    except OSError:
        return None
    return "annex" if _POINTER.fullmatch(head) else None


def find_placeholders(root: Path, skipped_folders: Sequence[str] = ()) -> dict[Path, str]:
    """Every placeholder under a folder, walked as discovery walks it.

    Broken links are found among all files; pointer files only among files with a recording's
    or data file's extension (:data:`~brainfm.preprocessing.formats.DATA_EXTENSIONS`), so that
    the thousands of small sidecars of a BIDS dataset are not opened.

    Parameters
    ----------
    root : pathlib.Path
        The dataset folder.
    skipped_folders : sequence of str
        Folder names not walked into (besides hidden folders such as ``.git``).

    Returns
    -------
    placeholders : dict of pathlib.Path to str
        Path (under ``root``, links not resolved) -> :func:`placeholder_kind`.
    """
    found: dict[Path, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skipped_folders)
        # os.walk lists a link to a missing folder among the files, and a link to a folder among dirs
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            # links are checked everywhere; pointer files (read, not only listed) only among data files
            if not (path.is_symlink() or _ext(name) in DATA_EXTENSIONS):
                continue
            kind = placeholder_kind(path)
            if kind is not None:
                found[path] = kind
    return found


def placeholder_error(owner: Path, files: Iterable[Path], kinds: dict[Path, str], root: Path) -> ContentNotFetchedError:
    """The error for a recording (or a lone file) whose content was never fetched.

    Parameters
    ----------
    owner : pathlib.Path
        The recording's entry point (or the lone placeholder).
    files : iterable of pathlib.Path
        Its placeholder files.
    kinds : dict of pathlib.Path to str
        :func:`placeholder_kind` of each.
    root : pathlib.Path
        The dataset folder (commands are given relative to it).

    Returns
    -------
    error : ContentNotFetchedError
        Naming the files and the command that fetches them.
    """
    files = sorted(set(files))
    annexed = [f for f in files if kinds.get(f) == "annex"]
    broken = [f for f in files if kinds.get(f) != "annex"]

    def rel(path: Path) -> str:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return str(path)

    parts = []
    if annexed:
        names = " ".join(rel(f) for f in annexed)
        parts.append(
            f"{len(annexed)} file(s) are git-annex placeholders whose content was never fetched "
            f"({', '.join(rel(f) for f in annexed)}). Fetch them with `datalad get {names}` (or "
            f"`git annex get {names}`) inside {root}, then run brainfm again."
        )
    if broken:
        targets = ", ".join(f"{rel(f)} -> {os.readlink(f)}" if f.is_symlink() else rel(f) for f in broken)
        parts.append(
            f"{len(broken)} file(s) are symbolic links to files that do not exist ({targets}). "
            "Restore their targets or replace the links with the files."
        )
    return ContentNotFetchedError(f"{owner}: the recording's data are not here: " + " ".join(parts))
