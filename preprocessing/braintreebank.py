"""Brain Treebank: per-trial HDF5 neural data with electrode label and localisation files.

The Brain Treebank (Wang et al. 2024, https://braintreebank.dev) lays a dataset out as::

    <root>/
      all_subject_data/sub_<k>_trial<nnn>.h5     (or directly in <root>/)
      electrode_labels/sub_<k>/electrode_labels.json
      localization/sub_<k>/depth-wm.csv
      corrupted_elec.json                         (optional)
      subject_timings/sub_<k>_trial<nnn>_timings.csv,
      subject_metadata/sub_<k>_trial<nnn>_metadata.json,
      transcripts/<film>/features.csv             (optional: word events,
                                                   :mod:`brainfm.preprocessing.braintreebank_events`)

Each HDF5 file holds a group ``data`` with one 1-D dataset per electrode,
``electrode_<i>``, in the order of the subject's ``electrode_labels.json`` (a JSON list of
names; ``*`` and ``#`` marks in a name are dropped, as the dataset's own tools do). Samples
are microvolts at 2048 Hz. ``depth-wm.csv`` has one row per electrode: ``Electrode``, the
voxel coordinates ``L``, ``I``, ``P`` (millimetres in the subject's FreeSurfer-conformed MRI,
counted towards left, inferior and posterior) and atlas labels (a column whose name contains
``Destrieux``, and one containing ``Desikan``). ``corrupted_elec.json`` maps ``sub_<k>`` to
the names of corrupted electrodes.

What brainfm stores (the channel table of :mod:`brainfm.data.channels`):

* every electrode as ``seeg`` in volts, except trigger channels (names starting ``DC`` or
  ``TRIG``), which are ``misc`` and so left out by iEEG recipes;
* corrupted electrodes as ``bad`` with the reason ``corrupted_elec.json``; they stay in the
  recording so that the shaft Laplacian can see them as (bad) neighbours, as the reference
  pipeline does;
* the position in the ``mri`` frame (FreeSurfer surface RAS of a 256-mm conformed volume):
  ``x = 128 - L``, ``y = 128 - P``, ``z = 128 - I`` millimetres, in metres;
* ``region`` = the Destrieux label (the Desikan-Killiany one when a row has no Destrieux
  label), ``group`` = the shaft (the name without its trailing contact number).

Identity: subject ``<k>``, run ``<nnn>`` (the trial). Reading is lazy: the raw reads only the
requested samples of the requested electrodes from the HDF5 file, so a 2-hour trial is
never held twice in memory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainfm.data.channels import empty_channel_table, shaft_groups
from brainfm.data.recording import Identity
from brainfm.errors import ReadError, SidecarError
from brainfm.preprocessing.braintreebank_events import braintreebank_events, event_companions
from brainfm.preprocessing.source import RawInput, Source

__all__ = [
    "BRAINTREEBANK_SFREQ",
    "discover_braintreebank",
    "is_braintreebank_root",
    "read_braintreebank",
    "read_raw_braintreebank",
]

#: Sampling rate of the Brain Treebank recordings (Hz).
BRAINTREEBANK_SFREQ = 2048.0
_TRIAL = re.compile(r"^sub_(?P<subject>\d+)_trial(?P<trial>\d+)\.h5$")
_TRIGGER_PREFIXES = ("DC", "TRIG")
#: Voxel index of the centre of a 256-mm FreeSurfer-conformed volume.
_CONFORMED_CENTRE_MM = 128.0


def _trial_folders(root: Path) -> list[Path]:
    return [folder for folder in (root, root / "all_subject_data") if folder.is_dir()]


def is_braintreebank_root(folder: Path) -> bool:
    """Whether a folder is laid out as a Brain Treebank dataset.

    Parameters
    ----------
    folder : pathlib.Path
        The folder.

    Returns
    -------
    found : bool
        True when it has ``electrode_labels/`` and ``localization/`` folders and at least one
        ``sub_<k>_trial<nnn>.h5`` file (in itself or in ``all_subject_data/``).
    """
    folder = Path(folder)
    if not ((folder / "electrode_labels").is_dir() and (folder / "localization").is_dir()):
        return False
    return any(_TRIAL.match(p.name) for d in _trial_folders(folder) for p in d.iterdir())


def discover_braintreebank(root: Path, dataset: str) -> tuple[list[Source], list[Path]]:
    """Find the trials of a Brain Treebank folder.

    Parameters
    ----------
    root : pathlib.Path
        The dataset root (see the module docstring).
    dataset : str
        Dataset name.

    Returns
    -------
    sources : list of Source
        One per trial file, format ``"braintreebank"``, companions ``"labels"``,
        ``"localization"``, ``"timings"``, ``"metadata"`` and (when present) ``"corrupted"`` and
        ``"transcript"``; sorted by subject and trial.
    ignored : list of pathlib.Path
        Other files directly in the trial folders.
    """
    root = Path(root)
    found: list[tuple[int, int, Path]] = []
    ignored: list[Path] = []
    for folder in _trial_folders(root):
        for path in sorted(folder.iterdir()):
            match = _TRIAL.match(path.name)
            if match and path.is_file():
                found.append((int(match["subject"]), int(match["trial"]), path))
            elif path.is_file() and not path.name.startswith(".") and path.name != "corrupted_elec.json":
                ignored.append(path)
    sources = []
    for subject, trial, path in sorted(found):
        companions = {
            "labels": root / "electrode_labels" / f"sub_{subject}" / "electrode_labels.json",
            "localization": root / "localization" / f"sub_{subject}" / "depth-wm.csv",
        }
        if (root / "corrupted_elec.json").is_file():
            companions["corrupted"] = root / "corrupted_elec.json"
        companions.update(event_companions(root, subject, trial))
        metadata = companions["metadata"]
        try:  # the film's transcript is a companion too (its words become events)
            film = json.loads(metadata.read_text()).get("filename") if metadata.is_file() else None
        except (OSError, ValueError, AttributeError):
            film = None  # reported when the trial is read
        if isinstance(film, str):
            companions["transcript"] = root / "transcripts" / film / "features.csv"
        identity = Identity(dataset=dataset, subject=str(subject), run=f"{trial:03d}")
        sources.append(Source(
            path=path, relpath=path.relative_to(root).as_posix(), format="braintreebank",
            files=[path, *[p for p in companions.values() if p.is_file()]], dataset=dataset,
            identity=identity, recording_id=identity.recording_id(), companions=companions,
            subject_source="filename",
        ))
    return sources, ignored


def _clean(name: str) -> str:
    return str(name).replace("*", "").replace("#", "").strip()


def _read_labels(source: Source) -> list[str]:
    path = source.companions["labels"]
    if not path.is_file():
        raise SidecarError(
            f"{source.path}: the electrode label file {path} is missing; the Brain Treebank keeps one per "
            "subject in electrode_labels/sub_<k>/electrode_labels.json. Put it back, or remove the trial."
        )
    try:
        labels = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SidecarError(f"The electrode label file {path} (of {source.path.name}) is not valid JSON: {exc}.") from exc
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise SidecarError(f"The electrode label file {path} must hold a JSON list of names, got {type(labels).__name__}.")
    return [_clean(x) for x in labels]


def _read_localization(source: Source, notes: list[str]) -> pd.DataFrame | None:
    path = source.companions["localization"]
    if not path.is_file():
        notes.append(f"No localisation file {path}: electrodes have no position and no atlas region.")
        return None
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise SidecarError(f"The localisation table {path} (of {source.path.name}) could not be read: {exc}.") from exc
    missing = [c for c in ("Electrode", "L", "I", "P") if c not in table.columns]
    if missing:
        raise SidecarError(
            f"The localisation table {path} lacks the columns {missing} (it has {list(table.columns)}); "
            "a Brain Treebank depth-wm.csv has Electrode, L, I, P and atlas label columns."
        )
    table = table.copy()
    table["Electrode"] = table["Electrode"].map(_clean)
    return table.drop_duplicates("Electrode").set_index("Electrode")


def _read_corrupted(source: Source) -> set[str]:
    path = source.companions.get("corrupted")
    if path is None:
        return set()
    try:
        listing = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SidecarError(f"The corrupted-electrode list {path} is not valid JSON: {exc}.") from exc
    return {_clean(x) for x in listing.get(f"sub_{source.identity.subject}", [])}


def read_raw_braintreebank(path: str | Path, labels: list[str]) -> Any:
    """Open one Brain Treebank trial as an unloaded MNE Raw (sEEG, volts).

    Parameters
    ----------
    path : path-like
        The ``sub_<k>_trial<nnn>.h5`` file.
    labels : list of str
        Electrode names in the order of the file's ``electrode_<i>`` datasets.

    Returns
    -------
    raw : mne.io.BaseRaw
        A raw whose samples are read from the file on demand.

    Raises
    ------
    brainfm.errors.ReadError
        When the file is not HDF5, has no ``data`` group, its electrode count differs from
        the label count, or its electrodes differ in length.
    """
    return _RawBrainTreebank(Path(path), list(labels))


def _open_h5(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ReadError(f"Could not open {path} as HDF5 (h5py: {exc}). The file may be damaged or incomplete.") from exc


def _raw_class() -> type:
    from mne.io import BaseRaw

    class RawBrainTreebank(BaseRaw):  # type: ignore[misc,valid-type]
        """A Brain Treebank trial read lazily from its HDF5 file."""

        def __init__(self, path: Path, labels: list[str]) -> None:
            import mne

            with _open_h5(path) as handle:
                group = handle.get("data")
                if group is None:
                    raise ReadError(f"{path} has no 'data' group: not a Brain Treebank trial file.")
                keys = sorted((k for k in group if k.startswith("electrode_")), key=lambda k: int(k.split("_")[1]))
                if len(keys) != len(labels):
                    raise SidecarError(
                        f"{path} holds {len(keys)} electrodes but its electrode_labels.json names {len(labels)}: "
                        "the label file belongs to another subject or version of the data."
                    )
                lengths = {int(group[k].shape[0]) for k in keys}
            if len(lengths) != 1:
                raise ReadError(f"{path}: its electrodes hold different numbers of samples {sorted(lengths)[:5]}.")
            info = mne.create_info(labels, BRAINTREEBANK_SFREQ, "seeg", verbose="error")
            with info._unlock():
                for ch in info["chs"]:
                    ch["cal"] = 1e-6  # stored microvolts -> volts
            n_times = lengths.pop()
            super().__init__(
                info, preload=False, first_samps=[0], last_samps=[n_times - 1], filenames=[str(path)],
                raw_extras=[{"keys": keys}], orig_format="single", verbose="error",
            )

        def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):  # noqa: ANN001, ANN202
            keys = self._raw_extras[fi]["keys"]
            rows = np.arange(len(keys))[idx]  # the file's electrodes to read, in output order
            one = np.empty((len(rows), stop - start), dtype=np.float64)
            with _open_h5(Path(self.filenames[fi])) as handle:
                group = handle["data"]
                for j, row in enumerate(rows):
                    one[j] = group[keys[row]][start:stop]
            if mult is not None:  # projector or compensation, calibration included
                data[:] = mult @ one
            else:
                data[:] = one * cals  # cals: (n_out, 1), microvolts -> volts

    return RawBrainTreebank


_RAW_CLASS: type | None = None


def _RawBrainTreebank(path: Path, labels: list[str]) -> Any:  # noqa: N802 - a class factory
    global _RAW_CLASS
    if _RAW_CLASS is None:
        _RAW_CLASS = _raw_class()
    return _RAW_CLASS(path, labels)


def _atlas_columns(table: pd.DataFrame) -> list[str]:
    destrieux = [c for c in table.columns if "destrieux" in c.lower()]
    desikan = [c for c in table.columns if "desikan" in c.lower()]
    return destrieux + desikan


def _label(value: Any) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
    return "" if text.lower() in ("", "nan", "n/a", "unknown") else text


def build_braintreebank_channels(
    labels: list[str], localization: pd.DataFrame | None, corrupted: set[str], notes: list[str]
) -> pd.DataFrame:
    """The channel table of a Brain Treebank subject (see the module docstring).

    Parameters
    ----------
    labels : list of str
        Electrode names in file order.
    localization : pandas.DataFrame | None
        ``depth-wm.csv`` indexed by electrode name.
    corrupted : set of str
        Corrupted electrode names.
    notes : list of str
        Where warnings for the provenance are added.

    Returns
    -------
    channels : pandas.DataFrame
        One row per electrode.
    """
    types = ["misc" if name.upper().startswith(_TRIGGER_PREFIXES) else "seeg" for name in labels]
    table = empty_channel_table(labels, types)
    seeg = table["type"] == "seeg"
    table.loc[seeg, "group"] = shaft_groups(table.loc[seeg, "name"].tolist())
    for name in sorted(corrupted & set(labels)):
        row = labels.index(name)
        table.at[row, "status"] = "bad"
        table.at[row, "status_reason"] = "metadata: corrupted_elec.json"
    if localization is None:
        return table
    atlas = _atlas_columns(localization)
    unlocated = []
    for row, name in enumerate(labels):
        if not seeg.iat[row]:
            continue
        if name not in localization.index:
            unlocated.append(name)
            continue
        entry = localization.loc[name]
        lip = np.array([entry["L"], entry["I"], entry["P"]], dtype=np.float64)
        if np.isfinite(lip).all():
            c = _CONFORMED_CENTRE_MM
            table.loc[row, ["x", "y", "z"]] = np.array([c - lip[0], c - lip[2], c - lip[1]]) / 1000.0
            table.at[row, "frame"] = "mri"
            table.at[row, "pos_source"] = "measured"
        region = next((r for r in (_label(entry[col]) for col in atlas) if r), "")
        table.at[row, "region"] = region
    if unlocated:
        notes.append(
            f"{len(unlocated)} electrodes have no row in depth-wm.csv ({unlocated[:8]}"
            f"{' ...' if len(unlocated) > 8 else ''}): no position and no atlas region."
        )
    return table


def read_braintreebank(source: Source) -> RawInput:
    """Read a Brain Treebank trial: lazy raw, channel table with positions and atlas regions.

    Parameters
    ----------
    source : Source
        From :func:`discover_braintreebank`.

    Returns
    -------
    raw_input : RawInput
        Word, sentence-onset and non-speech events when the trial's trigger timings, metadata
        and film transcript are present (:mod:`brainfm.preprocessing.braintreebank_events`),
        none otherwise; line frequency 60 Hz (recorded in Boston).

    Raises
    ------
    brainfm.errors.SidecarError
        A label, localisation or corrupted-electrode file is missing or broken, or the labels
        do not match the file.
    brainfm.errors.ReadError
        The HDF5 file cannot be read.
    """
    notes: list[str] = []
    labels = _read_labels(source)
    duplicated = sorted({n for n in labels if labels.count(n) > 1})
    if duplicated:
        raise SidecarError(f"{source.companions['labels']} names the electrodes {duplicated} more than once.")
    localization = _read_localization(source, notes)
    corrupted = _read_corrupted(source)
    raw = read_raw_braintreebank(source.path, labels)
    channels = build_braintreebank_channels(labels, localization, corrupted, notes)
    info = {
        "reader": "brainfm.preprocessing.braintreebank.read_raw_braintreebank", "options": {},
        "format": "braintreebank", "electrodes": source.companions["localization"].name, "space": "mri",
    }
    root = source.companions["labels"].parents[2]  # <root>/electrode_labels/sub_<k>/electrode_labels.json
    events = braintreebank_events(root, source.path, source.companions, BRAINTREEBANK_SFREQ, raw.n_times, notes)
    return RawInput(raw=raw, channels=channels, events=events, line_freq=60.0, warnings=notes, info=info)
