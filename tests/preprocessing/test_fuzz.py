"""Fuzzing ingest: damaged copies of the real recordings through ``brainfm preprocess``.

Every case copies one real recording of ``../shared/data`` into a folder of its own and
damages it: truncated at a random offset, header zeroed or garbled, extension swapped,
NaN/inf samples written, duplicate or non-UTF-8 channel names, absurd sampling rates,
header sample counts larger than the file. The folder then goes through the real entry
point, ``brainfm preprocess IN STORE --json`` (the CLI function, in-process). A case
passes when it ends

* as a stored recording: exit 0, listed in ``processed``, and ``store check`` finds
  nothing wrong; or
* as a listed failure: exit 1, the file in ``failed`` with a readable reason (one that
  names the file and says what is wrong, not an internal ``KeyError: 3``), nothing of it
  visible or half-written in the store, the failure in the store's manifest;

and never as a traceback, a hang, a partial store, broken ``--json`` output or exit 0 with
nothing stored. Some cases also demand one of the two (a truncated file whose header
declares its length must fail, never be stored shorter).

Cases are drawn by a seeded generator (:data:`SEED`), so every run builds the same bytes.
Each case runs in a forked child process with a time limit (:data:`CASE_TIMEOUT_S`) and a
memory limit, at most :data:`JOBS` at a time: a hang is stopped and reported, a memory
blow-up stays inside its case. The outcome table (cases per source and damage, stored,
failed, bad) is printed at the end of the test session; ``python bench/fuzz_ingest.py``
prints it with every case's reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shutil
import signal
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: Seed of the case generator.
SEED = 20261206
#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT_S = 60.0
#: Cases run at the same time (each in its own process).
JOBS = 2
#: Memory a case may allocate on top of what the test process already maps.
CASE_MEMORY_BYTES = 3 * 2**30
#: The dataset name every case is stored under.
DATASET = "fuzz"

#: Real recordings the cases start from: entry file first, then the files that go with it.
SOURCES: dict[str, tuple[str, ...]] = {
    "edf": ("eeg/eegmmidb/S001R03.edf",),
    "bdf": ("eeg/bdf/multiple_annotation_chans.bdf",),
    "brainvision": (
        "eeg/brainvision/bv_dig_test.vhdr", "eeg/brainvision/bv_dig_test.eeg", "eeg/brainvision/bv_dig_test.vmrk",
    ),
    "eeglab": ("eeg/eeglab/test_raw_chanloc.set", "eeg/eeglab/test_raw_chanloc.fdt"),
    "fif": ("eeg/fif/data_resting_EO_200Hz_raw.fif",),
    "cnt": ("eeg/cnt/test_CNT_events_mne_JWoess_clipped.cnt",),
    "kit": ("meg/kit/test.sqd", "meg/kit/test_mrk.sqd", "meg/kit/test_elp.txt", "meg/kit/test_hsp.txt"),
    "ctf": ("meg/ctf/testdata_ctf_short_discontinuous.ds",),
    "persyst": (
        "ieeg/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay",
        "ieeg/persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.dat",
    ),
}
#: EDF data records kept from the EEGMMIDB run (1 s each): long enough for a 0.1 Hz
#: high-pass, short enough to keep the module fast.
EDF_RECORDS = 40


# ---------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One damaged recording.

    Parameters
    ----------
    id : str
        ``<source>-<damage>[-<n>]``.
    source : str
        Key of :data:`SOURCES`.
    damage : str
        Key of :data:`DAMAGES` (the function that damages the copy).
    params : dict
        The damage's parameters (drawn from the seeded generator).
    expect : "stored" | "failed" | None
        The one outcome this case must have; None accepts either.
    owner : str | None
        The branch whose fix this case waits for (the test is a strict xfail until then).
    """

    id: str
    source: str
    damage: str
    params: dict[str, Any] = field(default_factory=dict)
    expect: str | None = None
    owner: str | None = None


def _copy(shared_data: Path, source: str, folder: Path) -> list[Path]:
    """Copy a source's files into ``folder`` (writable copies); return them, entry first."""
    out = []
    for rel in SOURCES[source]:
        src = shared_data / rel
        dst = folder / src.name
        if src.is_dir():
            dst.mkdir()
            for item in sorted(src.iterdir()):
                shutil.copyfile(item, dst / item.name)
        else:
            shutil.copyfile(src, dst)
        out.append(dst)
    if source == "edf":  # a shorter, still valid copy of the real file
        _edf_keep_records(out[0], EDF_RECORDS)
    return out


def _rng(params: dict[str, Any]) -> np.random.Generator:
    return np.random.default_rng(params.get("seed", 0))


def _data_file(files: list[Path]) -> Path:
    """The file holding the samples (the entry itself for single-file formats)."""
    entry = files[0]
    if entry.is_dir():  # CTF: the .meg4 inside the .ds
        return next(p for p in sorted(entry.iterdir()) if p.suffix == ".meg4")
    for suffix in (".eeg", ".fdt", ".dat"):
        found = [p for p in files if p.suffix == suffix]
        if found:
            return found[0]
    return entry


