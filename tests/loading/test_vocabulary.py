"""Channel and region vocabularies: frozen mode, and both saved together (checkpoint state, file)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainfm.errors import ConfigError
from brainfm.loading import Vocabulary, WindowDataModule, build_window_index
from brainfm.loading.vocabulary import (
    UNK,
    load_vocabularies,
    vocabularies_from_dict,
    vocabularies_to_dict,
)


@pytest.fixture
def stores(make_recording, make_store):
    """A 'pretraining' store and a 'fine-tuning' store whose channel and region names only partly overlap."""

    def recording(dataset, subject, names, types, regions):
        made = make_recording(dataset, subject, n_channels=len(names), names=names, types=types)
        made.channels["region"] = regions
        return made

    pretrain = make_store([recording("pre", "01", ["Cz", "LA1", "LA2"], ["eeg", "seeg", "seeg"],
                                     ["", "occipital", "temporal"])])
    finetune = make_store([recording("fine", "01", ["Cz", "LA2", "RB7"], ["eeg", "seeg", "seeg"],
                                     ["", "temporal", "amygdala"]),
                           recording("fine", "02", ["LA1", "RB8"], ["seeg", "seeg"], ["hippocampus", "temporal"])])
    return pretrain, finetune


def _ids(index, field: str) -> dict[str, int]:
    """Channel name -> its ``channel_ids`` or ``region_ids`` value, over all recordings."""
    return {name: value for layout in index.layouts
            for name, value in zip(layout.names, getattr(layout, field).tolist(), strict=True)}


def test_frozen_vocabulary_is_not_extended(stores):
    channel = Vocabulary(["<pad>", "<unk>", "Cz"]).freeze()
    assert channel.frozen and channel.id("Pz") == 1
    with pytest.raises(ValueError, match="frozen"):
        channel.extend(["Pz"])
    assert channel.tokens == ["<pad>", "<unk>", "Cz"]
    assert not Vocabulary(["<pad>", "<unk>"]).frozen


def test_names_a_frozen_vocabulary_lacks_map_to_unk(stores):
    pretrain, finetune = stores
    trained = build_window_index(pretrain, window_s=1.0)
    channel = Vocabulary.from_dict(trained.channel_vocabulary.to_dict()).freeze()
    region = Vocabulary.from_dict(trained.region_vocabulary.to_dict(), kind="region").freeze()
    index = build_window_index(finetune, window_s=1.0, channel_vocabulary=channel, region_vocabulary=region)
    assert index.channel_vocabulary.tokens == trained.channel_vocabulary.tokens  # not grown
    assert index.region_vocabulary.tokens == trained.region_vocabulary.tokens
    channels = _ids(index, "channel_ids")
    assert channels["Cz"] == trained.channel_vocabulary.id("Cz") > 1
    assert channels["LA1"] == trained.channel_vocabulary.id("seeg:LA1") > 1
    assert channels["RB7"] == channels["RB8"] == 1
    region_ids = _ids(index, "region_ids")
    assert region_ids["LA2"] == trained.region_vocabulary.id("temporal") > 1
    assert region_ids["RB7"] == region_ids["LA1"] == 1  # amygdala, hippocampus: not in the trained vocabulary
    assert region_ids["Cz"] == 0  # no region: padding id, as before


def test_data_module_state_round_trip_keeps_channel_and_region_ids(stores):
    pretrain, finetune = stores
    trained = WindowDataModule(pretrain, window_s=1.0, batch_size=4, val_fraction=0.0, split_unit="window")
    _ = trained.n_channels  # index the store (as Lightning does before saving a checkpoint)
    state = json.loads(json.dumps(trained.state_dict()))
    assert {"channel_vocabulary", "region_vocabulary"} <= set(state)
    resumed = WindowDataModule(finetune, window_s=1.0, batch_size=4, val_fraction=0.0, split_unit="window")
    resumed.load_state_dict(state)
    old_regions = trained.index.region_vocabulary
    new_regions = resumed.index.region_vocabulary
    assert new_regions.tokens[: len(old_regions)] == old_regions.tokens  # saved ids kept, new names appended
    assert new_regions.id("temporal") == old_regions.id("temporal")
    assert {"amygdala", "hippocampus"} <= set(new_regions.tokens[len(old_regions):])
    old_channels = trained.index.channel_vocabulary
    assert resumed.index.channel_vocabulary.tokens[: len(old_channels)] == old_channels.tokens
    assert resumed.n_regions == len(new_regions)
    # the same state, frozen: nothing appended, unknown names -> <unk>
    frozen = WindowDataModule(finetune, window_s=1.0, batch_size=4, val_fraction=0.0, split_unit="window",
                              freeze_vocabulary=True)
    frozen.load_state_dict(state)
    assert frozen.vocabulary_size == trained.vocabulary_size and frozen.n_regions == trained.n_regions
    assert _ids(frozen.index, "channel_ids")["RB7"] == 1


def test_vocabulary_file_holds_both_and_a_frozen_one_is_not_rewritten(stores, tmp_path):
    pretrain, finetune = stores
    path = tmp_path / "vocabulary.json"
    trained = WindowDataModule(pretrain, window_s=1.0, batch_size=4, val_fraction=0.0, vocabulary=path)
    _ = trained.n_channels
    channel, region = load_vocabularies(path)
    assert channel == trained.index.channel_vocabulary and region == trained.index.region_vocabulary
    assert Vocabulary.load(path, kind="region") == region
    assert Vocabulary.load(path) == Vocabulary.load(path, kind="channel") == channel  # what the file held before
    with pytest.raises(ValueError, match="No 'subject' vocabulary"):
        Vocabulary.load(path, kind="subject")
    written = path.read_text()
    frozen = WindowDataModule(finetune, window_s=1.0, batch_size=4, val_fraction=0.0, vocabulary=path,
                              freeze_vocabulary=True)
    assert frozen.vocabulary_size == trained.vocabulary_size and frozen.n_regions == trained.n_regions
    assert path.read_text() == written
    assert _ids(frozen.index, "channel_ids")["RB7"] == 1
    # unfrozen, the file grows and keeps the saved ids of both vocabularies
    grown = WindowDataModule(finetune, window_s=1.0, batch_size=4, val_fraction=0.0, vocabulary=path)
    _ = grown.n_channels
    channel2, region2 = load_vocabularies(path)
    assert channel2.tokens[: len(channel)] == channel.tokens and len(channel2) > len(channel)
    assert region2.tokens[: len(region)] == region.tokens and region2.id("temporal") == region.id("temporal")


def test_freezing_needs_a_saved_vocabulary(stores, tmp_path):
    pretrain, _ = stores
    with pytest.raises(ConfigError, match="freeze_vocabulary"):
        _ = WindowDataModule(pretrain, window_s=1.0, val_fraction=0.0, freeze_vocabulary=True).n_channels
    with pytest.raises(ConfigError, match="does not exist"):
        _ = WindowDataModule(pretrain, window_s=1.0, val_fraction=0.0, vocabulary=tmp_path / "missing.json",
                             freeze_vocabulary=True).n_channels


def test_channel_only_files_and_states_are_still_read(stores, tmp_path):
    # Written before region vocabularies were saved: the region vocabulary is then built from the store.
    pretrain, _ = stores
    base = Vocabulary.base_channels()
    path = base.save(tmp_path / "old.json")
    written = path.read_text()
    frozen = WindowDataModule(pretrain, window_s=1.0, val_fraction=0.0, vocabulary=path, freeze_vocabulary=True)
    assert frozen.vocabulary_size == len(base) and "temporal" in frozen.index.region_vocabulary
    assert path.read_text() == written  # a frozen run never rewrites the file
    data = WindowDataModule(pretrain, window_s=1.0, val_fraction=0.0, vocabulary=path)
    assert data.index.channel_vocabulary.tokens[: len(base)] == base.tokens
    assert "temporal" in data.index.region_vocabulary
    assert load_vocabularies(path)[1] == data.index.region_vocabulary  # the file now holds both
    old_state = {"channel_vocabulary": base.to_dict()}
    channel, region = vocabularies_from_dict(old_state)
    assert channel == base and region is None
    restored = WindowDataModule(pretrain, window_s=1.0, val_fraction=0.0)
    restored.load_state_dict(old_state)
    assert restored.index.channel_vocabulary.tokens[: len(base)] == base.tokens


def test_to_dict_round_trip_of_both_vocabularies():
    channel = Vocabulary.base_channels().extend(["seeg:LA1"])
    region = Vocabulary.base_regions().extend(["temporal", "occipital"])
    data = json.loads(json.dumps(vocabularies_to_dict(channel, region)))
    channel2, region2 = vocabularies_from_dict(data)
    assert channel2 == channel and region2 == region
    assert region2.id("temporal") == region.id("temporal") and channel2.id("seeg:LA1") == channel.id("seeg:LA1")
    assert np.array_equal(region2.ids(["occipital", None, "x"]), [2, 0, 1]) and region2.kind == "region"
    assert UNK in region2
