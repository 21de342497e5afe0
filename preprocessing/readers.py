"""Read one source recording: an unloaded MNE Raw plus brainfm's channel table and events.

:func:`read_source` validates the files, opens the raw with the format's reader
(``preload=False``), turns cryptic reader exceptions into :class:`~brainfm.errors.ReadError`
/ :class:`~brainfm.errors.UnsupportedFormatError` that name the file, records MNE's warnings
(MaxShield data, reader notes) in :attr:`RawInput.warnings`, and builds:

* the channel table of the storable channels (``eeg``, ``mag``, ``grad``, ``seeg``, ``ecog``,
  ``dbs``, ``eog``, ``ecg``, ``emg``, ``misc``; stim, MEG reference, respiration, GSR,
  temperature, cHPI... are left out). Types: the file's, then name-based inference for
  channels the file typed EEG (``HEOG`` -> eog, ``EKG`` -> ecg, ``Resp oro-nasal`` -> resp
  and ``Photic`` -> stim, both left out), then the recipe's
  :class:`Override` globs in order. The raw's channel types are updated to match, so MNE
  functions the pipeline calls see the same types as the table. EEG names are normalised to
  10-05 spelling (``orig_name`` keeps the file's name, which is what the raw knows).
* geometry (:mod:`brainfm.data.geometry`), bad channels from metadata, sEEG/ECoG groups.
* events: annotations (onsets relative to the first sample of the raw), MNE ``-eve.fif``
  companions and stim-channel events (descriptions are the event codes as strings).

MEG reference channels. CTF data are read at the compensation grade stored in the file and
brainfm never changes it. Picking away the reference channels (``raw.pick(orig_names)``) is
safe then: MNE drops the compensation matrices it no longer can apply and keeps the data as
stored. (Changing the grade with ``raw.apply_gradient_compensation`` *before* picking would
not be: on an unloaded raw the compensation is applied at read time from the reference
channels, and dropping them silently drops the compensation.)
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import re
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainfm._check import check_option
from brainfm._logging import logger
from brainfm.data.channel_names import infer_type_from_name, normalise_eeg_names, outside_ten_five
from brainfm.data.channels import CHANNEL_TYPES, IEEG_TYPES, empty_channel_table, shaft_groups
from brainfm.data.geometry import fill_geometry, montage_positions
from brainfm.data.recording import empty_events
from brainfm.errors import (
    BrainFMError,
    EventReadError,
    ReadError,
    SidecarError,
    UnsupportedFormatError,
)
from brainfm.preprocessing.bids import read_bids_raw
from brainfm.preprocessing.formats import get_format, read_function
from brainfm.preprocessing.source import EVENT_ERROR_POLICIES, Override, RawInput, Source
from brainfm.preprocessing.validation import (
    check_edf_records,
    eeglab_data_error,
    validate_opened,
    validate_source,
)

__all__ = [
    "MAXSHIELD_WARNING",
    "MAX_EVENT_CODES",
    "amplitude_plausibility",
    "build_channel_table",
    "capture_messages",
    "open_raw",
    "read_events",
    "read_source",
]

#: Recorded instead of MNE's long MaxShield warning.
MAXSHIELD_WARNING = (
    "Internal Active Shielding data (MaxShield): not MaxFiltered. The signals may be "
    "distorted; run MaxFilter or mne.preprocessing.maxwell_filter before relying on them."
)
#: A stim channel with more distinct codes than this is an analogue channel, not triggers.
MAX_EVENT_CODES = 255
_MAIN_STIM = ("STI101", "STI 014", "STI014")


def _note(messages: list[str], text: str) -> None:
    """Add a message once (MNE's MaxShield warning as :data:`MAXSHIELD_WARNING`)."""
    text = text.strip()
    if "Internal Active Shielding" in text:
        text = MAXSHIELD_WARNING
    if text and text not in messages:
        messages.append(text)


@contextlib.contextmanager
def capture_messages(messages: list[str]) -> Iterator[None]:
    """Collect Python warnings and stdout prints (some MNE readers print) into ``messages``.

    Each message is added once: MNE's ``warn`` also logs the warning (to stdout) when its
    logger has a file handler, so the same text can arrive both ways.

    Parameters
    ----------
    messages : list of str
        Where the warnings and printed lines are added, when the block ends.
    """
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()) as out:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                _note(messages, str(w.message))
            for line in out.getvalue().splitlines():
                _note(messages, line)