def _header_file(files: list[Path]) -> Path:
    entry = files[0]
    if entry.is_dir():
        return next(p for p in sorted(entry.iterdir()) if p.suffix == ".res4")
    return entry


def _rewrite(path: Path, change: Callable[[bytearray], bytes | bytearray]) -> None:
    path.write_bytes(bytes(change(bytearray(path.read_bytes()))))


# --- byte-level damage, any format ------------------------------------------------------


def truncate(files: list[Path], params: dict[str, Any]) -> None:
    """Cut a file (``which``: the data file or the header/entry file) at ``frac`` of its size."""
    path = _data_file(files) if params.get("which", "data") == "data" else _header_file(files)
    size = path.stat().st_size
    keep = min(size - 1, max(0, int(params["frac"] * size)))
    with path.open("r+b") as fh:
        fh.truncate(keep)


def zero_header(files: list[Path], params: dict[str, Any]) -> None:
    """Overwrite the first ``n`` bytes of the header file with zeros."""
    path = _header_file(files)

    def change(data: bytearray) -> bytearray:
        n = min(len(data), params["n"])
        data[:n] = bytes(n)
        return data

    _rewrite(path, change)


def garble_header(files: list[Path], params: dict[str, Any]) -> None:
    """Replace ``k`` random bytes among the first ``n`` bytes of the header file."""
    path = _header_file(files)
    rng = _rng(params)

    def change(data: bytearray) -> bytearray:
        n = min(len(data), params["n"])
        for position in rng.choice(n, size=min(n, params["k"]), replace=False):
            data[int(position)] = int(rng.integers(0, 256))
        return data

    _rewrite(path, change)


def swap_extension(files: list[Path], params: dict[str, Any]) -> None:
    """Give the entry file the extension of another format (its other files keep theirs)."""
    entry = files[0]
    entry.rename(entry.with_suffix(params["to"]))


# --- EDF / BDF header fields ------------------------------------------------------------


def _edf_signals(data: bytes | bytearray) -> int:
    return int(data[252:256].decode("ascii").strip())


def _edf_set(data: bytearray, start: int, width: int, value: bytes | str) -> None:
    raw = value.encode("ascii") if isinstance(value, str) else value
    data[start : start + width] = raw[:width].ljust(width, b" ")


def _edf_record_bytes(data: bytes | bytearray) -> int:
    ns = _edf_signals(data)
    start = 256 + 216 * ns
    samples = [int(data[start + 8 * i : start + 8 * (i + 1)].decode("ascii")) for i in range(ns)]
    return sum(samples) * (3 if data[:1] == b"\xff" else 2)


def _edf_keep_records(path: Path, n_records: int) -> None:
    def change(data: bytearray) -> bytearray:
        header = 256 * (1 + _edf_signals(data))
        _edf_set(data, 236, 8, str(n_records))
        return data[: header + n_records * _edf_record_bytes(data)]

    _rewrite(path, change)


def edf_field(files: list[Path], params: dict[str, Any]) -> None:
    """Set a main-header field (``field``: n_records, record_s, n_signals) to ``value``."""
    start = {"n_records": 236, "record_s": 244, "n_signals": 252}[params["field"]]
    width = 4 if params["field"] == "n_signals" else 8

    def change(data: bytearray) -> bytearray:
        _edf_set(data, start, width, params["value"])
        return data

    _rewrite(files[0], change)


def edf_signal_field(files: list[Path], params: dict[str, Any]) -> None:
    """Set a per-signal header field of signals ``signals`` to ``value`` (str or bytes)."""
    offsets = {"label": (0, 16), "phys_min": (104, 8), "phys_max": (112, 8), "dig_min": (120, 8),
               "dig_max": (128, 8), "samples": (216, 8)}
    column, width = offsets[params["field"]]

    def change(data: bytearray) -> bytearray:
        ns = _edf_signals(data)
        for i in params["signals"]:
            value = params["value"]
            if isinstance(value, list):
                value = bytes(value)
            _edf_set(data, 256 + column * ns + width * i, width, value)
        return data

    _rewrite(files[0], change)


def edf_no_records(files: list[Path], params: dict[str, Any]) -> None:
    """Keep only the header, declaring 0 data records (a recording with no samples)."""
    _edf_keep_records(files[0], 0)


# --- BrainVision header lines -------------------------------------------------------------


def vhdr_line(files: list[Path], params: dict[str, Any]) -> None:
    """Replace header lines ``key=...`` by ``key=<value>`` (``value`` as a list of bytes for
    non-text values)."""

    def change(data: bytearray) -> bytes:
        for key, value in params["lines"].items():
            raw = bytes(value) if isinstance(value, list) else value.encode("utf-8")
            data = bytearray(re.sub(rb"(?m)^" + re.escape(key.encode()) + rb"=[^\r\n]*", lambda m, k=key, r=raw: k.encode() + b"=" + r, bytes(data), count=1))
        return data

    _rewrite(files[0], change)


