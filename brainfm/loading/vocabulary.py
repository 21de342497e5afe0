"""Shared vocabularies: channel names and atlas regions -> integer ids, saved as JSON.

The channel vocabulary lets corpora with different montages share one model (LaBraM's
``standard_1020`` list, generalised). Its tokens, in id order:

1. ``<pad>`` (id 0, padding channels) and ``<unk>`` (id 1, names a saved vocabulary lacks);
2. every 10-05 electrode name in MNE's spelling and order
   (:func:`brainfm.data.channel_names.ten_five_names`), the old 10-20 names ``T3/T4/T5/T6``
   left out because they map onto ``T7/T8/P7/P8`` (:data:`~brainfm.data.channel_names.EEG_ALIASES`);
3. every other channel seen in the store as ``"<type>:<name>"`` (``"mag:MEG0111"``,
   ``"seeg:LA1"``, ``"eeg:Fpz'"``), sorted, so the vocabulary depends only on the store's
   content, not on the order recordings were written.

Ids never change once saved: :meth:`Vocabulary.extend` appends new tokens at the end, so a
model trained with a saved vocabulary keeps its embeddings' meaning on new stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from brainfm.data.channel_names import EEG_ALIASES, canonical_eeg_name, ten_five_names

__all__ = ["PAD", "UNK", "Vocabulary", "channel_key", "region_key"]

PAD = "<pad>"
UNK = "<unk>"
_FORMAT = "brainfm-vocabulary"


def channel_key(name: str, channel_type: str) -> str:
    """The vocabulary token of a channel.

    Parameters
    ----------
    name : str
        Channel name as stored.
    channel_type : str
        Channel type (``eeg``, ``mag``, ...).

    Returns
    -------
    key : str
        The canonical 10-05 name for EEG electrodes of the 10-05 system (old 10-20 aliases
        mapped to their modern names: ``T3`` -> ``T7``), else ``"<type>:<name>"``.
    """
    if channel_type == "eeg":
        canonical = canonical_eeg_name(name)
        if canonical is not None:
            return EEG_ALIASES.get(canonical, canonical)
    return f"{channel_type}:{name}"


def region_key(region: str) -> str | None:
    """The vocabulary token of an atlas label, or None when the region is unknown (empty)."""
    region = str(region).strip()
    return region or None


class Vocabulary:
    """An append-only mapping of tokens to ids with ``<pad>`` = 0 and ``<unk>`` = 1.

    Parameters
    ----------
    tokens : sequence of str
        Tokens in id order, starting with ``<pad>`` and ``<unk>``.
    kind : str
        What the tokens name (``"channel"`` or ``"region"``), checked when loading.
    """

    def __init__(self, tokens: Sequence[str], kind: str = "channel") -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"A vocabulary starts with {[PAD, UNK]}, got {tokens[:2]}.")
        if len(set(tokens)) != len(tokens):
            seen: set[str] = set()
            repeated = sorted({t for t in tokens if t in seen or seen.add(t)})  # type: ignore[func-returns-value]
            raise ValueError(f"Vocabulary tokens must be unique; repeated: {repeated[:10]}.")
        self.kind = kind
        self.tokens: list[str] = tokens
        self._ids: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.kind == self.kind and other.tokens == self.tokens

    def __repr__(self) -> str:
        return f"<Vocabulary {self.kind} | {len(self)} tokens>"

    def id(self, token: str | None) -> int:
        """Id of a token: ``<pad>`` (0) for None, ``<unk>`` (1) for a token not in the vocabulary."""
        if token is None:
            return 0
        return self._ids.get(token, 1)

    def ids(self, tokens: Iterable[str | None]) -> list[int]:
        """Ids of several tokens (see :meth:`id`)."""
        return [self.id(t) for t in tokens]

    def extend(self, tokens: Iterable[str]) -> Vocabulary:
        """Append the tokens not yet present, in sorted order; existing ids do not change.

        Parameters
        ----------
        tokens : iterable of str
            Candidate tokens.

        Returns
        -------
        self : Vocabulary
            The vocabulary, extended in place.
        """
        for token in sorted(set(tokens) - set(self._ids)):
            self._ids[token] = len(self.tokens)
            self.tokens.append(token)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``format``, ``kind`` and ``tokens`` in id order."""
        return {"format": _FORMAT, "kind": self.kind, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], kind: str | None = None) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            The JSON form.
        kind : str | None
            The expected kind; a mismatch raises a ValueError.

        Returns
        -------
        vocabulary : Vocabulary
            The vocabulary.
        """
        if data.get("format") != _FORMAT:
            raise ValueError(f"Not a brainfm vocabulary (format {data.get('format')!r}, expected {_FORMAT!r}).")
        if kind is not None and data.get("kind") != kind:
            raise ValueError(f"Expected a {kind!r} vocabulary, got a {data.get('kind')!r} one.")
        return cls(data["tokens"], kind=str(data["kind"]))

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON.

        Parameters
        ----------
        path : str | pathlib.Path
            The file to write.

        Returns
        -------
        path : pathlib.Path
            The file written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, kind: str | None = None) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Parameters
        ----------
        path : str | pathlib.Path
            The JSON file.
        kind : str | None
            The expected kind.

        Returns
        -------
        vocabulary : Vocabulary
            The vocabulary.
        """
        return cls.from_dict(json.loads(Path(path).read_text()), kind=kind)

    @classmethod
    def base_channels(cls) -> Vocabulary:
        """The channel vocabulary before any store: specials then the 10-05 names."""
        names = [n for n in ten_five_names() if n not in EEG_ALIASES]
        return cls([PAD, UNK, *dict.fromkeys(names)], kind="channel")

    @classmethod
    def base_regions(cls) -> Vocabulary:
        """The region vocabulary before any store: specials only (``<pad>`` doubles as unknown)."""
        return cls([PAD, UNK], kind="region")
