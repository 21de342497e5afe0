"""``brainfm retrieve fit|test`` end to end on a tiny store (issue 12 item 5)."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from brainfm.checkpoint import read_checkpoint
from brainfm.cli.main import main
from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.downstream.retrieval.run_config import load_run_config
from brainfm.errors import ConfigError
from brainfm.store import StoreWriter

N_CONCEPTS, N_REPEATS, SFREQ = 20, 3, 100.0


@pytest.fixture
def run_folder(tmp_path):
    # Each concept evokes its own fixed pattern (8 channels x 32 samples) in noise.
    rng = np.random.default_rng(0)
    targets = rng.standard_normal((N_CONCEPTS, 16)).astype(np.float32)
    mixing = rng.standard_normal((16, 8 * 32)) / 4
    onsets = np.arange(N_CONCEPTS * N_REPEATS) * 0.5 + 0.5
    concepts = np.tile(np.arange(N_CONCEPTS), N_REPEATS)
    signal = 0.5 * rng.standard_normal((8, int((onsets[-1] + 1) * SFREQ))).astype(np.float32)
    for onset, concept in zip(onsets, concepts, strict=True):
        start = int(round(onset * SFREQ))
        signal[:, start : start + 32] += (targets[concept] @ mixing).reshape(8, 32)
    events = pd.DataFrame({"onset_s": onsets, "duration_s": 0.0, "description": [f"stim/c{c}" for c in concepts]})
    channels = empty_channel_table([f"E{i}" for i in range(8)], ["eeg"] * 8)
    source = {"path": "/data/syn/01.edf", "relpath": "", "size": 0, "sha256": ""}
    StoreWriter(tmp_path / "store").write(Recording(signal * 1e-5, SFREQ, Identity("syn", subject="01"), channels, events, source=source))
    np.savez(tmp_path / "concepts.npz", **{f"c{i}": targets[i] for i in range(N_CONCEPTS)})
    config = {
        "data": {"store": "store", "embeddings": "concepts.npz", "pattern": r"stim/(\w+)", "tmin": 0.0, "tmax": 0.32, "test_fraction": 0.25},
        "model": {"medformer": {"d_model": 32, "n_heads": 2, "d_ff": 32, "temporal_kernel": 5, "pool_kernel": 5, "pool_stride": 2, "n_filters": 8, "augmentations": []}},
        "train": {"n_steps": 30, "batch_size": 16, "lr": 1e-3},
        "eval": {"k": [2, 4, 5, 10], "n_trials": 2000},
        "output": "run",
    }
    (tmp_path / "retrieval.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_fit_then_test_writes_checkpoint_and_results(run_folder, capsys):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["retrieve", "fit", "--config", str(run_folder / "retrieval.yaml")]) == 0
        checkpoint = run_folder / "run" / "model.pt"
        meta = read_checkpoint(checkpoint)["brainfm"]  # a verified brainfm checkpoint
        held_out = meta["retrieval"]["held_out"]
        assert held_out["unit"] == "concepts" and len(held_out["ids"]) == 5  # 25% of 20 concepts held out
        assert meta["training_data"]["subjects"] == ["syn/01"]
        assert (run_folder / "run" / "config.yaml").is_file()
        capsys.readouterr()
        assert main(["retrieve", "test", "--config", str(run_folder / "retrieval.yaml"), "--json"]) == 0
    finally:
        torch.set_num_threads(previous)
    results = json.loads(capsys.readouterr().out)
    # 5 held-out concepts, repetitions averaged: k = 10 is more than the gallery and is skipped
    assert results["n_items"] == 5 and results["n_subjects"] == 1 and set(results["k"]) == {"2", "4", "5"}
    assert results["k"]["2"]["top5"] is None and results["k"]["5"]["top5"] == 1.0
    assert json.loads((run_folder / "run" / "results.json").read_text()) == results
    assert "| 4 |" in (run_folder / "run" / "results.md").read_text()
    assert (run_folder / "run" / "examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("train", "n_step", 3, "'train' has no key 'n_step'. Did you mean 'n_steps'?"),
    ("data", "tmn", 0.0, "'data' has no key 'tmn'. Did you mean 'tmin'?"),
    ("loss", "clip_mode", "standrd", "Invalid value for 'loss.clip_mode'.*but got 'standrd' instead. Did you mean 'standard'?"),
    ("train", "lr", "fast", "Invalid value for 'train.lr'. Allowed values are a number, but got 'fast'"),
    ("data", "test_fraction", 1.5, "data.test_fraction must be between 0 and 1"),
])
def test_unusable_config_exits_2_and_names_the_key(run_folder, capsys, section, key, value, message):
    config = yaml.safe_load((run_folder / "retrieval.yaml").read_text())
    config.setdefault(section, {})[key] = value
    (run_folder / "bad.yaml").write_text(yaml.safe_dump(config))
    assert main(["retrieve", "fit", "--config", str(run_folder / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert str(run_folder / "bad.yaml") in err and re.search(message, err), err


def test_a_medformer_key_is_checked_against_the_adapter_config(run_folder):
    config = yaml.safe_load((run_folder / "retrieval.yaml").read_text())
    config["model"]["medformer"]["n_chans"] = 8
    (run_folder / "bad.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="no key 'n_chans'. It comes from the data"):
        load_run_config(run_folder / "bad.yaml")
    config["model"] = {"medformer": {"d_model": 32}, "backbone": {"checkpoint": "x.ckpt"}}
    (run_folder / "bad.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="remove one of them"):
        load_run_config(run_folder / "bad.yaml")


def test_an_altered_checkpoint_is_refused(run_folder, capsys):
    config = yaml.safe_load((run_folder / "retrieval.yaml").read_text())
    config["train"]["n_steps"] = 2
    (run_folder / "retrieval.yaml").write_text(yaml.safe_dump(config))
    assert main(["retrieve", "fit", "--config", str(run_folder / "retrieval.yaml")]) == 0
    checkpoint = run_folder / "run" / "model.pt"
    state = torch.load(checkpoint, weights_only=True)
    name = next(k for k in state["state_dict"] if k.startswith("model."))
    state["state_dict"][name] = state["state_dict"][name] + 1
    torch.save(state, checkpoint)
    capsys.readouterr()
    assert main(["retrieve", "test", "--config", str(run_folder / "retrieval.yaml")]) == 1
    assert "was altered after it was written" in capsys.readouterr().err


def test_shipped_config_loads_with_paths_relative_to_it(tmp_path):
    text = (files("brainfm.configs") / "downstream" / "retrieval_things_eeg2.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text)
    config = load_run_config(tmp_path / "c.yaml")
    assert config.data.root == str(tmp_path / "things_eeg2" / "Preprocessed_data_250Hz")
    assert config.data.layout == "things_eeg2" and config.loss.clip_mode == "standard" and config.stage == "adapter"
    (tmp_path / "d.yaml").write_text("data: {embeddings: e.npz}\n")
    with pytest.raises(ConfigError, match="data.store is required"):
        load_run_config(tmp_path / "d.yaml")


def test_example_figure_is_a_png_for_any_gallery_size(tmp_path):
    from brainfm.downstream.retrieval.retrieval_figure import plot_example_retrievals

    features = np.random.default_rng(0).standard_normal((3, 8))
    path = plot_example_retrievals(features, features, ["a", "b", "c"], tmp_path / "x.png", n_examples=6, top=5)
    assert path.read_bytes()[:4] == b"\x89PNG"