def vhdr_float_samples(files: list[Path], params: dict[str, Any]) -> None:
    """Rewrite the INT_16 data as IEEE_FLOAT_32 (same values) and put ``values`` (NaN,
    inf...) at random samples of random channels."""
    rng = _rng(params)
    header = files[0].read_text(encoding="utf-8")
    n_channels = int(re.search(r"NumberOfChannels=(\d+)", header).group(1))
    data = np.fromfile(_data_file(files), dtype="<i2").reshape(-1, n_channels).astype("<f4")
    for value in params["values"]:
        data[rng.integers(0, data.shape[0]), rng.integers(0, n_channels)] = float(value)
    data.tofile(_data_file(files))
    files[0].write_text(header.replace("BinaryFormat=INT_16", "BinaryFormat=IEEE_FLOAT_32"), encoding="utf-8")


# --- EEGLAB .set struct -------------------------------------------------------------------


def eeglab_struct(files: list[Path], params: dict[str, Any]) -> None:
    """Change fields of the EEGLAB ``EEG`` struct (``fields``: name -> value) and channel
    labels (``labels``: index -> str or list of bytes), then save the ``.set`` again."""
    import scipy.io

    mat = scipy.io.loadmat(files[0], appendmat=False)
    eeg = mat["EEG"]
    for name, value in params.get("fields", {}).items():
        eeg[name][0, 0] = np.array([[float(value)]])
    for index, label in params.get("labels", {}).items():
        text = bytes(label).decode("latin-1") if isinstance(label, list) else label
        eeg["chanlocs"][0, 0]["labels"][0, int(index)] = np.array([text])
    scipy.io.savemat(files[0], {"EEG": eeg}, appendmat=False, format="5")


def fdt_samples(files: list[Path], params: dict[str, Any]) -> None:
    """Put ``values`` (NaN, inf...) at random float32 samples of the ``.fdt`` data file."""
    rng = _rng(params)
    data = np.fromfile(_data_file(files), dtype="<f4")
    for value in params["values"]:
        data[rng.integers(0, data.size)] = float(value)
    data.tofile(_data_file(files))


# --- FIF: rewritten through MNE from the real data, or names patched in place -------------


def fif_rewrite(files: list[Path], params: dict[str, Any]) -> None:
    """Save the FIF's real data again with ``values`` at random samples and/or another
    ``sfreq`` in its info."""
    import mne

    rng = _rng(params)
    raw = mne.io.read_raw_fif(files[0], preload=True, verbose="error")
    data = raw.get_data()
    for value in params.get("values", []):
        data[rng.integers(0, data.shape[0]), rng.integers(0, data.shape[1])] = float(value)
    info = raw.info.copy()
    if "sfreq" in params:
        with info._unlock():
            info["sfreq"] = float(params["sfreq"])
            info["lowpass"] = min(info["lowpass"], info["sfreq"] / 2)
    out = mne.io.RawArray(data, info, verbose="error")
    out.save(files[0], overwrite=True, verbose="error")


def fif_names(files: list[Path], params: dict[str, Any]) -> None:
    """Patch the bytes of a channel name in the FIF (``old`` -> ``new``, same length)."""
    old, new = bytes(params["old"]), bytes(params["new"])
    assert len(old) == len(new)

    def change(data: bytearray) -> bytes:
        assert old in data, f"{old!r} not in {files[0].name}"
        return bytes(data).replace(old, new)

    _rewrite(files[0], change)


# --- Persyst .lay lines -------------------------------------------------------------------


def lay_line(files: list[Path], params: dict[str, Any]) -> None:
    """Replace the ``.lay`` line ``key=...`` by the whole line ``value`` (``[FileInfo]`` fields,
    ``[ChannelMap]`` lines ``name=n``)."""

    def change(data: bytearray) -> bytes:
        for key, value in params["lines"].items():
            raw = bytes(value) if isinstance(value, list) else value.encode("latin-1")
            data = bytearray(re.sub(rb"(?m)^" + re.escape(key.encode()) + rb"=[^\r\n]*", lambda m, r=raw: r, bytes(data), count=1))
        return data

    _rewrite(files[0], change)


#: Damage functions by name.
DAMAGES: dict[str, Callable[[list[Path], dict[str, Any]], None]] = {
    fn.__name__: fn
    for fn in (
        truncate, zero_header, garble_header, swap_extension, edf_field, edf_signal_field, edf_no_records, vhdr_line,
        vhdr_float_samples, eeglab_struct, fdt_samples, fif_rewrite, fif_names, lay_line,
    )
}

#: Formats whose header declares how long the recording is: a truncated data file must fail.
_DECLARES_LENGTH = ("edf", "bdf", "eeglab", "cnt", "kit", "ctf")
#: Extensions the entry file is given when swapping.
_SWAPS = {
    "edf": ".cnt", "bdf": ".edf", "brainvision": ".set", "eeglab": ".fif", "fif": ".sqd", "cnt": ".edf",
    "kit": ".cnt", "persyst": ".vhdr",
}


