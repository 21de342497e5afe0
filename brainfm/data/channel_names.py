"""EEG channel names: clean the names files use, spell them the 10-05 way, infer types by name.

Files name EEG electrodes in many ways: ``"Fc5."`` (PhysioNet pads names with dots),
``"EEG Fp1"`` (a type prefix), ``"EEG FP1-REF"`` or ``"Fp1-LE"`` (a reference suffix),
``"FP1"`` (upper case). :func:`canonical_eeg_name` maps all of them to the spelling of MNE's
built-in 10-05 montage (``"FC5"``, ``"Fp1"``) or returns ``None`` when the name is not a
10-05 electrode. The old 10-20 names ``T3``/``T4``/``T5``/``T6`` stay as they are spelled in
the file (they are valid 10-05 names) and :data:`EEG_ALIASES` maps them to their modern
names (``T7``/``T8``/``P7``/``P8``, the same scalp sites) for code that builds a shared
channel-name vocabulary.

Files that call every channel EEG (EDF above all) often carry eye, heart, muscle,
respiration, temperature, oximetry and marker channels; :func:`infer_type_from_name`
recognises them by name (``HEOG`` -> ``eog``, ``EKG`` -> ``ecg``, ``Resp oro-nasal`` ->
``resp``, ``Temp rectal`` -> ``temperature``, ``Photic`` -> ``stim``), and
:func:`outside_ten_five` lists the EEG names that are not 10-05 electrodes.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Sequence

__all__ = [
    "EEG_ALIASES",
    "REFERENCE_SITES",
    "canonical_eeg_name",
    "clean_channel_name",
    "infer_type_from_name",
    "normalise_eeg_names",
    "outside_ten_five",
    "ten_five_montage_name",
    "ten_five_names",
]

#: Old 10-20 names -> the 10-10/10-05 names of the same scalp sites.
EEG_ALIASES: dict[str, str] = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}

#: Ear and mastoid sites used as references; ``"A2-A1"`` is a reference-to-reference
#: derivation, not the A2 electrode, so its suffix is never stripped.
REFERENCE_SITES: frozenset[str] = frozenset({"A1", "A2", "M1", "M2"})

# A type prefix in front of the electrode name ("EEG Fp1", "EEG-Fp1", "EEG:Fp1").
_PREFIX = re.compile(r"^(?:EEG)[\s:_\-]+", re.IGNORECASE)
# A reference suffix after the electrode name ("Fp1-REF", "Fp1-LE", "C3-A2", "Cz-Avg").
_SUFFIX = re.compile(
    r"[\s_\-/]+(?:REF|REFERENCE|LE|RE|AR|AVG|AVERAGE|CAR|LM|RM|LINKED|A1|A2|M1|M2|A1A2|M1M2)$",
    re.IGNORECASE,
)
# Channel-type words in names of files that type everything as EEG, first match wins. The
# first word as MNE's EDF reader reads it with ``infer_types=True`` ("Resp oro-nasal" -> resp,
# "Temp rectal" -> temperature, "SaO2" -> bio), then the words of polysomnography montages
# (Sleep-EDF, the AASM manual, YASA's and MNE's sleep examples): "LOC"/"ROC" (outer canthi)
# are EOG, "Chin" is EMG, "Photic" and "Event marker" are stimulus/marker channels, "SpO2",
# "Pleth", "Pulse" are BIO signals, "Thor", "Abdo", "Airflow" are respiration. Short words
# match only whole (a letter or digit after them means another name: "LOC1", "HR2" stay).
_WORD_START = r"(?:^|[^a-z0-9])"
_WORD_END = r"(?![a-z0-9])"
_TYPE_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|[^a-z])[hv]?eog", re.IGNORECASE), "eog"),
    (re.compile(rf"{_WORD_START}(?:loc|roc){_WORD_END}", re.IGNORECASE), "eog"),
    (re.compile(r"(?:^|[^a-z])(?:ecg|ekg)", re.IGNORECASE), "ecg"),
    (re.compile(r"(?:^|[^a-z])emg", re.IGNORECASE), "emg"),
    (re.compile(rf"{_WORD_START}chin\d*{_WORD_END}", re.IGNORECASE), "emg"),
    (re.compile(rf"{_WORD_START}(?:resp(?:iration|iratory)?|thor(?:ax|acic)?|abdo(?:m|men|minal)?|airflow|nasal|cannula|effort){_WORD_END}", re.IGNORECASE),
     "resp"),
    (re.compile(rf"{_WORD_START}temp(?:erature)?{_WORD_END}", re.IGNORECASE), "temperature"),
    (re.compile(rf"{_WORD_START}(?:spo2|sao2|sp02|pleth(?:ysmogram)?|ppg|pulse|hr|heart ?rate){_WORD_END}", re.IGNORECASE),
     "bio"),
    (re.compile(rf"{_WORD_START}(?:gsr|eda){_WORD_END}", re.IGNORECASE), "gsr"),
    (re.compile(rf"{_WORD_START}(?:photic|event|marker|trigger){_WORD_END}", re.IGNORECASE), "stim"),
    (re.compile(rf"{_WORD_START}(?:snore|position|light|lux){_WORD_END}", re.IGNORECASE), "misc"),
)


def ten_five_montage_name() -> str:
    """Return the name of MNE's built-in 10-05 montage.

    MNE 1.13 renamed ``'standard_1005'`` to ``'colin27_1005'`` and deprecates the old name;
    older MNE only knows the old one. The non-deprecated name is used whenever it exists, so
    no ``FutureWarning`` is triggered.

    Returns
    -------
    name : str
        ``'colin27_1005'`` or, on older MNE, ``'standard_1005'``.
    """
    import mne

    builtin = mne.channels.get_builtin_montages()
    return "colin27_1005" if "colin27_1005" in builtin else "standard_1005"


@functools.cache
def ten_five_names() -> tuple[str, ...]:
    """Return the electrode names of the 10-05 system in MNE's spelling (cached).

    Returns
    -------
    names : tuple of str
        343 names with MNE 1.13 (``"Fp1"``, ``"AFz"``, ``"T3"``, ``"M1"`` ...).
    """
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # only reached on old MNE, by design
        montage = mne.channels.make_standard_montage(ten_five_montage_name())
    return tuple(montage.ch_names)


@functools.cache
def _lookup() -> dict[str, str]:
    return {name.lower(): name for name in ten_five_names()}


def _strip(name: str) -> str:
    """Remove padding dots, whitespace and an ``EEG`` prefix."""
    stripped = name.strip().strip(".").strip()
    unprefixed = _PREFIX.sub("", stripped).strip().strip(".").strip()
    if not unprefixed or unprefixed.isdigit():
        return stripped  # "EEG 001" (Neuromag numbering) keeps its prefix
    return unprefixed


def canonical_eeg_name(name: str) -> str | None:
    """Map an EEG channel name from a file to its 10-05 spelling.

    Parameters
    ----------
    name : str
        The name as the file spells it (``"Fc5."``, ``"EEG FP1-REF"``, ``"fp1"``).

    Returns
    -------
    canonical : str | None
        The 10-05 name in MNE's spelling (``"FC5"``, ``"Fp1"``), or ``None`` when the name
        is not a 10-05 electrode (``"A2-A1"``, ``"Status"``, ``"E12"``).

    Examples
    --------
    >>> canonical_eeg_name("Fc5.")
    'FC5'
    >>> canonical_eeg_name("EEG FP1-REF")
    'Fp1'
    >>> canonical_eeg_name("T3")  # an old name stays; see EEG_ALIASES
    'T3'
    """
    lookup = _lookup()
    candidate = _strip(name)
    found = lookup.get(candidate.lower())
    if found is not None:
        return found
    base = _SUFFIX.sub("", candidate).strip().strip(".")
    if base == candidate:
        return None
    found = lookup.get(base.lower())
    if found is None or found in REFERENCE_SITES:
        # "A2-A1" is the ear-to-ear derivation, not the A2 electrode.
        return None
    return found


def clean_channel_name(name: str) -> str:
    """Return the 10-05 spelling of an EEG name, or the name without padding and prefix.

    Parameters
    ----------
    name : str
        The name as the file spells it.

    Returns
    -------
    cleaned : str
        :func:`canonical_eeg_name` when it knows the name, else the name with surrounding
        dots, whitespace and an ``EEG`` prefix removed (``"EEG A2-A1"`` -> ``"A2-A1"``); a
        prefix followed by a bare number stays (``"EEG 001"``).
    """
    return canonical_eeg_name(name) or _strip(name)


def infer_type_from_name(name: str) -> str | None:
    """Guess the type of a channel that a file typed as EEG from its name.

    Parameters
    ----------
    name : str
        The channel name.

    Returns
    -------
    ch_type : str | None
        An MNE channel type: ``"eog"`` (``EOG``, ``HEOG``, ``LOC``, ``ROC``...), ``"ecg"``
        (``ECG``, ``EKG``...), ``"emg"`` (``EMG submental``, ``Chin``...), ``"resp"``
        (``Resp oro-nasal``, ``Thor``, ``Abdo``, ``Airflow``...), ``"temperature"`` (``Temp
        rectal``), ``"bio"`` (``SpO2``, ``SaO2``, ``Pleth``, ``Pulse``, ``HR``), ``"gsr"``
        (``GSR``, ``EDA``), ``"stim"`` (``Photic``, ``Event marker``, ``Trigger``),
        ``"misc"`` (``Snore``, ``Position``, ``Light``), or ``None`` when the name says
        nothing about the type (every 10-05 electrode name is ``None``).

    Examples
    --------
    >>> infer_type_from_name("Resp oro-nasal"), infer_type_from_name("EEG Fpz-Cz")
    ('resp', None)
    """
    if canonical_eeg_name(name) is not None:
        return None
    for pattern, ch_type in _TYPE_WORDS:
        if pattern.search(name):
            return ch_type
    return None


def normalise_eeg_names(names: Sequence[str], taken: Sequence[str] = ()) -> list[str]:
    """Clean a list of EEG names, keeping them unique.

    A name whose cleaned form is already used (by an earlier channel or by ``taken``) keeps
    the name of the file; if that is used too, a ``-2``, ``-3``... suffix is added.

    Parameters
    ----------
    names : sequence of str
        EEG channel names as the file spells them.
    taken : sequence of str
        Names already used by other channels of the recording.

    Returns
    -------
    cleaned : list of str
        One unique name per input name.
    """
    used = set(taken)
    out = []
    for name in names:
        new = clean_channel_name(name)
        if new in used:
            new = name
        base, k = new, 2
        while new in used:
            new = f"{base}-{k}"
            k += 1
        used.add(new)
        out.append(new)
    return out


def outside_ten_five(names: Sequence[str]) -> list[str]:
    """The EEG channel names that are not electrodes of the 10-05 system.

    Such channels get no template position and no shared-vocabulary entry with other
    datasets; bipolar derivations (``"Fpz-Cz"``), numbered nets (``"E12"``) and channels of
    another kind that the file typed EEG (``"Pleth"``) end up here.

    Parameters
    ----------
    names : sequence of str
        EEG channel names as the file spells them.

    Returns
    -------
    outside : list of str
        The names :func:`canonical_eeg_name` does not know, in input order.
    """
    return [name for name in names if canonical_eeg_name(name) is None]
