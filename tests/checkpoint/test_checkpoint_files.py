"""Checkpoint files: atomic writes, weights_only reads, refusal of foreign, older and altered files, strict loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import brainfm.checkpoint.io as checkpoint_io
from brainfm.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    BrainfmCheckpointIO,
    atomic_save,
    load_state_strict,
    load_tokenizer,
    module_spec,
    read_checkpoint,
)
from brainfm.errors import CheckpointError
from brainfm.tokenizers import MuLawTokenizer, QuantileTokenizer


def _checkpoint(tokenizer=None) -> dict:
    tokenizer = tokenizer if tokenizer is not None else QuantileTokenizer(n_bins=8)
    tokenizer.update(torch.randn(1000))
    state = {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}
    return {"state_dict": state, "epoch": 1, "global_step": 7,
            "brainfm": {"format_version": CHECKPOINT_FORMAT_VERSION, "brainfm_version": "test",
                        "tokenizer": module_spec(tokenizer), "backbone": None, "objective": None,
                        "data": None, "training_data": {"recordings": ["r1"], "subjects": ["d/01"]}}}


def _write(path: Path, checkpoint: dict) -> Path:
    BrainfmCheckpointIO().save_checkpoint(checkpoint, path)
    return path


def test_round_trip_rebuilds_the_trained_tokenizer(tmp_path):
    checkpoint = _checkpoint()
    path = _write(tmp_path / "a.ckpt", checkpoint)
    tokenizer, info = load_tokenizer(path)
    assert isinstance(tokenizer, QuantileTokenizer) and not tokenizer.training
    torch.testing.assert_close(tokenizer.counts, checkpoint["state_dict"]["tokenizer.counts"])
    assert info.global_step == 7 and info.training_data["subjects"] == ["d/01"]


def test_a_killed_write_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = _write(tmp_path / "last.ckpt", _checkpoint())
    before = path.read_bytes()

    def dies_halfway(obj, file):
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(checkpoint_io.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        BrainfmCheckpointIO().save_checkpoint(_checkpoint(), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left
    load_tokenizer(path)


def test_an_altered_weight_is_refused(tmp_path):
    checkpoint = _checkpoint()
    path = _write(tmp_path / "a.ckpt", checkpoint)
    tampered = torch.load(path, weights_only=True)
    tampered["state_dict"]["tokenizer.counts"][3] += 1
    torch.save(tampered, path)
    with pytest.raises(CheckpointError, match="altered after it was written"):
        read_checkpoint(path)


def test_an_older_format_is_refused_naming_both_versions(tmp_path):
    checkpoint = _checkpoint()
    checkpoint["brainfm"]["format_version"] = 0
    path = _write(tmp_path / "old.ckpt", checkpoint)
    with pytest.raises(CheckpointError, match=rf"older checkpoint format \(version 0.*reads version {CHECKPOINT_FORMAT_VERSION}"):
        read_checkpoint(path)


def test_a_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not a brainfm checkpoint"):
        read_checkpoint(path)


class _Pickled:
    pass


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"brainfm": _Pickled()}, path)
    with pytest.raises(CheckpointError, match="never unpickles") as info:
        read_checkpoint(path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)


def test_another_tokenizer_class_is_refused(tmp_path):
    path = _write(tmp_path / "a.ckpt", _checkpoint())
    with pytest.raises(CheckpointError, match="holds a 'brainfm.tokenizers.quantile.QuantileTokenizer' tokenizer"):
        load_tokenizer(path, expected=MuLawTokenizer)


def test_classes_outside_brainfm_are_never_built(tmp_path):
    checkpoint = _checkpoint()
    checkpoint["brainfm"]["tokenizer"]["class_path"] = "os.system"
    path = _write(tmp_path / "a.ckpt", checkpoint)
    with pytest.raises(CheckpointError, match="may only name brainfm classes"):
        load_tokenizer(path)


def test_strict_loading_lists_wrong_names_and_shapes(tmp_path):
    checkpoint = _checkpoint(QuantileTokenizer(n_bins=8, resolution=64))
    checkpoint["brainfm"]["tokenizer"]["init_args"]["resolution"] = 128  # the model built now differs
    checkpoint["state_dict"]["tokenizer.extra"] = torch.zeros(1)
    path = _write(tmp_path / "a.ckpt", checkpoint)
    with pytest.raises(CheckpointError, match=r"not in the model: \['extra'\]; shapes differ: \['counts: checkpoint \(64,\), model \(128,\)'\]"):
        load_tokenizer(path)
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: \['counts'\]"):
        load_state_strict(QuantileTokenizer(), {}, "x.ckpt")


def test_atomic_save_creates_the_folder(tmp_path):
    atomic_save({"a": torch.ones(1)}, tmp_path / "deep" / "x.pt")
    assert torch.load(tmp_path / "deep" / "x.pt", weights_only=True)["a"].item() == 1