def _reason(exc: BaseException | None) -> str:
    """The informative line of an exception message (MNE sometimes embeds a traceback).

    An exception without a message (a bare ``assert`` in a reader) is named with the check
    that failed and where, e.g. ``AssertionError in mne/io/kit/kit.py line 215: assert n_bytes
    in (2, 4)``, which says more about the damaged file than the bare name.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("File \"", "raise ", "WARNING:"))]
    if not lines and exc is not None and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = "/".join(Path(frame.filename).parts[-4:])
        check = f": {frame.line.strip()}" if frame.line else ""
        return f"{type(exc).__name__} in {where} line {frame.lineno}{check}"
    text = _printable(lines[-1]) if lines else type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


def _printable(text: str, limit: int = 300) -> str:
    """``text`` with control characters escaped (a reader may quote a line of NUL bytes from a
    damaged header), runs of one repeated character shortened, and at most ``limit`` characters."""
    text = re.sub(r"(.)\1{7,}", lambda m: f"{m.group(1)}...({len(m.group(0))} times)", text)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _translate(source: Source, exc: Exception) -> BrainFMError:
    spec = get_format(source.format)
    if isinstance(exc, FileNotFoundError):
        # MNE: "Could not find the .fdt data file, tried <EEG.data> and <stem>.fdt." or, when
        # EEG.data is <stem>.fdt, "File <stem>.fdt not found.": the first .fdt is the one named.
        fdt = re.search(r"(?:tried |File |[/\\])([^/\\]+?\.fdt)\b", str(exc)) if source.format == "eeglab" else None
        if fdt:
            return eeglab_data_error(source.path, fdt.group(1))
        missing = exc.filename or str(exc)
        return ReadError(
            f"Could not read {source.path} as {spec.name}: a file it needs is missing ({missing}). "
            "Put it back next to the recording, or remove the recording from the input folder."
        )
    return UnsupportedFormatError(
        f"Could not read {source.path} as {spec.name} with mne.io.{spec.reader}: "
        f"{_reason(exc).rstrip('.')}. The file may be damaged, "
        f"incomplete or not a {spec.name} file; check that it opens in its vendor's software, "
        "or remove it from the input folder."
    )


def open_raw(source: Source) -> tuple[Any, list[str], dict[str, Any]]:
    """Open a (non-BIDS) source with its format's MNE reader, unloaded.

    Parameters
    ----------
    source : Source
        The recording.

    Returns
    -------
    raw : mne.io.BaseRaw
        The raw, ``preload=False``.
    warnings : list of str
        What MNE warned about, plus brainfm's notes (CNT data format fallback...).
    info : dict
        ``reader`` and ``options`` used, for the provenance.
    """
    spec = get_format(source.format)
    reader = read_function(source.format)
    options: dict[str, Any] = dict(spec.options)
    messages: list[str] = []
    comp = source.companions
    if source.format == "kit":
        if "mrk" in comp and "elp" in comp and "hsp" in comp:
            mrk = [comp["mrk"], comp["mrk2"]] if "mrk2" in comp else comp["mrk"]
            options.update(mrk=mrk, elp=comp["elp"], hsp=comp["hsp"])
        else:
            messages.append(
                f"No KIT marker (*mrk*), digitiser (*elp*) and head-shape (*hsp*) files found beside "
                f"{source.path.name}: MEG positions stay in the device frame."
            )
    elif source.format == "bti":
        options.update(config_fname=comp.get("config"), head_shape_fname=comp.get("head_shape"))
    if source.format == "cnt":
        return _open_cnt(source, reader, options, messages)
    said: list[str] = []
    try:
        with capture_messages(said):
            raw = reader(source.path, preload=False, verbose="warning", **options)
    except BrainFMError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated
        raise _translate(source, exc) from exc
    if source.format in ("edf", "bdf"):
        check_edf_records(source.path, raw, said)  # MNE's file-size warning: truncated?
    for text in said:
        _note(messages, text)
    return raw, messages, _reader_facts(spec.reader, options)


def _reader_facts(reader: str, options: dict[str, Any]) -> dict[str, Any]:
    """The reader and its options as JSON-ready provenance."""
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    if isinstance(options.get("mrk"), list):
        options["mrk"] = [str(p) for p in options["mrk"]]
    return {"reader": f"mne.io.{reader}", "options": options}


#: Seconds of signal read to judge amplitudes (Neuroscan CNT sample width).
_AMPLITUDE_EXCERPT_S = 10.0


def amplitude_plausibility(raw: Any) -> tuple[int, int, float | None]:
    """How many channels of a raw have a plausible amplitude for their type and unit.

    The standard deviation of each EEG, iEEG and MEG channel over the first seconds is
    compared with :data:`~brainfm.preprocessing.steps.units.PLAUSIBLE_RANGES` (the range the
    ``units`` step accepts for the median channel).

    Parameters
    ----------
    raw : mne.io.BaseRaw
        An opened raw (unloaded; only an excerpt is read).

    Returns
    -------
    n_plausible : int
        Channels whose amplitude lies within the range of their type.
    n_checked : int
        Channels of a type with a range.
    median : float | None
        Median channel amplitude (SI units), None when no channel was checked.
    """
    from brainfm.preprocessing.steps.units import PLAUSIBLE_RANGES

    types = raw.get_channel_types()
    picks = [i for i, t in enumerate(types) if t in PLAUSIBLE_RANGES]
    if not picks or raw.n_times == 0:
        return 0, len(picks), None
    stop = min(raw.n_times, max(2, int(_AMPLITUDE_EXCERPT_S * raw.info["sfreq"])))
    amplitudes = np.std(raw.get_data(picks=picks, start=0, stop=stop), axis=1)
    inside = [PLAUSIBLE_RANGES[types[i]][0] <= a <= PLAUSIBLE_RANGES[types[i]][1] for i, a in zip(picks, amplitudes, strict=True)]
    return int(np.sum(inside)), len(picks), float(np.median(amplitudes))


@dataclass
class _WidthTry:
    """One Neuroscan CNT sample width tried: the raw it gave and how plausible its amplitudes are."""

    width: str
    raw: Any = None
    said: list[str] = field(default_factory=list)
    error: Exception | None = None
    n_plausible: int = 0
    n_checked: int = 0
    median: float | None = None

    @property
    def plausible(self) -> bool:
        """Most channels within their type's range (nothing to judge counts as plausible)."""
        return self.raw is not None and (2 * self.n_plausible > self.n_checked or self.n_checked == 0)

    def rank(self, typical: float) -> tuple[float, float]:
        """More channels in range first, then a median closer to the typical amplitude (log scale)."""
        closeness = -abs(np.log10((self.median or typical) / typical))
        return self.n_plausible / max(self.n_checked, 1), closeness

    def __str__(self) -> str:
        if self.raw is None:
            return f"{self.width}: {_reason(self.error)}"
        median = f" (median {self.median:.3g} in SI units)" if self.median is not None else ""
        return f"{self.width}: {self.n_plausible} of {self.n_checked} channels with a plausible amplitude{median}"


