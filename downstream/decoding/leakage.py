"""The leakage guard: refuse to test on subjects or recordings a checkpoint was pretrained on.

A checkpoint's ``training_data`` lists the recordings and the subjects (``"<dataset>/<subject>"``)
of its pretraining split (and, when recorded, the SHA-256 of their source files). A test
trial leaks when its subject key, its recording id or its source hash is among them: the
model has then seen that person's (or that very) data, and its scores would be too good.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from brainfm.downstream.decoding.trials import Trials
from brainfm.errors import ConfigError

__all__ = ["LeakageError", "check_leakage"]


class LeakageError(ConfigError):
    """Test data was in a checkpoint's pretraining data."""


def check_leakage(training_data: Mapping[str, Any], trials: Trials, test_rows: np.ndarray | None = None, *,
                  checkpoint: str = "the checkpoint", allow: bool = False) -> list[str]:
    """Refuse (or list, with ``allow``) test subjects and recordings that were in pretraining.

    Parameters
    ----------
    training_data : mapping
        The checkpoint's ``training_data`` (``subjects``, ``recordings``, optional ``sources``:
        recording id -> SHA-256).
    trials : Trials
        The task's trials.
    test_rows : numpy.ndarray of int64 | None
        Rows that will be tested; None: every trial (every fold tests each trial once).
    checkpoint : str
        Its path (for the message).
    allow : bool
        Return the leaked names instead of raising (``--allow-leakage``).

    Returns
    -------
    leaked : list of str
        Leaked subjects and recordings (empty when clean).
    """
    rows = np.arange(len(trials)) if test_rows is None else np.asarray(test_rows)
    subjects = set(trials.subject[rows].tolist())
    recordings = set(trials.recording[rows].tolist())
    seen_subjects = set(training_data.get("subjects") or [])
    seen_recordings = set(training_data.get("recordings") or [])
    seen_hashes = {h for h in (training_data.get("sources") or {}).values() if h}
    leaked_subjects = sorted(subjects & seen_subjects)
    leaked_recordings = sorted(r for r in recordings if r in seen_recordings
                               or (trials.sources.get(r) and trials.sources.get(r) in seen_hashes))
    leaked = [f"subject {s}" for s in leaked_subjects] + [f"recording {r}" for r in leaked_recordings]
    if leaked and not allow:
        shown = ", ".join(leaked[:12]) + (f" and {len(leaked) - 12} more" if len(leaked) > 12 else "")
        raise LeakageError(
            f"{checkpoint} was trained on data this evaluation tests: {shown}. Scores on them would be "
            "inflated (the model has seen these people or recordings). Evaluate on a store of other subjects "
            "(--store), pretrain without them, or pass --allow-leakage to run anyway (the results then say so)."
        )
    return leaked