def fuzz_cases(seed: int = SEED, n_random: int = 1, *, targeted: bool = True, prefix: str = "") -> list[Case]:
    """Every fuzz case, drawn from a seeded generator.

    Parameters
    ----------
    seed : int
        Seed of the generator: the same seed gives the same cases and the same bytes.
    n_random : int
        Random draws per source for each random damage (truncation, garbling).
    targeted : bool
        Add the controls, extension swaps and the format-specific damages (header fields,
        names, samples); without them only the random damages are drawn.
    prefix : str
        Put before every case id (to tell a second sweep's cases apart).

    Returns
    -------
    cases : list of Case
        In a fixed order, ids unique.
    """
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    seen: Counter[str] = Counter()

    def add(source: str, damage: str, params: dict[str, Any] | None = None, *, expect: str | None = None,
            owner: str | None = None, tag: str = "") -> None:
        base = f"{prefix}{source}-{tag or damage}"
        seen[base] += 1
        numbered = damage in ("truncate", "garble_header") and tag in ("", "truncate-header")
        case_id = f"{base}-{seen[base] - 1}" if numbered or seen[base] > 1 else base
        cases.append(Case(case_id, source, damage, dict(params or {}), expect, owner))

    if targeted:
        for source in SOURCES:  # controls: the undamaged copy is stored
            add(source, "none", expect="stored", tag="intact")
    for source in SOURCES:
        # truncated at random offsets, inside the samples and inside the header
        for _ in range(n_random):
            expect = "failed" if source in _DECLARES_LENGTH else None
            add(source, "truncate", {"which": "data", "frac": round(float(rng.uniform(0.02, 0.98)), 4)}, expect=expect)
            add(source, "truncate", {"which": "header", "frac": round(float(rng.uniform(0.0, 0.5)), 4)},
                expect="failed" if source != "ctf" else None, tag="truncate-header")
            add(source, "garble_header", {"n": 256, "k": int(rng.integers(1, 24)), "seed": int(rng.integers(2**31))})
    if not targeted:
        return cases
    for source in SOURCES:
        # the .res4 of CTF starts with identification text MNE does not need
        add(source, "zero_header", {"n": 512}, expect="failed" if source != "ctf" else None)
    for source, ext in _SWAPS.items():
        add(source, "swap_extension", {"to": ext}, tag=f"as{ext}")

    # EDF / BDF: header counts larger than the file, absurd record durations, names, gains
    add("edf", "edf_field", {"field": "n_records", "value": str(EDF_RECORDS * 2)}, expect="failed", tag="records-doubled")
    add("edf", "edf_field", {"field": "n_records", "value": "99999999"}, expect="failed", tag="records-huge")
    add("edf", "edf_field", {"field": "n_records", "value": "-1"}, tag="records-unknown")
    add("edf", "edf_no_records", expect="failed", tag="no-records")
    for value in ("0", "0.000001", "99999999", "nan"):
        add("edf", "edf_field", {"field": "record_s", "value": value}, tag=f"record_s={value}")
    add("edf", "edf_field", {"field": "n_signals", "value": "9999"}, expect="failed", tag="signals-huge")
    add("edf", "edf_signal_field", {"field": "samples", "signals": [0], "value": "99999"}, expect="failed",
        tag="samples-huge")
    for source in ("edf", "bdf"):
        add(source, "edf_signal_field", {"field": "label", "signals": [0, 1, 2], "value": "Fp1"}, tag="dup-names")
        add(source, "edf_signal_field", {"field": "phys_max", "signals": [1], "value": "1e308"}, tag="phys-max-huge")
    add("edf", "edf_signal_field", {"field": "label", "signals": [0, 1], "value": [0xFF, 0xFE, 0xE9, 0x80, 0x41]},
        tag="non-utf8-names")
    # EEGMMIDB's digital range is -8092..8092: a zero range (MNE warns), and a reversed one
    add("edf", "edf_signal_field", {"field": "dig_max", "signals": [1], "value": "-8092"}, tag="dig-max=min")
    add("edf", "edf_signal_field", {"field": "dig_max", "signals": [1], "value": "-32768"}, tag="dig-max<min")
    add("edf", "edf_signal_field", {"field": "phys_min", "signals": [1], "value": "nan"}, tag="phys-min-nan")

    # BrainVision: sampling interval, channel counts, names, float samples
    for value in ("0", "1e-9", "1e12"):
        add("brainvision", "vhdr_line", {"lines": {"SamplingInterval": value}}, tag=f"interval={value}")
    for value in ("68", "0"):
        add("brainvision", "vhdr_line", {"lines": {"NumberOfChannels": value}}, tag=f"channels={value}")
    add("brainvision", "vhdr_line", {"lines": {"Ch2": "Fp1,,0.1,µV", "Ch3": "Fp1,,0.1,µV"}}, tag="dup-names")
    add("brainvision", "vhdr_line", {"lines": {"Ch1": [0xFF, 0xFE, 0x2C, 0x2C, 0x30, 0x2E, 0x31]}}, tag="non-utf8-names")
    add("brainvision", "vhdr_line", {"lines": {"Ch5": "Fz,,0,µV"}}, tag="resolution-zero")
    add("brainvision", "vhdr_line", {"lines": {"BinaryFormat": "IEEE_FLOAT_32"}}, tag="wrong-binary-format")
    add("brainvision", "vhdr_float_samples", {"values": ["nan"], "seed": int(rng.integers(2**31))}, expect="failed",
        tag="nan")
    add("brainvision", "vhdr_float_samples", {"values": ["inf", "-inf"], "seed": int(rng.integers(2**31))},
        expect="failed", tag="inf")
    add("brainvision", "truncate", {"which": "data", "frac": 0.0}, expect="failed", tag="empty-data")

    # EEGLAB: rate, length and labels in the .set; NaN/inf in the .fdt
    for value in ("0", "1e9", "nan"):
        add("eeglab", "eeglab_struct", {"fields": {"srate": value}}, tag=f"srate={value}")
    add("eeglab", "eeglab_struct", {"fields": {"pnts": 385 * 4}}, expect="failed", tag="pnts-larger")
    add("eeglab", "eeglab_struct", {"fields": {"nbchan": 200}}, tag="nbchan-larger")
    add("eeglab", "eeglab_struct", {"labels": {"1": "Fp1", "2": "Fp1"}}, tag="dup-names")
    add("eeglab", "eeglab_struct", {"labels": {"0": [0xFF, 0xFE, 0xE9]}}, tag="non-utf8-names")
    add("eeglab", "fdt_samples", {"values": ["nan", "inf"], "seed": int(rng.integers(2**31))}, expect="failed",
        tag="nan-inf")

    # FIF: NaN/inf written by MNE, absurd rates
    add("fif", "fif_rewrite", {"values": ["nan", "inf", "-inf"], "seed": int(rng.integers(2**31))}, expect="failed",
        tag="nan-inf")
    for value in (1e-3, 0.5, 1e7):
        add("fif", "fif_rewrite", {"sfreq": value}, tag=f"sfreq={value:g}")

    # Persyst: rate, channel count and names in the .lay
    for value in ("0", "1e9"):
        add("persyst", "lay_line", {"lines": {"SamplingRate": f"SamplingRate={value}"}}, tag=f"rate={value}")
    add("persyst", "lay_line", {"lines": {"WaveformCount": "WaveformCount=500"}}, tag="waveforms-larger")
    add("persyst", "lay_line", {"lines": {"Fp2-Ref": "Fp1-Ref=2", "F3-Ref": "Fp1-Ref=3"}}, tag="dup-names")
    add("persyst", "lay_line", {"lines": {"Fp1-Ref": [0xFF, 0xFE, 0xE9, 0x3D, 0x31]}}, tag="non-utf8-names")
    return cases


