"""Labels of windows: from event descriptions, or one label per recording.

Event-locked windows take the label of their event through a label map (``{"T1": 0,
"T2": 1}``). Recording-level labels come from an identity field (``task``, ``run``, ...) or
from a source field such as the file path, optionally through a regular expression; e.g.
eegmat's ``Subject00_1.edf`` (rest) and ``Subject00_2.edf`` (mental arithmetic)::

    RecordingLabels(field="path", pattern=r"_(\\d)\\.edf$", mapping={"1": 0, "2": 1})
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from brainfm._check import check_option
from brainfm._logging import logger, warn
from brainfm.data.recording import IDENTITY_FIELDS

__all__ = ["NO_LABEL", "RecordingLabels", "event_label_map"]

#: Label of a window that has none (fixed windows without recording labels).
NO_LABEL = -1
_SOURCE_FIELDS = ("path", "relpath", "format")


@dataclass(frozen=True)
class RecordingLabels:
    """One label per recording, read from its identity or source.

    Parameters
    ----------
    field : str
        An identity field (``dataset``, ``subject``, ``session``, ``task``, ``acquisition``,
        ``run``), a source field (``path``, ``relpath``, ``format``) or ``id`` (the
        recording id).
    mapping : dict of str to int
        Value (or the pattern's match) -> label.
    pattern : str | None
        A regular expression searched in the field's value; its first group (or the whole
        match when it has no group) is looked up in ``mapping``. None looks up the value itself.
    on_missing : "raise" | "warn" | "ignore"
        What to do with a recording whose value is absent, does not match or is not in
        ``mapping``: raise a ValueError, or leave the recording out (with a warning, or silently).
    """

    field: str
    mapping: dict[str, int]
    pattern: str | None = None
    on_missing: Literal["raise", "warn", "ignore"] = "raise"

    def __post_init__(self) -> None:
        check_option("field", self.field, (*IDENTITY_FIELDS, *_SOURCE_FIELDS, "id"))
        check_option("on_missing", self.on_missing, ("raise", "warn", "ignore"))
        if not self.mapping:
            raise ValueError("RecordingLabels needs a non-empty 'mapping' (value -> label).")
        if self.pattern is not None:
            re.compile(self.pattern)

    def value(self, recording_id: str, identity: dict[str, Any], source: dict[str, Any]) -> str | None:
        """The looked-up value of one recording (after the pattern), or None."""
        if self.field == "id":
            raw: Any = recording_id
        elif self.field in _SOURCE_FIELDS:
            raw = source.get(self.field)
        else:
            raw = identity.get(self.field)
        if raw is None:
            return None
        text = str(raw).replace("\\", "/")
        if self.pattern is None:
            return text
        match = re.search(self.pattern, text)
        if match is None:
            return None
        return match.group(1) if match.groups() else match.group(0)

    def label(self, recording_id: str, identity: dict[str, Any], source: dict[str, Any]) -> int | None:
        """The label of one recording, or None when it has none and ``on_missing`` allows it.

        Parameters
        ----------
        recording_id : str
            The recording id.
        identity : dict
            Its identity fields.
        source : dict
            Its source fields (``path``, ``relpath``, ...).

        Returns
        -------
        label : int | None
            The label.
        """
        value = self.value(recording_id, identity, source)
        if value is not None and value in self.mapping:
            return int(self.mapping[value])
        message = (
            f"Recording {recording_id!r} has no label: its {self.field!r} gives {value!r}"
            + (f" (pattern {self.pattern!r})" if self.pattern else "")
            + f", which is not one of {sorted(self.mapping)}."
        )
        if self.on_missing == "raise":
            raise ValueError(message + " Set on_missing='warn' or 'ignore' to leave such recordings out.")
        if self.on_missing == "warn":
            warn(message + " It is left out.")
        else:
            logger.debug(message)
        return None


def event_label_map(descriptions: list[str], label_map: dict[str, int] | list[str] | None) -> dict[str, int]:
    """Resolve the label map of event-locked windows.

    Parameters
    ----------
    descriptions : list of str
        Every event description in the recordings (``BAD`` spans excluded).
    label_map : dict of str to int | list of str | None
        Description -> label; a list gives labels by position; None numbers all distinct
        descriptions in sorted order.

    Returns
    -------
    label_map : dict of str to int
        Description -> label; events not in it make no window.
    """
    if label_map is None:
        return {d: i for i, d in enumerate(sorted(set(descriptions)))}
    if isinstance(label_map, (list, tuple)):
        return {str(d): i for i, d in enumerate(label_map)}
    return {str(k): int(v) for k, v in label_map.items()}
