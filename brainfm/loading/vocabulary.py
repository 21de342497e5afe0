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
model trained with a saved vocabulary keeps its embeddings' meaning on new stores. A
*frozen* vocabulary (:meth:`Vocabulary.freeze`, e.g. a pretrained model's, whose embedding
table has exactly its size) is never extended: names it lacks map to ``<unk>``.

The region vocabulary (atlas labels) has the same specials; an empty region is ``<pad>``.
The two are saved together (:func:`vocabularies_to_dict`, :func:`save_vocabularies`): in a
vocabulary file and in a checkpoint's data-module state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from brainfm.data.channel_names import EEG_ALIASES, canonical_eeg_name, ten_five_names

__all__ = [
    "PAD",
    "UNK",
    "Vocabulary",
    "channel_key",
    "load_vocabularies",
    "region_key",
    "save_vocabularies",
    "vocabularies_from_dict",
    "vocabularies_to_dict",
]

PAD = "<pad>"
UNK = "<unk>"
_FORMAT = "brainfm-vocabulary"
_PAIR_FORMAT = "brainfm-vocabularies"


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
    frozen : bool
        Refuse :meth:`extend`: the window index then maps names the vocabulary lacks to
        ``<unk>`` instead of appending them. A usage mode, not saved by :meth:`to_dict`.
    """

    def __init__(self, tokens: Sequence[str], kind: str = "channel", *, frozen: bool = False) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"A vocabulary starts with {[PAD, UNK]}, got {tokens[:2]}.")
        if len(set(tokens)) != len(tokens):
            seen: set[str] = set()
            repeated = sorted({t for t in tokens if t in seen or seen.add(t)})  # type: ignore[func-returns-value]
            raise ValueError(f"Vocabulary tokens must be unique; repeated: {repeated[:10]}.")
        self.kind = kind
        self.tokens: list[str] = tokens
        self.frozen = bool(frozen)
        self._ids: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.kind == self.kind and other.tokens == self.tokens

    def __repr__(self) -> str:
        return f"<Vocabulary {self.kind} | {len(self)} tokens{', frozen' if self.frozen else ''}>"

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

        Raises
        ------
        ValueError
            When the vocabulary is frozen and a token is new.
        """
        if self.frozen:
            new = sorted(set(tokens) - set(self._ids))
            if new:
                raise ValueError(
                    f"The {self.kind} vocabulary is frozen ({len(self)} tokens); it cannot take {new[:10]}. Map "
                    f"names it lacks to {UNK!r} with .id(), or extend an unfrozen copy (Vocabulary.from_dict(...))."
                )
            return self
        for token in sorted(set(tokens) - set(self._ids)):
            self._ids[token] = len(self.tokens)
            self.tokens.append(token)
        return self

    def freeze(self) -> Vocabulary:
        """Refuse further :meth:`extend` calls (names not in the vocabulary then get ``<unk>``).

        Returns
        -------
        self : Vocabulary
            The vocabulary, frozen in place.
        """
        self.frozen = True
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
            The JSON form; or that of :func:`vocabularies_to_dict`, from which ``kind`` picks
            one (None: the channel vocabulary, all such data held before regions were saved).
        kind : str | None
            The expected kind; a mismatch raises a ValueError.

        Returns
        -------
        vocabulary : Vocabulary
            The vocabulary (not frozen).
        """
        if data.get("format") == _PAIR_FORMAT:
            key = f"{kind or 'channel'}_vocabulary"
            if key not in data:
                raise ValueError(f"No {kind!r} vocabulary here; it holds {sorted(k for k in data if k != 'format')}.")
            data = data[key]
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
        return _write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, kind: str | None = None) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Parameters
        ----------
        path : str | pathlib.Path
            The JSON file; from one written by :func:`save_vocabularies`, the vocabulary of
            that ``kind`` (None: the channel vocabulary).
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
        """The region vocabulary before any store: specials only (an empty region gets ``<pad>``)."""
        return cls([PAD, UNK], kind="region")


def vocabularies_to_dict(channel: Vocabulary, region: Vocabulary) -> dict[str, Any]:
    """The JSON form of a channel and a region vocabulary together.

    Parameters
    ----------
    channel, region : Vocabulary
        The vocabularies behind ``channel_ids`` and ``region_ids``.

    Returns
    -------
    data : dict
        ``format``, ``channel_vocabulary`` and ``region_vocabulary`` (each :meth:`Vocabulary.to_dict`).
    """
    return {"format": _PAIR_FORMAT, "channel_vocabulary": channel.to_dict(), "region_vocabulary": region.to_dict()}


def vocabularies_from_dict(data: Mapping[str, Any]) -> tuple[Vocabulary, Vocabulary | None]:
    """Rebuild the vocabularies of :func:`vocabularies_to_dict`, or of an older channel-only form.

    Parameters
    ----------
    data : mapping
        :func:`vocabularies_to_dict` output; a mapping with only ``channel_vocabulary``
        (checkpoints written before region vocabularies were saved); or one channel
        vocabulary's :meth:`Vocabulary.to_dict` (an older vocabulary file).

    Returns
    -------
    channel : Vocabulary
        The channel vocabulary.
    region : Vocabulary | None
        The region vocabulary; None when the data predates saving it.
    """
    if "channel_vocabulary" not in data:
        return Vocabulary.from_dict(dict(data), kind="channel"), None
    channel = Vocabulary.from_dict(data["channel_vocabulary"], kind="channel")
    region = data.get("region_vocabulary")
    return channel, (Vocabulary.from_dict(region, kind="region") if region is not None else None)


def save_vocabularies(path: str | Path, channel: Vocabulary, region: Vocabulary) -> Path:
    """Write both vocabularies to one JSON file, atomically (several ranks may write the same file).

    Parameters
    ----------
    path : str | pathlib.Path
        The file to write.
    channel, region : Vocabulary
        The vocabularies.

    Returns
    -------
    path : pathlib.Path
        The file written.
    """
    return _write_json(path, vocabularies_to_dict(channel, region))


def _write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write JSON atomically (several ranks may write the same file at once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_vocabularies(path: str | Path) -> tuple[Vocabulary, Vocabulary | None]:
    """Read a file of :func:`save_vocabularies` (or an older one holding one channel vocabulary).

    Parameters
    ----------
    path : str | pathlib.Path
        The JSON file.

    Returns
    -------
    channel : Vocabulary
        The channel vocabulary.
    region : Vocabulary | None
        The region vocabulary; None for an older, channel-only file.
    """
    return vocabularies_from_dict(json.loads(Path(path).read_text()))
