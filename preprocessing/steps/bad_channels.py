"""Bad-channel detection: flat channels, noisy channels, and bads declared by the file.

Detection runs per sensor type, so EEG and MEG in one recording (or ECoG and sEEG) are each
compared with their own kind. Channels are never dropped: a bad channel keeps its row with
``status = "bad"`` and a ``status_reason``; the loader masks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveFloat, PositiveInt

from brainfm._check import check_option, check_range, ensure_int, validate_type
from brainfm.data.channels import CHANNEL_TYPES, DATA_CHANNEL_TYPES
from brainfm.preprocessing.steps._blocks import row_blocks, row_stats
from brainfm.preprocessing.steps.base import RecordingStep, SignalState
from brainfm.store.format import STAT_NAMES

__all__ = ["FLAT_FLOOR", "BadChannels", "psd_distance", "robust_z"]

#: Standard deviation (SI units) below which a channel is flat whatever its neighbours do.
#: Far below any real noise floor (EEG/iEEG amplifiers ~0.1-1 uV, SQUIDs ~3 fT, ~3 fT/cm)
#: but above the rounding noise of a constant float32 channel after filtering.
FLAT_FLOOR: dict[str, float] = {
    "eeg": 1e-10, "seeg": 1e-10, "ecog": 1e-10, "dbs": 1e-10,
    "eog": 1e-10, "ecg": 1e-10, "emg": 1e-10,
    "mag": 1e-16, "grad": 1e-15,
}
_MAD_TO_STD = 1.4826
#: Robust amplitude = 0.7413 * IQR: the standard deviation for Gaussian samples.
_IQR_TO_STD = 0.7413
_STD, _IQR = STAT_NAMES.index("std"), STAT_NAMES.index("iqr")


def robust_z(values: np.ndarray) -> np.ndarray:
    """Robust z-scores: distance to the median in units of the scaled median absolute deviation.

    Parameters
    ----------
    values : numpy.ndarray, shape (n,)
        Values to score.

    Returns
    -------
    z : numpy.ndarray, shape (n,)
        ``(values - median) / (1.4826 * MAD)``; when the MAD is zero, the mean absolute
        deviation (times 1.2533) stands in, and when that is zero too every score is 0.
    """
    values = np.asarray(values, dtype=np.float64)
    deviation = values - np.median(values)
    scale = _MAD_TO_STD * np.median(np.abs(deviation))
    if scale <= 0:
        scale = 1.2533 * np.mean(np.abs(deviation))
    if scale <= 0:
        return np.zeros_like(values)
    return deviation / scale


def psd_distance(data: np.ndarray, rows: np.ndarray, sfreq: float, n_fft: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Mean Euclidean distance of each channel's log10-PSD to the log10-PSDs of the others.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_channels, n_times)
        The signal.
    rows : numpy.ndarray of int
        Channels compared with each other (at least 2).
    sfreq : float
        Sampling rate in Hz.
    n_fft : int
        Welch segment length in samples (non-overlapping Hamming windows, as MNE's
        ``compute_psd`` defaults).
    fmin, fmax : float | None
        Frequency band in Hz (``fmax=None``: up to Nyquist).

    Returns
    -------
    distance : numpy.ndarray, shape (len(rows),)
        Mean distance to the other channels.
    """
    from scipy.signal import welch
    from scipy.spatial.distance import cdist

    nperseg = min(n_fft, data.shape[1])
    spectra = []
    for group in row_blocks(np.asarray(rows, dtype=int), data.shape[1]):
        block = np.asarray(data[group], dtype=np.float64)  # (len(group), n_times)
        freqs, psd = welch(block, fs=sfreq, window="hamming", nperseg=nperseg, noverlap=0, detrend=False, axis=-1)
        spectra.append(psd)
        del block, psd  # free them before the next block is read
    psd = np.concatenate(spectra)  # (n_rows, n_freqs)
    keep = freqs >= fmin
    if fmax is not None:
        keep &= freqs <= fmax
    if not keep.any():
        raise ValueError(
            f"bad_channels: no PSD frequency in [{fmin}, {fmax}] Hz at {sfreq:g} Hz with psd_n_fft={n_fft}."
        )
    log_psd = np.log10(np.maximum(psd[:, keep], np.finfo(np.float64).tiny))
    distances = cdist(log_psd, log_psd)  # (n_rows, n_rows), zero diagonal
    return distances.sum(axis=1) / (len(rows) - 1)