def build_case(case: Case, shared_data: Path, folder: Path) -> None:
    """Write the damaged copy of a case's source into ``folder``.

    Parameters
    ----------
    case : Case
        The case.
    shared_data : pathlib.Path
        The real recordings.
    folder : pathlib.Path
        An empty folder.
    """
    files = _copy(shared_data, case.source, folder)
    if case.damage != "none":
        DAMAGES[case.damage](files, case.params)


# ---------------------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------------------


def _child(case: Case, shared_data: Path, workdir: Path) -> dict[str, Any]:
    """Build and preprocess one case through the CLI; describe what happened (JSON-ready)."""
    from brainfm import open_store
    from brainfm._logging import logger
    from brainfm.cli.main import main
    from brainfm.store.check import check_store

    folder, store = workdir / "in", workdir / "store.zarr"
    folder.mkdir()
    build_case(case, shared_data, folder)
    result: dict[str, Any] = {"files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))}
    out, err = io.StringIO(), io.StringIO()
    for handler in logger.handlers:
        if hasattr(handler, "setStream"):
            handler.setStream(err)
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")  # a warning is not a crash here; what matters is the outcome
            result["rc"] = main(["preprocess", str(folder), str(store), "--dataset", DATASET, "--json"])
    except BaseException:  # noqa: BLE001 - anything escaping the entry point is the finding
        result["traceback"] = traceback.format_exc()
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["stdout"], result["stderr"] = out.getvalue(), err.getvalue()
    if store.exists():
        try:
            opened = open_store(store)
            result["stored"] = list(opened)
            result["incomplete"] = list(opened._incomplete)
            result["manifest"] = [f.get("path") for f in opened.failed]
            result["check"] = check_store(opened)
            result["n_times"] = {key: int(opened[key].n_times) for key in opened}
        except Exception:  # noqa: BLE001
            result["store_error"] = traceback.format_exc()
    return result


def _limit_memory(extra: int) -> None:
    """Let this process map at most ``extra`` more bytes (so a blow-up fails, not the machine)."""
    try:
        with open("/proc/self/status") as fh:
            mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (OSError, StopIteration):  # no /proc (macOS): the time limit still holds
        return
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))