def _open_cnt(source: Source, reader: Any, options: dict[str, Any], messages: list[str]) -> tuple[Any, list[str], dict[str, Any]]:
    """Open a Neuroscan CNT file; when MNE cannot detect its sample width, try both widths and
    keep the one whose amplitudes are plausible for their units (most channels in range)."""
    from brainfm.preprocessing.steps.units import TYPICAL_AMPLITUDE

    said: list[str] = []
    try:
        with capture_messages(said):
            raw = reader(source.path, preload=False, verbose="warning", data_format="auto", **options)
    except BrainFMError:
        raise
    except Exception as exc:  # noqa: BLE001 - undetectable width: try both below
        auto_error: Exception = exc
    else:
        for text in said:
            _note(messages, text)
        return raw, messages, _reader_facts("read_raw_cnt", dict(options, data_format="auto"))
    tries = []
    for width in ("int32", "int16"):
        attempt = _WidthTry(width)
        try:
            with capture_messages(attempt.said):
                raw = reader(source.path, preload=False, verbose="warning", data_format=width, **options)
                attempt.n_plausible, attempt.n_checked, attempt.median = amplitude_plausibility(raw)
            attempt.raw = raw
        except BrainFMError:
            raise
        except Exception as exc:  # noqa: BLE001 - this width does not fit the file
            attempt.error = exc
        tries.append(attempt)
    tried = "; ".join(str(t) for t in tries)
    good = [t for t in tries if t.plausible]
    if not good:
        if all(t.raw is None for t in tries):
            raise _translate(source, tries[-1].error) from tries[-1].error  # type: ignore[arg-type]
        raise UnsupportedFormatError(
            f"Could not read {source.path} as Neuroscan CNT with mne.io.read_raw_cnt: MNE could not detect "
            f"its sample width ({_reason(auto_error).rstrip('.')}), and neither width gives amplitudes "
            f"plausible for the channels' units ({tried}). The file may be damaged or not a Neuroscan CNT "
            "file; check that it opens in its vendor's software, or remove it from the input folder."
        )
    best = max(good, key=lambda t: t.rank(TYPICAL_AMPLITUDE["eeg"]))
    for text in best.said:
        _note(messages, text)
    messages.append(
        f"Neuroscan CNT data format auto-detection failed ({_reason(auto_error)}); read with "
        f"data_format={best.width!r}, the width whose amplitudes are plausible ({tried})."
    )
    return best.raw, messages, _reader_facts("read_raw_cnt", dict(options, data_format=best.width))


