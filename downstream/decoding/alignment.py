"""Per-subject alignment: unsupervised, from each subject's own trials, never from labels.

Cross-subject decoding fails when every subject's data sit somewhere else in signal or feature
space. Two label-free corrections, a model option of ``brainfm evaluate`` (``align:`` of a
task's ``models:`` entry):

- ``signal``: Euclidean alignment (He & Wu, IEEE TBME 2020). For each subject, the reference
  ``R`` is the mean of its trials' spatial covariances (each trial's channels centred on their
  window mean); every trial ``X`` of that subject becomes ``R^(-1/2) X``, so each subject's mean
  covariance is the identity. ``R^(-1/2)`` is symmetric (the whitening closest to the identity),
  so channels keep their place and name; this is what brings different subjects' covariances
  together before a tangent space.
- ``features``: the frozen features of each subject standardised by that subject's own mean and
  standard deviation over its trials (per token and feature for probes, per feature of the
  token-averaged vector for zero-shot models).

Each subject's statistics come from all of its trials, test trials included when the subject is
tested (transductive, as Euclidean alignment is used cross-subject), but from no label and from
no other subject. Under cross-subject protocols no statistic crosses a fold; under within-session
and cross-run protocols a subject's statistics include the (unlabelled) trials of its test fold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from brainfm.downstream.decoding.trials import Trials
from brainfm.loading.batch import Batch

__all__ = ["ALIGNMENTS", "align_signal", "euclidean_alignment", "standardize_per_group"]

#: Per-subject alignment options of a model (``ModelConfig.align``).
ALIGNMENTS = ("none", "signal", "features")


def _groups(groups: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct group value, in order of first appearance."""
    groups = np.asarray(groups)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def euclidean_alignment(signal: torch.Tensor, groups: np.ndarray, channel_mask: torch.Tensor | None = None,
                        eps: float = 1e-6) -> torch.Tensor:
    """Euclidean alignment of trials, one reference per group (subject).

    Parameters
    ----------
    signal : torch.Tensor, shape (n_trials, C, T)
        Trials.
    groups : numpy.ndarray, shape (n_trials,)
        Group (subject) of each trial; a group's reference uses its own trials only.
    channel_mask : torch.Tensor of bool, shape (n_trials, C) | None
        Real channels; only the channels real in every trial of a group are aligned, the others
        are left as they are. None: every channel.
    eps : float
        Eigenvalues of the reference below ``eps`` times its largest are raised to that floor.

    Returns
    -------
    aligned : torch.Tensor, shape (n_trials, C, T)
        ``R_g^(-1/2) X`` for every trial ``X`` of group ``g``, in the dtype of ``signal``.
    """
    if signal.ndim != 3:
        raise ValueError(f"signal must be (n_trials, C, T), got shape {tuple(signal.shape)}.")
    if len(groups) != signal.shape[0]:
        raise ValueError(f"groups has {len(groups)} entries for {signal.shape[0]} trials.")
    out = signal.clone()
    x64 = signal.to(torch.float64)
    for rows in _groups(groups):
        index = torch.as_tensor(rows)
        channels = (torch.arange(signal.shape[1]) if channel_mask is None
                    else torch.nonzero(channel_mask[index].all(dim=0)).flatten())
        if len(channels) < 2:
            continue
        x = x64[index][:, channels]  # (n, c, T)
        centred = x - x.mean(dim=-1, keepdim=True)
        reference = (centred @ centred.transpose(1, 2)).mean(dim=0) / x.shape[-1]  # (c, c)
        values, vectors = torch.linalg.eigh(reference)
        values = values.clamp_min(eps * float(values.max()))
        inv_sqrt = (vectors * values.rsqrt()) @ vectors.T
        aligned = (inv_sqrt @ x).to(signal.dtype)
        rows_t = index[:, None]
        out[rows_t, channels[None, :]] = aligned
    return out


def standardize_per_group(features: torch.Tensor, groups: np.ndarray, eps: float = 1e-6) -> torch.Tensor:
    """Standardise features within each group (subject): its own mean and sd over its trials.

    Parameters
    ----------
    features : torch.Tensor, shape (n_trials, ...)
        Features of every trial; statistics are per element of the trailing shape.
    groups : numpy.ndarray, shape (n_trials,)
        Group (subject) of each trial.
    eps : float
        Added to the standard deviation.

    Returns
    -------
    standardized : torch.Tensor
        Same shape and dtype; within each group every element has mean 0 and sd about 1.
    """
    if len(groups) != features.shape[0]:
        raise ValueError(f"groups has {len(groups)} entries for {features.shape[0]} trials.")
    out = torch.empty_like(features)
    for rows in _groups(groups):
        index = torch.as_tensor(rows)
        x = features[index].to(torch.float64)
        mean = x.mean(dim=0, keepdim=True)
        sd = x.std(dim=0, unbiased=False, keepdim=True)
        out[index] = ((x - mean) / (sd + eps)).to(features.dtype)
    return out


def align_signal(trials: Trials, mode: Literal["none", "signal", "features"]) -> Trials:
    """The trials with their signal aligned per subject (``mode == "signal"``), else the same trials.

    Parameters
    ----------
    trials : Trials
        A task's trials; only ``batch.signal``, ``batch.channel_mask`` and ``subject`` are read.
    mode : "none" | "signal" | "features"
        The model's ``align`` option; only ``signal`` changes the signal.

    Returns
    -------
    trials : Trials
        A copy sharing everything but the signal (``signal``), or ``trials`` itself.
    """
    if mode != "signal":
        return trials
    signal = euclidean_alignment(trials.batch.signal, trials.subject, trials.batch.channel_mask)
    batch = Batch(**{**vars(trials.batch), "signal": signal})
    return Trials(batch, trials.y, trials.subject, trials.session, trials.run, trials.recording, trials.classes,
                  trials.sfreq, trials.ch_names, trials.sources, trials.index)
