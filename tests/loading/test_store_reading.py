"""What the loader needs from brainfm.store.reader: attributes parsed once per store and per recording.

(Here rather than in tests/store because this change set owns tests/loading only.)
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import zarr

from brainfm import open_store
from brainfm.loading import build_window_index


def _count_reads(monkeypatch) -> Counter:
    reads: Counter = Counter()
    original = zarr.storage.LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        reads[key] += 1
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    return reads


def test_each_attributes_file_is_read_once(make_recording, make_store, monkeypatch):
    path = make_store([make_recording("a", f"{s:02d}") for s in range(3)] + [make_recording("b", "01")])
    reads = _count_reads(monkeypatch)
    store = open_store(path)
    ids = list(store)
    for _ in range(3):
        for rid in ids:
            recording = store[rid]
            _ = (recording.sfreq, recording.n_channels, recording.n_times, recording.channels, recording.identity,
                 recording.dataset, recording.subject, recording.run, recording.source, recording.attrs["id"])
        _ = (store.format_version, store.attrs["brainfm_format_version"], len(store))
    attributes = {"zarr.json", "recordings/zarr.json", *(f"recordings/{rid}/zarr.json" for rid in ids)}
    assert dict(reads) == dict.fromkeys(attributes, 1)  # once each, and no Zarr v2 metadata probed


def test_window_index_reads_each_recording_attributes_once(make_recording, make_store, monkeypatch):
    # build_window_index asks the store for a recording several times (dataset filter, then the layout).
    path = make_store([make_recording("a", f"{s:02d}") for s in range(2)] + [make_recording("b", "01")])
    reads = _count_reads(monkeypatch)
    build_window_index(path, window_s=1.0, datasets=["a", "b"])
    recording_attributes = {k: n for k, n in reads.items() if k.count("/") == 2 and k.endswith("/zarr.json")}
    assert len(recording_attributes) == 3 and set(recording_attributes.values()) == {1}


def test_channel_table_is_parsed_once_and_handed_out_as_copies(make_recording, make_store, monkeypatch):
    store = open_store(make_store([make_recording(names=["Cz", "Pz", "Oz", "Fz"])]))
    recording = store[next(iter(store))]
    parses = Counter()
    to_numeric = pd.to_numeric

    def counting_to_numeric(*args, **kwargs):
        parses["to_numeric"] += 1
        return to_numeric(*args, **kwargs)

    monkeypatch.setattr(pd, "to_numeric", counting_to_numeric)
    first = recording.channels
    after_first = parses["to_numeric"]
    first.loc[0, "name"] = "changed"
    second, third = recording.channels, store[recording.id].channels
    assert parses["to_numeric"] == after_first  # not parsed again
    assert second["name"].tolist() == third["name"].tolist() == ["Cz", "Pz", "Oz", "Fz"]  # a caller's edit stays its own
    assert second is not third