def build_channel_table(
    raw: Any,
    overrides: Sequence[Override] = (),
    *,
    channels_tsv: pd.DataFrame | None = None,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Build the channel table (without geometry) of the storable channels of a raw.

    Types: the file's; then, for channels the file typed EEG, the type their name says
    (:func:`~brainfm.data.channel_names.infer_type_from_name`: ``Resp oro-nasal`` -> resp,
    ``Temp rectal`` -> temperature, ``SpO2`` -> bio, ``Photic`` -> stim, ``LOC`` -> eog...);
    then the overrides. Channels whose final type is not a store type (resp, temperature,
    bio, gsr, stim...) are left out, as when the file types them so; channels typed stim
    from their names are not read for events.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording.
    overrides : sequence of Override
        Overrides that apply to this recording, in order; their ``channel_types`` globs match
        the file's channel names case-insensitively and retype channels the file typed as a
        store type (so they also undo a type inferred from a name).
    channels_tsv : pandas.DataFrame | None
        BIDS ``channels.tsv`` (strings): ``status_description`` gives the reason of a bad
        channel, ``group`` the sEEG shaft / ECoG grid.
    notes : list of str | None
        When given, notes for the recording's warnings are appended: channels typed from
        their names, and EEG channels whose names are outside the 10-05 system.

    Returns
    -------
    channels : pandas.DataFrame
        Names normalised, types final, status and groups set; geometry columns empty.
    """
    names = list(raw.ch_names)
    file_types = raw.get_channel_types()
    types = {}
    by_name: dict[str, list[str]] = {}
    for i in [i for i, t in enumerate(file_types) if t in CHANNEL_TYPES]:
        ch_type = file_types[i]
        inferred = infer_type_from_name(names[i]) if ch_type == "eeg" else None
        if inferred is not None:
            ch_type = inferred
        for override in overrides:
            for pattern, new_type in override.channel_types.items():
                if fnmatch.fnmatchcase(names[i].lower(), pattern.lower()):
                    ch_type = new_type
        if inferred is not None and ch_type == inferred:
            by_name.setdefault(ch_type, []).append(names[i])
        types[names[i]] = ch_type
    orig = [n for n in names if types.get(n) in CHANNEL_TYPES]
    if notes is not None:
        if by_name:
            listed = "; ".join(
                f"{t}{'' if t in CHANNEL_TYPES else ' (not a store type: left out)'}: {', '.join(n)}"
                for t, n in by_name.items()
            )
            notes.append(
                f"Channels the file types EEG were typed from their names ({listed}); a recipe "
                "override (channel_types) sets other types."
            )
        eeg_names = [n for n in orig if types[n] == "eeg"]
        outside = outside_ten_five(eeg_names)
        if outside:
            notes.append(
                f"{len(outside)} of {len(eeg_names)} EEG channels have names outside the 10-05 system "
                f"({outside[:8]}{' ...' if len(outside) > 8 else ''}): no template position and no "
                "shared channel-name entry with other datasets. If they are not EEG electrodes, type "
                "them with a recipe override (channel_types)."
            )
    table = empty_channel_table(orig, [types[n] for n in orig])
    eeg_rows = table.index[table["type"] == "eeg"]
    others = table.loc[table["type"] != "eeg", "orig_name"].tolist()
    table.loc[eeg_rows, "name"] = normalise_eeg_names(table.loc[eeg_rows, "orig_name"].tolist(), taken=others)

    tsv = None
    if channels_tsv is not None and "name" in channels_tsv.columns:
        tsv = channels_tsv.set_index("name")
    bads = set(raw.info["bads"])
    for row in table.index:
        orig_name = table.at[row, "orig_name"]
        if orig_name in bads:
            table.at[row, "status"] = "bad"
            reason = "metadata"
            if tsv is not None and orig_name in tsv.index and "status_description" in tsv.columns:
                description = str(tsv.at[orig_name, "status_description"]).strip()
                if description and description.lower() != "n/a":
                    reason = f"metadata: {description}"
            table.at[row, "status_reason"] = reason
        if tsv is not None and orig_name in tsv.index and "group" in tsv.columns:
            group = str(tsv.at[orig_name, "group"]).strip()
            if group and group.lower() != "n/a":
                table.at[row, "group"] = group
    ieeg = table.index[table["type"].isin(IEEG_TYPES) & (table["group"] == "")]
    table.loc[ieeg, "group"] = shaft_groups(table.loc[ieeg, "name"].tolist())
    return table


def _retype_raw(raw: Any, table: pd.DataFrame) -> dict[str, str]:
    """Give the raw the table's channel types; return the changes made."""
    current = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
    changes = {o: t for o, t in zip(table["orig_name"], table["type"], strict=True) if current[o] != t}
    if changes:
        raw.set_channel_types(changes, on_unit_change="ignore", verbose="error")
    return changes


def _event_read_failed(path: Path, what: str, exc: Exception, on_error: str, messages: list[str]) -> pd.DataFrame:
    """Raise :class:`EventReadError` (``on_error="raise"``) or note that the recording is stored without these events."""
    reason = f"{what} could not be read: {_reason(exc)}"
    if on_error == "raise":
        raise EventReadError(
            f"{path}: {reason}. A recording stored without its events would look complete, so it is "
            "not stored. Repair the file, or set 'on_event_error: store_without_events' in the recipe "
            "to store it without these events (recorded in its provenance)."
        ) from exc
    messages.append(f"Stored without events: {reason} (on_event_error: store_without_events).")
    return empty_events()


def _stim_events(raw: Any, annotation_onsets: np.ndarray, messages: list[str], path: Path, on_error: str) -> pd.DataFrame:
    import mne

    stim = [n for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "stim"]
    if not stim:
        return empty_events()
    main = [n for n in _MAIN_STIM if n in stim]
    channels = main[:1] or stim
    try:
        with capture_messages(messages):
            found = mne.find_events(
                raw, stim_channel=channels, shortest_event=1, verbose="warning",
            )
    except Exception as exc:  # noqa: BLE001 - the reader's or MNE's failure, whatever its type
        return _event_read_failed(path, f"the events on the stim channel(s) {channels}", exc, on_error, messages)
    if len(found) == 0:
        return empty_events()
    codes = np.unique(found[:, 2])
    if len(codes) > MAX_EVENT_CODES:
        messages.append(
            f"The stim channel(s) {channels} change value {len(found)} times with {len(codes)} "
            "distinct values: an analogue signal rather than trigger codes, so no events were "
            "taken from it."
        )
        return empty_events()
    onsets = (found[:, 0] - raw.first_samp) / raw.info["sfreq"]
    tolerance = 1.0 / raw.info["sfreq"]
    keep = [not np.any(np.abs(annotation_onsets - t) <= tolerance) for t in onsets]
    return pd.DataFrame(
        {"onset_s": onsets[keep], "duration_s": np.zeros(int(np.sum(keep))),
         "description": np.array([str(c) for c in found[keep, 2]], dtype=object)}
    )


def read_events(
    raw: Any, source: Source, *, use_stim: bool = True, on_error: str = "raise"
) -> tuple[pd.DataFrame, list[str]]:
    """Collect the events of a recording, onsets in seconds from the raw's first sample.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording.
    source : Source
        Its source (for the ``events`` companion, an MNE ``-eve.fif`` file).
    use_stim : bool
        Whether to look for events on stim channels (those within one sample of an
        annotation are dropped as duplicates).
    on_error : "raise" | "store_without_events"
        When the stim channel or the MNE event file cannot be read: raise
        :class:`~brainfm.errors.EventReadError` (or :class:`~brainfm.errors.SidecarError` for
        the event file), or go on without those events and say so in the warnings.

    Returns
    -------
    events : pandas.DataFrame
        ``onset_s``, ``duration_s``, ``description``, sorted by onset.
    warnings : list of str
        Notes on events not used.

    Raises
    ------
    brainfm.errors.EventReadError
        When the stim-channel events cannot be read and ``on_error`` is ``"raise"``.
    """
    check_option("on_error", on_error, EVENT_ERROR_POLICIES)
    import mne

    messages: list[str] = []
    annotations = raw.annotations
    # Raw annotations count from sample 0 of the acquisition (MNE keeps their orig_time equal
    # to meas_date); the first stored sample is first_samp, i.e. raw.first_time seconds later.
    onsets = np.asarray(annotations.onset, dtype=float) - raw.first_time
    tables = [pd.DataFrame({"onset_s": onsets, "duration_s": np.asarray(annotations.duration, dtype=float),
                            "description": np.asarray(annotations.description, dtype=object)})]
    eve = source.companions.get("events")
    if eve is not None:
        try:
            with capture_messages(messages):
                found = mne.read_events(eve, verbose="error")
        except Exception as exc:
            if on_error == "raise":
                raise SidecarError(
                    f"The MNE event file {eve} (events of {source.path.name}) could not be read: "
                    f"{type(exc).__name__}: {exc}. Fix or remove it, or set 'on_event_error: "
                    "store_without_events' in the recipe to store the recording without its events."
                ) from exc
            messages.append(
                f"Stored without events: the MNE event file {eve.name} could not be read: {_reason(exc)} "
                "(on_event_error: store_without_events)."
            )
            found = np.zeros((0, 3), dtype=int)
        eve_onsets = (found[:, 0] - raw.first_samp) / raw.info["sfreq"]
        inside = (eve_onsets >= 0) & (eve_onsets < raw.n_times / raw.info["sfreq"])
        if not np.all(inside):
            messages.append(f"{int(np.sum(~inside))} events of {eve.name} lie outside the recording and were dropped.")
        tables.append(pd.DataFrame({"onset_s": eve_onsets[inside], "duration_s": np.zeros(int(np.sum(inside))),
                                    "description": np.array([str(c) for c in found[inside, 2]], dtype=object)}))
    elif use_stim:
        tables.append(_stim_events(raw, onsets, messages, source.path, on_error))
    events = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else empty_events()
    events = events.sort_values("onset_s", kind="stable").reset_index(drop=True)
    events["onset_s"] = events["onset_s"].astype(float)
    events["duration_s"] = events["duration_s"].astype(float)
    events["description"] = events["description"].astype(object)
    return events, messages


def _companion_montage(source: Source, names: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    import mne

    path = source.companions.get("montage")
    if path is None or not names:
        return {}, []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if path.suffix.lower() == ".bvct":
                # MNE 1.13's read_dig_captrak uses defusedxml.ElementTree without importing
                # the submodule ("module 'defusedxml' has no attribute 'ElementTree'").
                with contextlib.suppress(ImportError):
                    import defusedxml.ElementTree  # noqa: F401
                montage = mne.channels.read_dig_captrak(path)
            elif path.suffix.lower() == ".hpts":
                montage = mne.channels.read_dig_hpts(path)
            else:
                montage = mne.channels.read_custom_montage(path)
    except Exception as exc:
        raise SidecarError(
            f"The digitisation file {path} (electrode positions of {source.path.name}) could not be "
            f"read: {type(exc).__name__}: {exc}. Fix it, or move it away to use file/template positions."
        ) from exc
    positions, notes = montage_positions(montage, names)
    notes = [str(w.message) for w in caught] + notes
    notes.append(f"Measured EEG positions of {len(positions)} channels from {path.name}.")
    return positions, notes


def _line_freq(raw: Any, overrides: Sequence[Override], messages: list[str]) -> float | None:
    line = raw.info.get("line_freq")
    override = next((o.line_freq for o in reversed(overrides) if o.line_freq is not None), None)
    if line is None:
        return None if override is None else float(override)
    if override is not None and float(override) != float(line):
        messages.append(f"The file says the line frequency is {line:g} Hz; the override's {override:g} Hz is not used.")
    return float(line)


def read_source(source: Source, overrides: Sequence[Override] = (), *, on_event_error: str = "raise") -> RawInput:
    """Read a source recording: validate, open unloaded, build channel table and events.

    Parameters
    ----------
    source : Source
        From :func:`brainfm.preprocessing.discover.discover`.
    overrides : sequence of Override
        Recipe overrides; those whose ``match`` glob matches ``source.relpath`` apply, in order.
    on_event_error : "raise" | "store_without_events"
        When the stim-channel events or the MNE event file cannot be read: fail (the
        default), or read the recording without them, saying so in the warnings.

    Returns
    -------
    raw_input : RawInput
        The unloaded raw (its channel types updated to the table's), the channel table of the
        storable channels, events, line frequency, measurement date, warnings and reader facts.

    Raises
    ------
    brainfm.errors.ReadError
        The files are missing, truncated (:class:`~brainfm.errors.TruncatedFileError`), not
        of the format their name says (:class:`~brainfm.errors.UnsupportedFormatError`), or a
        sidecar is broken (:class:`~brainfm.errors.SidecarError`), or the events cannot be
        read (:class:`~brainfm.errors.EventReadError`, unless ``on_event_error`` says otherwise).
    """
    applicable = [o for o in overrides if o.applies_to(source.relpath)]
    messages = validate_source(source)
    if source.format == "braintreebank":
        from brainfm.preprocessing.braintreebank import read_braintreebank

        reading = read_braintreebank(source)
        reading.warnings[:0] = messages
        validate_opened(source, reading.raw)
        return reading
    channels_tsv = None
    measured: dict[str, np.ndarray] = {}
    measured_frame = "head"
    regions: dict[str, str] = {}
    use_stim = True
    if source.bids_root is not None:
        extra = dict(get_format(source.format).options)
        extra.pop("ch_type", None)
        said: list[str] = []
        with capture_messages(said):  # what mne-bids and MNE warn or print
            reading = read_bids_raw(source, extra_params=extra or None)
        raw = reading.raw
        if source.format in ("edf", "bdf"):
            check_edf_records(source.path, raw, said)  # MNE's file-size warning: truncated?
        for text in said:
            _note(messages, text)
        for text in reading.warnings:
            _note(messages, text)
        info: dict[str, Any] = {"reader": "mne_bids.read_raw_bids", "options": extra}
        channels_tsv = reading.channels_tsv
        use_stim = not reading.has_events_tsv
        if reading.electrodes is not None:
            measured = reading.electrodes.positions
            measured_frame = reading.electrodes.frame
            regions = reading.electrodes.regions
            info.update(electrodes=reading.electrodes.file.name, space=reading.electrodes.space,
                        electrodes_unit=reading.electrodes.unit)
    else:
        raw, opened, info = open_raw(source)
        messages.extend(opened)
    info["format"] = source.format
    validate_opened(source, raw)
    channels = build_channel_table(raw, applicable, channels_tsv=channels_tsv, notes=messages)
    info["retyped"] = _retype_raw(raw, channels)
    if not measured:
        eeg_names = channels.loc[channels["type"] == "eeg", "orig_name"].tolist()
        measured, notes = _companion_montage(source, eeg_names)
        messages.extend(notes)
    report = fill_geometry(channels, raw.info, measured=measured, measured_frame=measured_frame)
    messages.extend(report.warnings)
    info.update(template_montage=report.template_montage, meg_frame=report.meg_frame)
    if report.meg_frame is not None:
        info["compensation_grade"] = raw.compensation_grade
    for row in channels.index:
        region = regions.get(channels.at[row, "orig_name"])
        if region:
            channels.at[row, "region"] = region
    events, notes = read_events(raw, source, use_stim=use_stim, on_error=on_event_error)
    messages.extend(notes)
    meas_date = raw.info["meas_date"]
    logger.debug(
        "Read %s with %s: %d of %d channels storable, %d events, %d warnings",
        source.relpath, info["reader"], len(channels), len(raw.ch_names), len(events), len(messages),
    )
    return RawInput(
        raw=raw,
        channels=channels,
        events=events,
        line_freq=_line_freq(raw, applicable, messages),
        meas_date=None if meas_date is None else meas_date.isoformat(),
        warnings=list(dict.fromkeys(messages)),
        info=info,
    )
