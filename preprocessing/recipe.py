"""Preprocessing recipes: which channels to keep, which steps to run, how to write.

A recipe is YAML (``configs/preprocessing/<name>.yaml`` for the shipped ones)::

    name: default
    description: ...
    extends: null            # or the name/path of a recipe whose keys this one overrides
    pick: {types: [eeg, mag, grad, seeg, ecog, dbs, eog, ecg, emg], exclude: []}
    crop: {tmin_s: 0.0, tmax_s: null}
    overrides:               # per-source fixes, e.g. iEEG files that call everything EEG
      - {match: "*acq-ecog*", channel_types: {"*": ecog}}
    steps:                   # in order; see brainfm.preprocessing.steps.STEPS
      - resample: {sfreq: 256}
      - notch: {freqs: line}
    write: {chunk_mib: 2.0, compression: none, clevel: 5, bitround_keepbits: null}
    on_nonfinite: raise      # or bad_channel: mark the channel bad and zero its non-finite samples
    on_event_error: raise    # or store_without_events: when the stim channel / event file cannot be read
    min_duration_s: null     # refuse shorter recordings (the steps' own needs always apply)
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse.typing import NonNegativeFloat, PositiveFloat

from brainfm._check import suggest
from brainfm.data.channels import CHANNEL_TYPES
from brainfm.errors import ConfigError
from brainfm.preprocessing.signatures import check_params
from brainfm.preprocessing.source import EVENT_ERROR_POLICIES, Override
from brainfm.preprocessing.steps import Step, build_step
from brainfm.store.format import COMPRESSIONS, FORMAT_VERSION

__all__ = ["CropSpec", "PickSpec", "Recipe", "WriteSpec", "available_recipes", "load_recipe"]

_TOP_KEYS = (
    "name", "description", "extends", "pick", "crop", "overrides", "steps", "write", "on_nonfinite",
    "on_event_error", "min_duration_s",
)


@dataclass
class PickSpec:
    """Channels to keep.

    Parameters
    ----------
    types : list of str
        Channel types kept (others are never read).
    exclude : list of str
        ``fnmatch`` patterns on channel names (file or normalised) to leave out.
    """

    types: list[str] = field(default_factory=lambda: ["eeg", "mag", "grad", "seeg", "ecog", "dbs", "eog", "ecg", "emg"])
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in CHANNEL_TYPES]
        if unknown:
            raise ConfigError(
                f"pick.types holds unknown channel types {unknown}; allowed are {list(CHANNEL_TYPES)}."
                f"{suggest(unknown[0], CHANNEL_TYPES)}"
            )


@dataclass
class CropSpec:
    """Part of each recording to keep.

    Parameters
    ----------
    tmin_s : float
        Seconds dropped at the start (MEG-GPT drops 30 s).
    tmax_s : float | None
        End of the kept part in seconds from the original start (None: to the end).
    """

    tmin_s: NonNegativeFloat = 0.0
    tmax_s: PositiveFloat | None = None

    def __post_init__(self) -> None:
        if self.tmin_s < 0:
            raise ConfigError(f"crop.tmin_s must be >= 0, got {self.tmin_s!r}.")
        if self.tmax_s is not None and self.tmax_s <= self.tmin_s:
            raise ConfigError(f"crop.tmax_s ({self.tmax_s}) must be greater than crop.tmin_s ({self.tmin_s}).")


@dataclass
class WriteSpec:
    """How the signal is written.

    Parameters
    ----------
    chunk_mib : float
        Target uncompressed size of a signal chunk (all channels x a stretch of time).
    compression : "none" | "lz4" | "zstd"
        Signal codec: none (default; the fastest to load, the only one that keeps the loader
        at or above a memory-mapped ``.npy`` reader, see ``docs/benchmarks.md``), Blosc lz4
        (about 1.15x smaller on real EEG, about half the windows per second) or Blosc zstd
        (about 1.2x, slower still; with ``bitround_keepbits: 12`` about 2x: for archives).
    clevel : int
        Compression level, 1-9.
    shuffle : "shuffle" | "bitshuffle" | None
        Blosc shuffle; None: bit shuffle with mantissa rounding (it compresses rounded
        values better), byte shuffle otherwise.
    bitround_keepbits : int | None
        Keep this many float32 mantissa bits (lossy, about 2x smaller at 12 bits with a
        relative RMS error near 5e-5); None stores the values exactly.
    """

    chunk_mib: PositiveFloat = 2.0
    compression: Literal["none", "lz4", "zstd"] = "none"
    clevel: int = 5
    shuffle: Literal["shuffle", "bitshuffle"] | None = None
    bitround_keepbits: int | None = None

    def __post_init__(self) -> None:
        if not 0.05 <= self.chunk_mib <= 256:
            raise ConfigError(f"write.chunk_mib must lie in [0.05, 256], got {self.chunk_mib!r}.")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"write.compression must be one of {list(COMPRESSIONS)}, got {self.compression!r}.")
        if self.shuffle not in (None, "shuffle", "bitshuffle"):
            raise ConfigError(f"write.shuffle must be 'shuffle', 'bitshuffle' or null, got {self.shuffle!r}.")
        if not 1 <= self.clevel <= 9:
            raise ConfigError(f"write.clevel must lie in [1, 9], got {self.clevel!r}.")
        if self.bitround_keepbits is not None and not 1 <= self.bitround_keepbits <= 23:
            raise ConfigError(f"write.bitround_keepbits must lie in [1, 23] or be null, got {self.bitround_keepbits!r}.")


@dataclass
class Recipe:
    """A validated preprocessing recipe.

    Parameters
    ----------
    name : str
        Recipe name (recorded in every recording's provenance).
    description : str
        What the recipe is for.
    pick, crop, write : PickSpec, CropSpec, WriteSpec
        Channel selection, time window and write options.
    overrides : list of Override
        Per-source fixes (channel types, line frequency).
    steps : list of dict
        ``[{step_name: {param: value}}, ...]`` in order; validated on construction.
    on_nonfinite : "raise" | "bad_channel"
        What to do with NaN/inf samples.
    on_event_error : "raise" | "store_without_events"
        What to do when a recording's stim-channel events or MNE event file cannot be read:
        fail the recording (default), or store it without those events (said in its
        provenance warnings).
    min_duration_s : float | None
        Recordings shorter than this (after ``crop``) fail. Whatever it says, a recording
        must hold at least two samples and as many as the recipe's filters need
        (:meth:`~brainfm.preprocessing.steps.base.ChannelwiseStep.min_samples`).
    origin : str
        Where the recipe came from (``packaged:default`` or a file path).
    """

    name: str = "custom"
    description: str = ""
    pick: PickSpec = field(default_factory=PickSpec)
    crop: CropSpec = field(default_factory=CropSpec)
    overrides: list[Override] = field(default_factory=list)
    steps: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    write: WriteSpec = field(default_factory=WriteSpec)
    on_nonfinite: Literal["raise", "bad_channel"] = "raise"
    on_event_error: Literal["raise", "store_without_events"] = "raise"
    min_duration_s: float | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        if self.on_nonfinite not in ("raise", "bad_channel"):
            raise ConfigError(
                f"on_nonfinite must be 'raise' or 'bad_channel', got {self.on_nonfinite!r}."
            )
        if self.on_event_error not in EVENT_ERROR_POLICIES:
            raise ConfigError(
                f"on_event_error must be one of {list(EVENT_ERROR_POLICIES)}, got {self.on_event_error!r}."
            )
        if self.min_duration_s is not None and (
            isinstance(self.min_duration_s, bool) or not isinstance(self.min_duration_s, (int, float))
            or not self.min_duration_s >= 0
        ):
            raise ConfigError(f"min_duration_s must be a number >= 0 or null, got {self.min_duration_s!r}.")
        self.build_steps()  # validate now, not in the middle of a run

    def build_steps(self) -> list[Step]:
        """Fresh step objects for one recording (steps keep per-recording state)."""
        built = []
        for index, entry in enumerate(self.steps):
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError(
                    f"steps[{index}] must be a mapping with one step name, e.g. {{'bandpass': {{'l_freq': 0.1}}}}; "
                    f"got {entry!r}."
                )
            (step_name, params), = entry.items()
            built.append(build_step(step_name, params, where=f"steps[{index}] ({step_name}) in recipe {self.origin or self.name!r}"))
        return built

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (what is hashed and recorded)."""
        return {
            "name": self.name,
            "description": self.description,
            "pick": asdict(self.pick),
            "crop": asdict(self.crop),
            "overrides": [asdict(o) for o in self.overrides],
            "steps": copy.deepcopy(self.steps),
            "write": asdict(self.write),
            "on_nonfinite": self.on_nonfinite,
            "on_event_error": self.on_event_error,
            "min_duration_s": self.min_duration_s,
        }

    def config_hash(self, **extra: Any) -> str:
        """Hash of everything that shapes the stored data.

        Parameters
        ----------
        **extra
            Further settings that change the output (identity pattern, dataset name).

        Returns
        -------
        config_hash : str
            Hex sha256 of the canonical JSON of the recipe (minus its description), the
            extras and the store format version.
        """
        payload = self.to_dict()
        payload.pop("description")
        payload["extra"] = extra
        payload["format_version"] = FORMAT_VERSION
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "") -> Recipe:
        """Build and validate a recipe from plain data (an ``extends`` key must be resolved first)."""
        label = f"recipe {origin or data.get('name')!r}"  # as messages name it
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise ConfigError(
                f"Recipe {origin or data.get('name')!r} has unknown key(s) {unknown}; allowed keys are "
                f"{list(_TOP_KEYS)}.{suggest(unknown[0], _TOP_KEYS)}"
            )
        # typed signatures first (jsonargparse): a wrong type or range names its key
        top = ("name", "description", "on_nonfinite", "on_event_error", "min_duration_s")
        check_params(cls, {k: data[k] for k in top if k in data}, label)
        sections = {
            key: check_params(spec, data.get(key), f"{key} in {label}")
            for key, spec in (("pick", PickSpec), ("crop", CropSpec), ("write", WriteSpec))
        }
        overrides = data.get("overrides") or []
        if not isinstance(overrides, list):
            raise ConfigError(
                f"In {label}, overrides must be a list of mappings such as "
                f"[{{match: '*acq-ecog*', channel_types: {{'*': ecog}}}}], but got {overrides!r} instead."
            )
        try:
            return cls(
                name=str(data.get("name") or Path(origin).stem or "custom"),
                description=str(data.get("description") or ""),
                pick=PickSpec(**sections["pick"]),
                crop=CropSpec(**sections["crop"]),
                overrides=[
                    Override(**check_params(Override, o, f"overrides[{i}] in {label}")) for i, o in enumerate(overrides)
                ],
                steps=list(data.get("steps") or []),
                write=WriteSpec(**sections["write"]),
                on_nonfinite=data.get("on_nonfinite", "raise"),
                on_event_error=data.get("on_event_error", "raise"),
                min_duration_s=data.get("min_duration_s"),
                origin=origin,
            )
        except TypeError as exc:
            raise ConfigError(f"Invalid {label}: {exc}") from exc


