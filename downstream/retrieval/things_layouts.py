"""THINGS-EEG2 and THINGS-MEG in the preprocessed layouts the reference reads (spec §3.1, §3.2).

Both datasets come as one folder per subject and an image folder per split::

    root/sub-01/preprocessed_eeg_training.npy   THINGS-EEG2 (NICE/ATM preprocessing): a pickled
    root/sub-01/preprocessed_eeg_test.npy       dict; 'preprocessed_eeg_data' (images, repetitions,
                                                63, samples), 'times' (s), 'ch_names'
    root/sub-01/preprocessed_meg_training.pkl   THINGS-MEG (the reference's split): a pickled dict;
    root/sub-01/preprocessed_meg_test.pkl       'meg_data' (events, 271, samples), 'times', 'ch_names'
    images/training_images/00001_aardvark/aardvark_01b.jpg ...
    images/test_images/00001_aircraft_carrier/aircraft_carrier_06s.jpg ...

Trials are ordered as the sorted concept folders and, within a concept, the sorted image
files: THINGS-EEG2 training holds 10 images per concept with 4 repetitions each, its test set
one image per concept with 80 repetitions; THINGS-MEG holds 12 events per concept in both splits
(12 different images; a test concept's target is its first image, spec §3.2).

The files are Python pickles. They are read with an unpickler that builds only NumPy arrays,
dtypes and plain containers and refuses anything else, so a tampered file cannot run code.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from brainfm.errors import ConfigError, ReadError

__all__ = ["ThingsTrials", "load_things", "read_pickled_arrays"]

_LAYOUTS = {
    "things_eeg2": {"train": "preprocessed_eeg_training.npy", "test": "preprocessed_eeg_test.npy",
                    "key": "preprocessed_eeg_data"},
    "things_meg": {"train": "preprocessed_meg_training.pkl", "test": "preprocessed_meg_test.pkl", "key": "meg_data"},
}
_IMAGE_FOLDERS = {"train": "training_images", "test": "test_images"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# What a pickle of NumPy arrays in plain containers needs (numpy 1.x names are mapped to 2.x).
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"), ("builtins", "slice"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = re.sub(r"^numpy\.core\b", "numpy._core", module)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy 2 dtype classes
            return super().find_class(module, name)
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only NumPy arrays and plain values)")
        return super().find_class(module, name)


def read_pickled_arrays(path: str | Path) -> dict[str, Any]:
    """Read a pickled dict of NumPy arrays (or an ``.npy`` holding one) without running code.

    Parameters
    ----------
    path : str | pathlib.Path
        The file; a plain pickle (what the NICE/ATM and BrainFLORA scripts write, whatever the
        extension) or an ``.npy`` file holding a pickled object.

    Returns
    -------
    content : dict
        The dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Preprocessed file not found: {path}")
    raw = path.read_bytes()
    stream = io.BytesIO(raw)
    if raw.startswith(b"\x93NUMPY"):  # np.save of a dict: the header, then the pickle of the object array
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(stream)
        if dtype != np.dtype(object):
            raise ReadError(f"{path} holds a plain {dtype} array, not the dict of the preprocessed layout.")
    try:
        content = _ArrayUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, ImportError, AttributeError) as exc:
        raise ReadError(f"{path} is not a readable pickle of NumPy arrays: {exc}") from exc
    if isinstance(content, np.ndarray) and content.dtype == object and content.size == 1:
        content = content.item()
    if not isinstance(content, dict):
        raise ReadError(f"{path} holds a {type(content).__name__}, not a dict of arrays.")
    return content


def _image_table(images: Path, split: str) -> list[tuple[str, str]]:
    """(concept name, image id) of every image, in the reference's order (sorted folders, files)."""
    folder = images / _IMAGE_FOLDERS[split]
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder not found: {folder} (data.images must hold {_IMAGE_FOLDERS[split]}/).")
    table = []
    for concept in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = concept.name.split("_", 1)[1] if re.match(r"^\d+_", concept.name) else concept.name
        files = sorted(p for p in concept.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"{concept} holds no image (.jpg, .jpeg, .png); every concept folder needs its images.")
        table.extend((name, f.stem) for f in files)
    if not table:
        raise ConfigError(f"{folder} holds no concept folders.")
    return table


@dataclasses.dataclass
class ThingsTrials:
    """Trials of one split of a THINGS layout."""

    signals: np.ndarray
    """(n_trials, n_chans, n_times) float32."""
    keys: list[str]
    """Embedding key of each trial (image id or concept name)."""
    concepts: list[str]
    """Concept name of each trial."""
    subjects: np.ndarray
    """(n_trials,) subject folder of each trial."""
    ch_names: list[str]
    """Channel names."""


