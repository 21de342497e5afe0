"""Normalisation at load time, from the statistics stored with each recording.

``normalization`` names one of:

``"zscore"``      per channel ``(x - mean) / std`` with the recording's stored mean and std;
``"robust"``      per channel ``(x - median) / IQR`` with the stored median and interquartile range;
``"sensortype"``  BrainOmni's per-segment scaling (spec ``brainomni.md`` §3.2 step 9): in each
                  window and for each sensor type, subtract the mean over that type's good
                  channels at every time point, then divide by the standard deviation over
                  all of the type's good channels and samples plus ``eps`` (1e-5 for EEG and
                  iEEG, 1e-13 for MEG, as the reference code);
``"window"``      BaRISTA's per-segment z-score (spec ``barista.md`` §4 step 5): in each window,
                  each good channel minus its mean over the window's samples, divided by
                  its standard deviation over them (population; a flat channel window
                  becomes zeros);
``"none"``        the stored values (SI units).

``"sensortype"`` and ``"window"`` (:data:`WINDOWED_NORMALIZATIONS`) scale each loader window as a
whole, so a sample's value depends on the window it is read in; the others do not.

Bad channels are zeroed in every mode and masked in the batch; a channel whose stored
spread is zero or not finite is treated as bad under ``zscore`` and ``robust``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from brainfm._check import check_option
from brainfm.data.channels import SENSOR_TYPE_IDS

__all__ = [
    "DEFAULT_SENSORTYPE_EPS",
    "NORMALIZATIONS",
    "WINDOWED_NORMALIZATIONS",
    "channel_affine",
    "sensortype_normalize_",
    "window_normalize_",
]

NORMALIZATIONS: tuple[str, ...] = ("zscore", "robust", "sensortype", "window", "none")

#: Normalisations computed over each window (its length and start change the values).
WINDOWED_NORMALIZATIONS: tuple[str, ...] = ("sensortype", "window")

#: ``eps`` of the sensor-type scaling, by channel type (BrainOmni reference values).
DEFAULT_SENSORTYPE_EPS: dict[str, float] = {
    "eeg": 1e-5, "mag": 1e-13, "grad": 1e-13, "seeg": 1e-5, "ecog": 1e-5, "dbs": 1e-5,
    "eog": 1e-5, "ecg": 1e-5, "emg": 1e-5, "misc": 1e-5,
}


def channel_affine(stats: np.ndarray, good: np.ndarray, normalization: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel ``scale`` and ``shift`` so that ``x * scale + shift`` normalises a channel.

    Parameters
    ----------
    stats : numpy.ndarray, shape (C, 4)
        Stored ``mean, std, median, iqr`` per channel.
    good : numpy.ndarray of bool, shape (C,)
        Channel status (False = bad).
    normalization : str
        One of :data:`NORMALIZATIONS`.

    Returns
    -------
    scale, shift : numpy.ndarray of float32, shape (C,)
        The affine map; bad channels get 0 and 0 (zeroed).
    good : numpy.ndarray of bool, shape (C,)
        The channels left unmasked (bad ones and, for ``zscore``/``robust``, channels with a
        zero or non-finite spread are False).
    """
    check_option("normalization", normalization, NORMALIZATIONS)
    good = np.asarray(good, dtype=bool).copy()
    if normalization in ("zscore", "robust"):
        center, spread = (stats[:, 0], stats[:, 1]) if normalization == "zscore" else (stats[:, 2], stats[:, 3])
        usable = np.isfinite(center) & np.isfinite(spread) & (spread > 0)
        good &= usable
        scale = np.where(good, 1.0 / np.where(usable, spread, 1.0), 0.0)
        shift = np.where(good, -center * scale, 0.0)
    else:  # "sensortype", "window", "none": bad channels zeroed only
        scale = good.astype(np.float64)
        shift = np.zeros(len(good))
    return scale.astype(np.float32), shift.astype(np.float32), good


def sensortype_normalize_(
    signal: torch.Tensor,
    sensor_type: np.ndarray,
    good: np.ndarray,
    eps: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """BrainOmni's per-window, per-sensor-type scaling, in place.

    Parameters
    ----------
    signal : torch.Tensor, shape (n_windows, C, T)
        Windows of one recording (bad channels already zero).
    sensor_type : numpy.ndarray of int, shape (C,)
        Sensor-type id of each channel (:data:`~brainfm.data.channels.SENSOR_TYPE_IDS`).
    good : numpy.ndarray of bool, shape (C,)
        Channels to include; the others are left untouched.
    eps : mapping of str to float | None
        Added to the standard deviation, by channel type; None uses
        :data:`DEFAULT_SENSORTYPE_EPS`.

    Returns
    -------
    signal : torch.Tensor
        The same tensor.
    """
    eps = DEFAULT_SENSORTYPE_EPS if eps is None else {**DEFAULT_SENSORTYPE_EPS, **eps}
    names = {v: k for k, v in SENSOR_TYPE_IDS.items()}
    for type_id in np.unique(sensor_type[good]):
        rows = np.flatnonzero(good & (sensor_type == type_id))
        if len(rows) == rows[-1] - rows[0] + 1:  # contiguous: work on a view
            block = signal[:, rows[0] : rows[-1] + 1]
            view = True
        else:
            block = signal[:, torch.from_numpy(rows)]
            view = False
        block.sub_(block.mean(dim=1, keepdim=True))  # (n, Ct, T) minus (n, 1, T)
        std = block.std(dim=(1, 2), keepdim=True, unbiased=False)  # (n, 1, 1)
        block.div_(std + eps[names[int(type_id)]])
        if not view:
            signal[:, torch.from_numpy(rows)] = block
    return signal


def window_normalize_(signal: torch.Tensor, good: np.ndarray) -> torch.Tensor:
    """Per-window, per-channel z-score over time, in place (BaRISTA's segment normalisation).

    Parameters
    ----------
    signal : torch.Tensor, shape (n_windows, C, T)
        Windows of one recording (bad channels already zero).
    good : numpy.ndarray of bool, shape (C,)
        Channels to normalise; the others are left untouched (zero). A channel that is flat
        in a window (zero deviation) becomes zeros there.

    Returns
    -------
    signal : torch.Tensor
        The same tensor.
    """
    rows = np.flatnonzero(good)
    if not len(rows):
        return signal
    contiguous = len(rows) == rows[-1] - rows[0] + 1
    block = signal[:, rows[0] : rows[-1] + 1] if contiguous else signal[:, torch.from_numpy(rows)]
    mean = block.mean(dim=2, keepdim=True, dtype=torch.float64)  # (n, C, 1)
    centred = block.double() - mean
    std = centred.square().mean(dim=2, keepdim=True).sqrt()
    normalised = (centred / torch.where(std > 0, std, 1.0)).to(signal.dtype)
    if contiguous:
        block.copy_(normalised)
    else:
        signal[:, torch.from_numpy(rows)] = normalised
    return signal