def available_recipes() -> list[str]:
    """Names of the recipes shipped in ``brainfm.configs/preprocessing``."""
    folder = files("brainfm.configs") / "preprocessing"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Could not parse the recipe {origin}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"The recipe {origin} must be a YAML mapping, got {type(data).__name__}.")
    return data


def _load_data(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    text_path = Path(name_or_path)
    if isinstance(name_or_path, Path) or text_path.suffix in (".yaml", ".yml") or text_path.exists():
        if not text_path.is_file():
            raise ConfigError(f"Recipe file {text_path} does not exist.")
        origin = str(text_path)
        data = _read_yaml(text_path.read_text(), origin)
    else:
        names = available_recipes()
        if name_or_path not in names:
            raise ConfigError(
                f"Unknown recipe {name_or_path!r}. Shipped recipes are {names}; or pass a YAML file."
                f"{suggest(str(name_or_path), names)}"
            )
        origin = f"packaged:{name_or_path}"
        resource = files("brainfm.configs") / "preprocessing" / f"{name_or_path}.yaml"
        data = _read_yaml(resource.read_text(), origin)
    parent = data.pop("extends", None)
    if parent:
        parent_path = Path(str(parent))
        if not origin.startswith("packaged:") and parent_path.suffix in (".yaml", ".yml") and not parent_path.is_absolute():
            parent = str(Path(origin).parent / parent_path)  # relative to the file that extends it
        key = str(Path(parent).resolve()) if str(parent).endswith((".yaml", ".yml")) else str(parent)
        if key in seen or key == (str(Path(origin).resolve()) if not origin.startswith("packaged:") else origin):
            raise ConfigError(f"Recipe {origin} extends itself through {[*seen, key]}.")
        base, _ = _load_data(parent, (*seen, key))
        base.pop("name", None)
        base.pop("description", None)
        base.update(data)
        data = base
    return data, origin


def load_recipe(name_or_path: str | Path = "default") -> Recipe:
    """Load a shipped recipe by name or a YAML recipe file.

    Parameters
    ----------
    name_or_path : str | pathlib.Path
        ``"default"``, ``"brainomni"``, ``"meg_gpt"``, ``"barista"`` or a path to YAML.
        A file may say ``extends: default`` and change only some keys.

    Returns
    -------
    recipe : Recipe
        The validated recipe.
    """
    data, origin = _load_data(name_or_path)
    return Recipe.from_dict(data, origin=origin)