def _crop(data: np.ndarray, times: np.ndarray, tmin: float, tmax: float, path: Path) -> np.ndarray:
    if times.size > data.shape[-1]:  # the NICE/ATM files keep the -0.2 s baseline in 'times' only
        times = times[times.size - data.shape[-1]:]
    if times.size != data.shape[-1]:
        raise ReadError(f"{path}: 'times' has {times.size} values for {data.shape[-1]} samples.")
    keep = (times >= tmin - 1e-9) & (times < tmax - 1e-9)
    if not keep.any():
        raise ConfigError(f"{path}: no sample in [{tmin}, {tmax}) s; the epochs span {times[0]:.3f} to {times[-1]:.3f} s.")
    return data[..., keep]


def load_things(
    layout: Literal["things_eeg2", "things_meg"],
    root: str | Path,
    images: str | Path,
    split: Literal["train", "test"],
    *,
    subjects: list[str] | None = None,
    targets: Literal["image", "concept"] = "image",
    tmin: float = 0.0,
    tmax: float = 1.0,
) -> ThingsTrials:
    """Read one split of THINGS-EEG2 or THINGS-MEG from their preprocessed files.

    Parameters
    ----------
    layout : {"things_eeg2", "things_meg"}
        Which dataset (see the module docstring for the files).
    root : str | pathlib.Path
        Folder of the ``sub-XX`` folders.
    images : str | pathlib.Path
        Folder of ``training_images/`` and ``test_images/``.
    split : {"train", "test"}
        Which split.
    subjects : list of str | None
        Subject folders (None: every ``sub-*`` folder of ``root``).
    targets : {"image", "concept"}
        Key of each trial's embedding: its image id (the reference; a THINGS-MEG test trial's
        target is its concept's first image) or its concept name.
    tmin, tmax : float
        Samples kept, ``tmin <= t < tmax`` in seconds from stimulus onset (0 to 1 s: 250 samples
        of THINGS-EEG2 at 250 Hz).

    Returns
    -------
    trials : ThingsTrials
        Repetitions are not averaged (``brainfm retrieve test`` does that per subject and concept).
    """
    spec = _LAYOUTS[layout]
    root = Path(root)
    names = subjects if subjects is not None else sorted(p.name for p in root.glob("sub-*") if p.is_dir())
    if not names:
        raise FileNotFoundError(f"No sub-* folder in {root}; data.root must hold one folder per subject.")
    table = _image_table(Path(images), split)
    signals, keys, concepts, subject_of, ch_names = [], [], [], [], None
    for subject in names:
        path = root / subject / spec[split]
        content = read_pickled_arrays(path)
        missing = [k for k in (spec["key"], "times") if k not in content]
        if missing:
            raise ReadError(f"{path} has no {missing} entry (keys: {sorted(content)}).")
        data = np.asarray(content[spec["key"]], dtype=np.float32)
        data = _crop(data, np.asarray(content["times"], dtype=np.float64), tmin, tmax, path)
        expected = len(table)
        if layout == "things_eeg2":  # (images, repetitions, C, T), one image per row of the table
            per_image = np.repeat(np.arange(data.shape[0]), data.shape[1])
            data = data.reshape(-1, *data.shape[2:])
        else:  # (events, C, T), one event per image
            per_image = np.arange(data.shape[0])
        if per_image.max(initial=-1) + 1 != expected:
            raise ConfigError(
                f"{path} holds {per_image.max(initial=-1) + 1} images, but {Path(images) / _IMAGE_FOLDERS[split]} "
                f"lists {expected}; the image folder must be the one the data were preprocessed with."
            )
        first_image = {}
        for concept, image in table:
            first_image.setdefault(concept, image)
        for row in per_image:
            concept, image = table[row]
            if targets == "concept":
                keys.append(concept)
            else:  # THINGS-MEG test: the concept's first image is the gallery item (spec §3.2)
                keys.append(first_image[concept] if (layout == "things_meg" and split == "test") else image)
            concepts.append(concept)
        signals.append(data)
        subject_of.extend([subject] * data.shape[0])
        channels = [str(c) for c in content.get("ch_names", [])]
        if ch_names is not None and channels != ch_names:
            raise ConfigError(f"{path} has other channels than {names[0]}; every subject must share one montage.")
        ch_names = channels
    return ThingsTrials(np.concatenate(signals), keys, concepts, np.array(subject_of, dtype=object), ch_names or [])