def run_cases(
    cases: Sequence[Case], shared_data: Path, workdir: Path, *, jobs: int = JOBS, timeout_s: float = CASE_TIMEOUT_S
) -> dict[str, dict[str, Any]]:
    """Run cases, each in a forked child process, ``jobs`` at a time.

    Parameters
    ----------
    cases : sequence of Case
        What to run.
    shared_data : pathlib.Path
        The real recordings.
    workdir : pathlib.Path
        An empty folder; each case works in ``workdir/<id>``.
    jobs : int
        Cases run at the same time.
    timeout_s : float
        A case still running after this long is killed and reported as a hang.

    Returns
    -------
    results : dict of str to dict
        Case id -> what :func:`_child` found, or ``{"timeout": seconds}`` / ``{"died": status}``.
    """
    import mne.filter  # noqa: F401
    import scipy.io  # noqa: F401

    import brainfm.cli.preprocess_cmd  # noqa: F401 - imported once here, inherited by every child
    import brainfm.preprocessing.pipeline  # noqa: F401
    import brainfm.preprocessing.readers  # noqa: F401
    import brainfm.store.check  # noqa: F401

    queue = list(cases)
    running: dict[int, tuple[Case, float, Path]] = {}
    results: dict[str, dict[str, Any]] = {}
    while queue or running:
        while queue and len(running) < jobs:
            case = queue.pop(0)
            folder = workdir / case.id
            folder.mkdir(parents=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12: fork with threads
                pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                status = 0
                try:
                    _limit_memory(CASE_MEMORY_BYTES)
                    result = _child(case, shared_data, folder)
                    (folder / "result.json").write_text(json.dumps(result, default=str))
                except BaseException:  # noqa: BLE001
                    (folder / "result.json").write_text(json.dumps({"harness_error": traceback.format_exc()}))
                    status = 1
                finally:
                    os._exit(status)
            running[pid] = (case, time.monotonic(), folder)
        time.sleep(0.01)
        for pid, (case, started, folder) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0 and time.monotonic() - started > timeout_s:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                results[case.id] = {"timeout": timeout_s}
                del running[pid]
            elif done:
                del running[pid]
                path = folder / "result.json"
                results[case.id] = json.loads(path.read_text()) if path.exists() else {"died": status}
    return results


# ---------------------------------------------------------------------------------------
# Judging an outcome
# ---------------------------------------------------------------------------------------

#: A failure message that is an internal exception, not a reason: "KeyError: 3".
_INTERNAL = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Iteration)\b")


def judge(case: Case, result: dict[str, Any]) -> tuple[str, list[str]]:
    """Classify a case's result.

    Parameters
    ----------
    case : Case
        The case.
    result : dict
        From :func:`run_cases`.

    Returns
    -------
    outcome : str
        ``"stored"``, ``"failed"`` or ``"bad"``.
    problems : list of str
        Why the outcome is bad (empty when it is not).
    """
    if "timeout" in result:
        return "bad", [f"hang: no result after {result['timeout']:g} s"]
    if "died" in result or "harness_error" in result:
        return "bad", [f"the case's process died: {result.get('died', result.get('harness_error'))}"]
    if "traceback" in result:
        return "bad", [f"traceback out of the entry point:\n{result['traceback']}"]
    if "store_error" in result:
        return "bad", [f"the store cannot be opened after the run:\n{result['store_error']}"]
    problems: list[str] = []
    try:
        summary = json.loads(result["stdout"])
    except ValueError as exc:
        return "bad", [f"stdout under --json is not one JSON document ({exc}): {result['stdout'][:300]!r}"]
    rc = result.get("rc")
    stored, failed = summary.get("processed", []), summary.get("failed", [])
    if result.get("incomplete"):
        problems.append(f"partial store: incomplete recordings {result['incomplete']}")
    if result.get("check"):
        problems.append(f"store check finds problems: {result['check']}")
    if sorted(result.get("stored", [])) != sorted(stored + summary.get("skipped", [])):
        problems.append(f"the store holds {result.get('stored')} but the summary says {stored}")
    if rc == 0:
        outcome = "stored"
        if not stored:
            problems.append(f"exit 0 with nothing stored (summary: {summary})")
        for key, n_times in result.get("n_times", {}).items():
            if n_times <= 1:
                problems.append(f"{key} was stored with {n_times} samples")
    elif rc == 1:
        outcome = "failed"
        if not failed:
            problems.append("exit 1 but nothing in 'failed'")
        for entry in failed:
            name = Path(entry["path"]).name
            error = entry["error"]
            reason = error[len(name) + 2 :] if error.startswith(f"{name}: ") else error
            if name not in error and entry["path"] not in error:
                problems.append(f"the reason does not name the file {name}: {error!r}")
            if "Traceback" in error or _INTERNAL.match(reason.strip()):
                problems.append(f"not a readable reason but an internal error: {error!r}")
            if any(not c.isprintable() for c in error.replace("\n", "")):
                problems.append(f"the reason holds control characters: {error[:300]!r}")
            if entry["path"] not in result.get("manifest", []):
                problems.append(f"{entry['path']} failed but is not in the store's manifest")
        if stored:
            problems.append(f"exit 1 although the only recording was stored: {stored}")
    else:
        outcome = "bad"
        problems.append(f"exit status {rc} (expected 0 stored or 1 failed); stderr: {result['stderr'][-500:]}")
    if not problems and case.expect is not None and outcome != case.expect:
        detail = failed[0]["error"] if failed else stored
        problems.append(f"expected {case.expect}, got {outcome}: {detail}")
    return ("bad" if problems else outcome), problems


