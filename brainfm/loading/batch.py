"""The Batch contract (DESIGN §3): what every tokenizer, model and objective receives.

========================  ===============  ======  =====================================================
field                     shape            dtype   meaning
========================  ===============  ======  =====================================================
``signal``                (B, C, T)        float32 normalised signal; zeros on masked channels
``channel_mask``          (B, C)           bool    True for real, good channels; False for bad or padding
``sensor_pos``            (B, C, 6)        float32 x, y, z (m) in the frame ``frame_ids`` names, then
                                                   orientation: coil normal for magnetometers and
                                                   axial gradiometers, gradient direction for planar
                                                   gradiometers, zeros for EEG/iEEG; all six are zeros
                                                   where ``pos_mask`` is False (never a real origin)
``sensor_type``           (B, C)           int64   EEG 0, MAG 1, GRAD 2 (planar *and* axial: CTF, KIT,
                                                   typed from the coil), sEEG 3, ECoG 4, DBS 5 (...);
                                                   :data:`PAD_SENSOR_TYPE` (-1) on padding
``pos_mask``              (B, C)           bool    True where the channel has a known position in a
                                                   frame of ``FRAME_IDS``; False for unknown positions,
                                                   positions in an unknown space, and padding
``frame_ids``             (B, C)           int64   frame of the position,
                                                   :data:`brainfm.data.channels.FRAME_IDS`: head 0
                                                   (EEG; MEG moved there with the device-to-head
                                                   transform at ingest), device 1 (MEG without a
                                                   transform), mri 2, mni_tal 3 (MNI305/fsaverage/
                                                   MNI152 iEEG), fs_tal 4, ras 5 (ACPC/scanner);
                                                   :data:`PAD_FRAME_ID` (-1) where ``pos_mask`` is False
``channel_ids``           (B, C)           int64   shared channel vocabulary; 0 on padding, 1 for
                                                   a name a frozen vocabulary lacks
``region_ids``            (B, C)           int64   region vocabulary; 0 for no region and padding,
                                                   1 for a region a frozen vocabulary lacks
``subject_ids``           (B,)             int64   subject index (``WindowDataModule.subjects``)
``recording_ids``         (B,)             int64   recording index (``WindowDataModule.recording_names``)
``start``                 (B,)             int64   first sample of the window in its recording
``labels``                (B,) or None     int64   window labels (-1 when a window has none)
``codes``                 see below        int64   cached tokenizer codes of the windows
                                                   (``WindowDataModule(codes=NAME)``), or None:
                                                   (B, C, T) for sample tokenizers, (B, C', K S,
                                                   levels) for BrainTokenizer
                                                   (:mod:`brainfm.loading.codes`)
========================  ===============  ======  =====================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

__all__ = ["PAD_FRAME_ID", "PAD_SENSOR_TYPE", "Batch", "collate_batches"]

#: ``sensor_type`` of padding channels.
PAD_SENSOR_TYPE = -1
#: ``frame_ids`` of padding channels and of channels without a usable position.
PAD_FRAME_ID = -1

_CHANNEL_FIELDS = ("signal", "channel_mask", "sensor_pos", "sensor_type", "pos_mask", "frame_ids", "channel_ids",
                   "region_ids")
_PAD_VALUES = {"signal": 0.0, "channel_mask": False, "sensor_pos": 0.0, "sensor_type": PAD_SENSOR_TYPE,
               "pos_mask": False, "frame_ids": PAD_FRAME_ID, "channel_ids": 0, "region_ids": 0}


@dataclass
class Batch:
    """A batch of windows (see the module docstring for every field)."""

    signal: torch.Tensor
    channel_mask: torch.Tensor
    sensor_pos: torch.Tensor
    sensor_type: torch.Tensor
    pos_mask: torch.Tensor
    frame_ids: torch.Tensor
    channel_ids: torch.Tensor
    region_ids: torch.Tensor
    subject_ids: torch.Tensor
    recording_ids: torch.Tensor
    start: torch.Tensor
    labels: torch.Tensor | None = None
    codes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.signal.shape[0])

    def __repr__(self) -> str:
        batch, n_channels, n_times = self.signal.shape
        labels = "" if self.labels is None else ", labels"
        return f"<Batch | {batch} windows x {n_channels} channels x {n_times} samples{labels} on {self.signal.device}>"

    def _map(self, function: Any) -> Batch:
        return replace(self, **{f.name: None if getattr(self, f.name) is None else function(getattr(self, f.name))
                                for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move every tensor to ``device``.

        Parameters
        ----------
        device : torch.device | str
            The target device.
        non_blocking : bool
            Passed to :meth:`torch.Tensor.to` (useful with pinned memory).

        Returns
        -------
        batch : Batch
            A new batch.
        """
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Return a copy in pinned (page-locked) memory; the DataLoader calls it with ``pin_memory=True``."""
        return self._map(lambda t: t.pin_memory())

    def to_dict(self) -> dict[str, torch.Tensor | None]:
        """The fields as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def collate_batches(batches: Sequence[Batch] | Batch) -> Batch:
    """Concatenate batches along the batch axis, padding channels to the widest (with a mask).

    Use it as ``collate_fn`` of a plain DataLoader over a
    :class:`~brainfm.loading.dataset.WindowDataset` (whose ``__getitems__`` already returns
    one batch, passed through) or over any dataset of single-window batches.

    Parameters
    ----------
    batches : sequence of Batch | Batch
        Batches with the same number of samples ``T``; a single batch is returned as it is.

    Returns
    -------
    batch : Batch
        One batch; ``labels`` is kept only when every input has labels.
    """
    if isinstance(batches, Batch):
        return batches
    if not batches:
        raise ValueError("collate_batches needs at least one batch.")
    n_times = {b.signal.shape[2] for b in batches}
    if len(n_times) > 1:
        raise ValueError(f"Cannot collate windows of different lengths {sorted(n_times)} samples.")
    n_channels = max(b.signal.shape[1] for b in batches)
    out: dict[str, Any] = {}
    for name in _CHANNEL_FIELDS:
        parts = []
        for b in batches:
            value = getattr(b, name)
            missing = n_channels - value.shape[1]
            if missing:
                pad_shape = (value.shape[0], missing, *value.shape[2:])
                value = torch.cat([value, torch.full(pad_shape, _PAD_VALUES[name], dtype=value.dtype)], dim=1)
            parts.append(value)
        out[name] = torch.cat(parts)
    for name in ("subject_ids", "recording_ids", "start"):
        out[name] = torch.cat([getattr(b, name) for b in batches])
    labels = [b.labels for b in batches]
    out["labels"] = None if any(l is None for l in labels) else torch.cat(labels)  # noqa: E741
    codes = [b.codes for b in batches]
    if not any(c is None for c in codes):
        if codes[0].dim() == 3:  # sample codes (B, C, T): padded channels hold 0
            codes = [torch.nn.functional.pad(c, (0, 0, 0, n_channels - c.shape[1])) for c in codes]
        out["codes"] = torch.cat(codes)
    return Batch(**out)