@dataclass
class BadChannels(RecordingStep):
    """Mark flat and noisy channels bad, per sensor type, with the reason in the channel table.

    For each sensor type (EEG, MAG and GRAD of one recording are judged separately):

    1. **Metadata.** Channels the reader marked bad (``status_reason`` starting with ``"metadata"``, from
       ``channels.tsv``, ``info["bads"]``, ...) stay bad unless ``keep_metadata`` is false,
       in which case they are reset to good and judged like the others.
    2. **Flat.** A good channel is flat when its standard deviation over the recording is
       below the type's absolute floor (:data:`FLAT_FLOOR`, or ``flat_floor``) or below
       ``flat_ratio`` times the median standard deviation of the type's good channels.
       Reason ``"flat"``.
    3. **Noisy**, among the remaining good channels of the type (at least ``min_channels``):

       * ``"robust_z"``: each channel's robust amplitude (0.7413 * IQR of its samples, which
         brief artefacts such as blinks barely move), then the robust z-score of its log10
         (median and 1.4826 * MAD over the type's channels). A channel is noisy when its
         z-score exceeds ``z_threshold`` *and* its amplitude is at least ``noisy_ratio``
         times the type's median: on clean real EEG the spread of amplitudes is so narrow
         that frontal channels reach z = 5-6 while being only 1.5x the median (measured on
         EEGMMIDB), and the ratio keeps them; the z-score keeps heterogeneous types
         (sEEG contacts in grey and white matter) from being judged by the ratio alone.
         Reason ``"noisy: robust_z=7.3"``. Low amplitudes are the flat test's job, so the
         test is one-sided.
       * ``"psd_distance"`` (BrainOmni, ``factory/utils.py``): the log10 Welch PSD of each
         channel, the mean Euclidean distance to the other channels' log-PSDs, and outliers
         below Q1 - k * IQR or above Q3 + k * IQR of those distances, k =
         ``psd_iqr_factor`` (10). Reason ``"noisy: psd_distance"``. Unlike the reference,
         channels already bad or flat are left out of the comparison (a flat channel's
         log-PSD is -inf).
       * ``"none"``: no noisy-channel test.

    Parameters
    ----------
    types : list of str | None
        Sensor types to examine (``None``: every brain-signal type present; BrainOmni uses
        ``["eeg"]``). Types absent from the recording are skipped.
    flat_ratio : float
        A channel whose std is below this fraction of the type's median std is flat.
    flat_floor : dict of str to float | None
        Per-type absolute std floors in SI units, overriding :data:`FLAT_FLOOR` entry by entry.
    noisy : "robust_z" | "psd_distance" | "none"
        Noisy-channel test.
    z_threshold : float
        Robust z-score above which a channel is noisy (``noisy="robust_z"``).
    noisy_ratio : float
        A noisy channel's robust amplitude is also at least this many times the type's
        median (``noisy="robust_z"``; 1 disables the condition).
    psd_iqr_factor : float
        k of the Q1 - k * IQR / Q3 + k * IQR rule (``noisy="psd_distance"``).
    psd_n_fft : int
        Welch segment length in samples (``noisy="psd_distance"``).
    psd_fmin : float
        Lowest frequency compared, in Hz.
    psd_fmax : float | None
        Highest frequency compared, in Hz (``None``: Nyquist).
    min_channels : int
        Fewest good channels of a type for which the noisy test runs (a median and an IQR
        over fewer channels say little).
    keep_metadata : bool
        Keep bads declared by the file or BIDS ``channels.tsv`` (reasons ``"metadata..."``).
    """

    name: ClassVar[str] = "bad_channels"
    types: list[str] | None = None
    flat_ratio: ClosedUnitInterval = 0.01
    flat_floor: dict[str, NonNegativeFloat] | None = None
    noisy: Literal["robust_z", "psd_distance", "none"] = "robust_z"
    z_threshold: PositiveFloat = 5.0
    noisy_ratio: float = 3.0
    psd_iqr_factor: NonNegativeFloat = 10.0
    psd_n_fft: PositiveInt = 2048
    psd_fmin: NonNegativeFloat = 1.0
    psd_fmax: PositiveFloat | None = None
    min_channels: PositiveInt = 4
    keep_metadata: bool = True

    def __post_init__(self) -> None:
        if self.types is not None:
            validate_type("types", self.types, (list, tuple))
            for kind in self.types:
                check_option("types", kind, CHANNEL_TYPES)
            self.types = list(self.types)
        check_range("flat_ratio", self.flat_ratio, 0.0, 1.0)
        if self.flat_floor is not None:
            validate_type("flat_floor", self.flat_floor, dict)
            for kind, floor in self.flat_floor.items():
                check_option("flat_floor", kind, CHANNEL_TYPES)
                check_range(f"flat_floor[{kind!r}]", floor, 0.0)
        check_option("noisy", self.noisy, ("robust_z", "psd_distance", "none"))
        check_range("z_threshold", self.z_threshold, 0.0, inclusive=False)
        check_range("noisy_ratio", self.noisy_ratio, 1.0)
        check_range("psd_iqr_factor", self.psd_iqr_factor, 0.0)
        self.psd_n_fft = ensure_int("psd_n_fft", self.psd_n_fft)
        check_range("psd_n_fft", self.psd_n_fft, 8)
        check_range("psd_fmin", self.psd_fmin, 0.0)
        if self.psd_fmax is not None and self.psd_fmax <= self.psd_fmin:
            raise ValueError(
                f"Invalid value for the 'psd_fmax' parameter: it must be above psd_fmin ({self.psd_fmin}), "
                f"but got {self.psd_fmax!r} instead."
            )
        self.min_channels = ensure_int("min_channels", self.min_channels)
        check_range("min_channels", self.min_channels, 3)
        validate_type("keep_metadata", self.keep_metadata, bool)

    def apply(self, state: SignalState) -> dict[str, Any]:
        channels = state.channels
        names = channels["name"].to_numpy()
        status_col = channels.columns.get_loc("status")
        reason_col = channels.columns.get_loc("status_reason")
        present = list(dict.fromkeys(channels["type"]))
        types = [t for t in (self.types if self.types is not None else DATA_CHANNEL_TYPES) if t in present]
        floors = {**FLAT_FLOOR, **(self.flat_floor or {})}
        effect: dict[str, Any] = {"types": types, "marked_bad": {}, "metadata_bad": [], "metadata_reset": [], "per_type": {}}

        for kind in types:
            rows = state.rows([kind])
            status = channels["status"].to_numpy()[rows]
            reasons = channels["status_reason"].to_numpy()[rows]
            metadata = (status == "bad") & np.char.startswith(reasons.astype(str), "metadata")
            if not self.keep_metadata and metadata.any():
                channels.iloc[rows[metadata], status_col] = "good"
                channels.iloc[rows[metadata], reason_col] = ""
                effect["metadata_reset"] += names[rows[metadata]].tolist()
                status = channels["status"].to_numpy()[rows]
            elif metadata.any():
                effect["metadata_bad"] += names[rows[metadata]].tolist()
            good = status == "good"
            info: dict[str, Any] = {"n_channels": int(len(rows)), "n_good_before": int(good.sum())}
            effect["per_type"][kind] = info
            if not good.any():
                info["skipped"] = "no good channel"
                continue

            stats = row_stats(state.data, rows)  # one read: std for the flat test, IQR for the noisy one
            std = stats[:, _STD]
            median_std = float(np.median(std[good]))
            floor = floors.get(kind, 0.0)
            flat_limit = max(floor, self.flat_ratio * median_std)
            flat = good & (std < flat_limit)
            info.update(median_std=median_std, flat_limit=flat_limit, flat={n: float(s) for n, s in zip(names[rows[flat]], std[flat], strict=True)})
            marks: dict[int, str] = {int(r): "flat" for r in rows[flat]}

            candidates = good & ~flat
            n_candidates = int(candidates.sum())
            if self.noisy != "none" and n_candidates < self.min_channels:
                info["noisy_skipped"] = f"{n_candidates} good channels, fewer than min_channels={self.min_channels}"
            elif self.noisy == "robust_z":
                cand_rows = rows[candidates]
                amplitude = np.maximum(_IQR_TO_STD * stats[candidates, _IQR], np.finfo(np.float64).tiny)
                z = robust_z(np.log10(amplitude))
                ratio = amplitude / np.median(amplitude)
                noisy = (z > self.z_threshold) & (ratio >= self.noisy_ratio)
                info.update(z_threshold=self.z_threshold, noisy_ratio=self.noisy_ratio, max_robust_z=round(float(z.max()), 2))
                info["noisy"] = {n: round(float(v), 2) for n, v in zip(names[cand_rows[noisy]], z[noisy], strict=True)}
                for row, value in zip(cand_rows[noisy], z[noisy], strict=True):
                    marks[int(row)] = f"noisy: robust_z={value:.1f}"
            elif self.noisy == "psd_distance":
                cand_rows = rows[candidates]
                distance = psd_distance(state.data, cand_rows, state.sfreq, self.psd_n_fft, self.psd_fmin, self.psd_fmax)
                q1, q3 = np.percentile(distance, [25, 75])
                low, high = q1 - self.psd_iqr_factor * (q3 - q1), q3 + self.psd_iqr_factor * (q3 - q1)
                noisy = (distance < low) | (distance > high)
                info.update(psd_distance_limits=[float(low), float(high)], psd_distance_median=float(np.median(distance)))
                info["noisy"] = {n: round(float(v), 3) for n, v in zip(names[cand_rows[noisy]], distance[noisy], strict=True)}
                for row in cand_rows[noisy]:
                    marks[int(row)] = "noisy: psd_distance"

            if marks:
                marked = np.fromiter(marks, dtype=int)
                channels.iloc[marked, status_col] = "bad"
                channels.iloc[marked, reason_col] = [marks[r] for r in marked]
                effect["marked_bad"].update({str(names[r]): reason for r, reason in marks.items()})
        return effect