def reason(result: dict[str, Any]) -> str:
    """One line saying what happened to a case (its failure message, or the stored id)."""
    try:
        summary = json.loads(result.get("stdout", ""))
    except ValueError:
        return next((f"{k}" for k in ("timeout", "died", "traceback", "harness_error") if k in result), "no summary")
    if summary.get("failed"):
        return summary["failed"][0]["error"].replace("\n", " ")
    return f"stored {summary.get('processed')}"


def outcome_table(cases: Sequence[Case], results: dict[str, dict[str, Any]]) -> str:
    """Outcomes per damage and per source, and the totals.

    Parameters
    ----------
    cases : sequence of Case
        The cases run.
    results : dict
        From :func:`run_cases`.

    Returns
    -------
    table : str
        Rows per damage, then per source: cases, stored, failed, bad; a bad case whose fix
        another branch owns is counted apart (``bad, waits``).
    """
    kinds = ("stored", "failed", "bad", "bad, waits")
    by: dict[str, dict[str, Counter[str]]] = {"damage": {}, "source": {}}
    total: Counter[str] = Counter()
    for case in cases:
        if case.id not in results:
            continue
        outcome, _ = judge(case, results[case.id])
        if outcome == "bad" and case.owner is not None:
            outcome = "bad, waits"
        for axis, key in (("damage", case.damage), ("source", case.source)):
            by[axis].setdefault(key, Counter())[outcome] += 1
        total[outcome] += 1
    header = f"{'':<20}{'cases':>7}" + "".join(f"{k:>12}" for k in kinds)
    lines = []
    for axis in ("damage", "source"):
        lines.append(header.replace(" " * 20, f"{axis:<20}", 1))
        for key, counter in sorted(by[axis].items()):
            lines.append(f"{key:<20}{sum(counter.values()):>7}" + "".join(f"{counter[k]:>12}" for k in kinds))
    lines.append(
        f"{sum(total.values())} cases: {total['stored']} stored, {total['failed']} failed with a "
        f"reason, {total['bad']} bad, {total['bad, waits']} bad waiting for another branch"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------

def sweep_cases(seed: int = SEED + 1, n_random: int = 4) -> list[Case]:
    """The wider random sweep: only random damages, more draws, another seed, ids ``sweep-...``."""
    return fuzz_cases(seed, n_random, targeted=False, prefix="sweep-")


#: The cases of the default run.
CASES = fuzz_cases(SEED)
#: A wider random sweep (another seed, more draws), marked slow and bench: ``pytest -m bench``.
MORE_CASES = sweep_cases()


def _params(cases: Sequence[Case], *marks: Any) -> list[Any]:
    out = []
    for case in cases:
        case_marks = list(marks)
        if case.owner is not None:
            case_marks.append(pytest.mark.xfail(strict=True, reason=case.owner))
        out.append(pytest.param(case, id=case.id, marks=case_marks))
    return out


class _Summary:
    """Prints the outcome table in pytest's terminal summary."""

    def __init__(self) -> None:
        self.cases: list[Case] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.seconds = 0.0

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.results:
            terminalreporter.write_sep(
                "-", f"fuzz: outcomes of the damaged recordings (seed {SEED}; {self.seconds:.1f} s)"
            )
            terminalreporter.write_line(outcome_table(self.cases, self.results))


@pytest.fixture(scope="module")
def fuzz_results(request, shared_data, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Run every case selected in this session once (in parallel), before the first is judged."""
    if not hasattr(os, "fork"):
        pytest.skip("the fuzz cases run in forked processes (os.fork), which this platform lacks")
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if getattr(item, "callspec", None) is not None and isinstance(item.callspec.params.get("case"), Case)
    ]
    started = time.perf_counter()
    results = run_cases(selected, shared_data, tmp_path_factory.mktemp("fuzz"))
    summary = _Summary()
    summary.cases, summary.results = selected, results
    request.config.pluginmanager.register(summary, "brainfm-fuzz-summary")
    summary.seconds = time.perf_counter() - started
    return results


@pytest.mark.parametrize("case", _params(CASES) + _params(MORE_CASES, pytest.mark.slow, pytest.mark.bench))
def test_damaged_recording_is_stored_or_listed(case, fuzz_results):
    outcome, problems = judge(case, fuzz_results[case.id])
    assert not problems, f"{case.id} ({case.damage} {case.params}): " + "\n".join(problems)
    assert outcome in ("stored", "failed")


def test_cases_are_seeded_and_distinct():
    first, again = fuzz_cases(SEED), fuzz_cases(SEED)
    assert first == again
    assert len({c.id for c in first}) == len(first)
    assert fuzz_cases(SEED + 1) != first
    kinds = Counter(c.damage for c in first)
    assert kinds["truncate"] >= 2 * len(SOURCES) and kinds["garble_header"] >= len(SOURCES)


def test_builds_are_deterministic(shared_data, tmp_path):
    random_cases = [c for c in CASES if c.damage in ("garble_header", "truncate", "vhdr_float_samples")][:6]
    for case in random_cases:
        built = []
        for attempt in range(2):
            folder = tmp_path / f"{case.id}-{attempt}"
            folder.mkdir()
            build_case(case, shared_data, folder)
            built.append({p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()})
        assert built[0] == built[1], case.id
        reference = tmp_path / f"{case.id}-intact"
        reference.mkdir()
        _copy(shared_data, case.source, reference)
        intact = {p.relative_to(reference).as_posix(): p.read_bytes() for p in reference.rglob("*") if p.is_file()}
        assert built[0] != intact, f"{case.id} changed nothing"


def _result(rc: int = 1, failed: Sequence[dict[str, str]] = (), processed: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    summary = {"store": "s.zarr", "processed": list(processed), "skipped": [], "failed": list(failed)}
    manifest = [f["path"] for f in failed]
    return {"rc": rc, "stdout": json.dumps(summary), "stderr": "", "stored": list(processed), "incomplete": [],
            "manifest": manifest, "check": {}, "n_times": dict.fromkeys(processed, 100), **extra}


def test_the_judge_tells_bad_outcomes_apart():
    case = Case("x", "edf", "truncate")
    path = "/d/in/S001R03.edf"
    good = {"path": path, "error": f"{path} is truncated: its header declares 40 records"}
    assert judge(case, _result(failed=[good])) == ("failed", [])
    assert judge(case, _result(rc=0, processed=["fuzz_S001R03"])) == ("stored", [])
    bad = {
        "hang": {"timeout": 60.0},
        "died": {"died": 9},
        "traceback out of the entry point": _result(traceback="Traceback (most recent call last): ..."),
        "not one JSON document": {**_result(failed=[good]), "stdout": "categories.xml not found\n{}"},
        "exit 0 with nothing stored": _result(rc=0),
        "stored with 0 samples": {**_result(rc=0, processed=["r"]), "n_times": {"r": 0}},
        "partial store": _result(failed=[good], incomplete=["fuzz_S001R03"]),
        "store check finds problems": _result(rc=0, processed=["r"], check={"r": ["no signal array"]}),
        "internal error": _result(failed=[{"path": path, "error": "S001R03.edf: KeyError: 3"}]),
        "does not name the file": _result(failed=[{"path": path, "error": "the header is damaged"}]),
        "not in the store's manifest": {**_result(failed=[good]), "manifest": []},
        "exit status 3": _result(rc=3),
        "exit 1 but nothing in 'failed'": _result(),
        "control characters": _result(failed=[{"path": path, "error": f"{path}: the line \x00\x00 is wrong"}]),
    }
    for what, result in bad.items():
        outcome, problems = judge(case, result)
        assert outcome == "bad" and any(what in p for p in problems), (what, problems)
    expecting = Case("y", "edf", "truncate", expect="failed")
    assert judge(expecting, _result(rc=0, processed=["r"]))[1] == ["expected failed, got stored: ['r']"]


@pytest.mark.skipif(not (hasattr(os, "fork") and Path("/proc/self/status").exists()), reason="needs os.fork and /proc")
def test_a_hang_and_a_memory_blow_up_stay_inside_their_case(shared_data, tmp_path, monkeypatch):
    def hang(files: list[Path], params: dict[str, Any]) -> None:
        time.sleep(600)

    def blow_up(files: list[Path], params: dict[str, Any]) -> None:
        np.ones(2 * CASE_MEMORY_BYTES, dtype=np.uint8)

    monkeypatch.setitem(DAMAGES, "hang", hang)
    monkeypatch.setitem(DAMAGES, "blow_up", blow_up)
    cases = [Case("h", "cnt", "hang"), Case("m", "cnt", "blow_up")]
    started = time.perf_counter()
    results = run_cases(cases, shared_data, tmp_path, timeout_s=3.0)
    assert time.perf_counter() - started < 30
    assert results["h"] == {"timeout": 3.0}
    assert "MemoryError" in results["m"]["harness_error"]
    assert [judge(c, results[c.id])[0] for c in cases] == ["bad", "bad"]
