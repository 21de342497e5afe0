"""``DataFacts``: what a model must know about the data it trains on, stated once.

The training engine builds it from the :class:`~brainfm.loading.WindowDataModule` and links
it into the model (LightningCLI ``link_arguments``); checkpoints record it, so a model
loaded later can refuse data that does not fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DataFacts", "first_names"]


def first_names(names: list[str], limit: int = 10) -> str:
    """The first ``limit`` names joined by commas, ``, ...`` when there are more (for error messages).

    Parameters
    ----------
    names : list of str
        Recording ids or other names.
    limit : int
        How many to show.

    Returns
    -------
    text : str
    """
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


@dataclass
class DataFacts:
    """Facts of the training data that fix a model's shapes or its expectations.

    Attributes
    ----------
    sfreq : float
        Sampling rate in Hz (all recordings share it).
    n_times : int
        Samples per window.
    n_channels : int
        Channels of the widest recording.
    vocabulary_size : int
        Size of the channel-name vocabulary (``Batch.channel_ids`` < this).
    n_regions : int
        Size of the region vocabulary.
    sensor_types : list of str
        Channel types present in the data (``"eeg"``, ``"mag"``, ...), sorted.
    recording_types : dict of str to list of str
        Channel types of each recording, by store id (to name recordings in errors).
    positioned : dict of str to int
        Good channels with a known position (``Batch.pos_mask`` True), by store id.
    regions : list of str
        The region vocabulary's tokens in id order (``Batch.region_ids`` indexes it), so a
        model can map regions to coarser groupings (BaRISTA's lobes).
    regioned : dict of str to int
        Good channels with a region (``Batch.region_ids`` > 1), by store id.
    unpositioned : dict of str to int
        Good channels without a known position, by store id (models that need every channel's
        geometry refuse or leave them out).
    sensor_codes : dict of str to list of int
        Sensor-type codes of each recording's good channels (``Batch.sensor_type``: EEG 0, MAG 1,
        GRAD 2, axial gradiometers included), by store id; finer than ``recording_types``, where
        CTF and Elekta magnetometer channels are both ``"mag"``.
    """

    sfreq: float
    n_times: int
    n_channels: int = 0
    vocabulary_size: int = 0
    n_regions: int = 0
    sensor_types: list[str] = field(default_factory=list)
    recording_types: dict[str, list[str]] = field(default_factory=dict)
    positioned: dict[str, int] = field(default_factory=dict)
    regions: list[str] = field(default_factory=list)
    regioned: dict[str, int] = field(default_factory=dict)
    unpositioned: dict[str, int] = field(default_factory=dict)
    sensor_codes: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (as stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DataFacts:
        """Inverse of :meth:`to_dict`.

        Parameters
        ----------
        state : dict
            As returned by :meth:`to_dict`.

        Returns
        -------
        facts : DataFacts
            The facts.
        """
        return cls(**state)

    def recordings_with(self, types: set[str]) -> list[str]:
        """Store ids of the recordings that hold any channel type in ``types``.

        Parameters
        ----------
        types : set of str
            Channel types.

        Returns
        -------
        recordings : list of str
            Sorted store ids.
        """
        return sorted(rid for rid, present in self.recording_types.items() if types & set(present))

    def codes_present(self) -> list[int]:
        """Sensor-type codes present in any recording (sorted; empty when not recorded).

        Returns
        -------
        codes : list of int
        """
        return sorted({int(c) for codes in self.sensor_codes.values() for c in codes})

    def recordings_with_codes(self, codes: set[int]) -> list[str]:
        """Store ids of the recordings whose good channels hold any sensor-type code in ``codes``.

        Parameters
        ----------
        codes : set of int
            Sensor-type codes.

        Returns
        -------
        recordings : list of str
            Sorted store ids.
        """
        return sorted(rid for rid, present in self.sensor_codes.items() if codes & set(present))
