"""A brainfm pretrained model as the retrieval adapter (issue 12 item 2), on real SSVEP recordings.

One session of the SSVEP dataset (8 occipital EEG channels at 256 Hz, 32 stimulus events:
rest, 13, 21, 17 Hz) goes through ``brainfm preprocess --recipe brainomni``; a tiny
BrainTokenizer is pretrained for three steps with ``brainfm pretrain fit``; retrieval then uses
it through the checkpoint API, frozen or fine-tuned.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from brainfm.checkpoint import load_tokenizer, read_checkpoint
from brainfm.cli.main import main
from brainfm.downstream.retrieval import BackboneAdapter, load_paired_trials
from brainfm.errors import ConfigError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]

CLASSES = {"1": "rest", "2": "13 Hz", "3": "21 Hz", "4": "17 Hz"}


@pytest.fixture(scope="module")
def pretrained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(store, BrainTokenizer checkpoint, concept embeddings) from subject 1 of the SSVEP dataset."""
    source = shared_data / "eeg" / "ssvep-exo" / "subject01"
    if not source.is_dir():
        pytest.skip(f"{source} is absent (the shared SSVEP recordings)")
    root = tmp_path_factory.mktemp("backbone")
    shutil.copytree(source, root / "ssvep" / "subject01")
    store = root / "store"
    pattern = r"subject(?P<subject>\d+)/record-\[[\d.]+-(?P<session>\d+)\.(?P<run>\d+)"
    assert main(["preprocess", str(root / "ssvep"), str(store), "--recipe", "brainomni", "--pattern", pattern, "-q"]) == 0
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["pretrain", "fit", "--recipe", "braintokenizer", "--size", "tiny", "--data.store", str(store),
                     "--trainer.max_steps", "3", "--trainer.default_root_dir", str(root / "pretrain"),
                     "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                     "--trainer.accelerator", "cpu", "--data.split_unit", "recording", "--data.val_fraction", "0.5",
                     "--trainer.limit_val_batches", "1"]) == 0
    finally:
        torch.set_num_threads(previous)
    (checkpoint,) = (root / "pretrain").rglob("*.ckpt")
    # made-up concept embeddings: a fixed function of the stimulus class
    np.savez(root / "concepts.npz", **{c: np.random.default_rng(int(c)).standard_normal(16) for c in CLASSES})
    return store, checkpoint, root / "concepts.npz"


def test_backbone_features_are_pooled_into_the_concept_space(pretrained):
    store, checkpoint, embeddings = pretrained
    trials = load_paired_trials(store, embeddings, tmin=0.0, tmax=2.0, normalization="sensortype")
    assert trials.batch is not None and trials.sfreq == 256.0 and len(trials) == 64  # 2 sessions x 32 events
    adapter = BackboneAdapter(checkpoint, out_dim=16, pooling="attention", sfreq=trials.sfreq)
    batch = trials.batch
    first = _rows(batch, slice(0, 4))
    out = adapter(first)
    assert out.shape == (4, 16)
    out.sum().backward()
    # frozen: no gradient reaches the pretrained weights, only the pooling head
    assert all(p.grad is None for p in adapter.pretrained.parameters())
    assert adapter.query.grad is not None and not adapter.pretrained.training
    adapter.train()
    assert not adapter.pretrained.training  # stays in evaluation mode while frozen
    with pytest.raises(ConfigError, match="pretrained at 256 Hz but the trials are at 250 Hz"):
        BackboneAdapter(checkpoint, out_dim=16, sfreq=250.0)


def _rows(batch, index):
    from brainfm.downstream.retrieval.training import take_rows

    return take_rows(batch, index)


@pytest.mark.parametrize("freeze", [True, False])
def test_retrieve_fit_and_test_with_a_pretrained_backbone(pretrained, tmp_path, freeze, capsys):
    store, checkpoint, embeddings = pretrained
    config = {
        "data": {"store": str(store), "embeddings": str(embeddings), "tmin": 0.0, "tmax": 2.0,
                 "normalization": "sensortype", "split": "recordings", "test_fraction": 0.5},
        "model": {"backbone": {"checkpoint": str(checkpoint), "freeze": freeze}},
        "train": {"n_steps": 4, "batch_size": 16, "lr": 1e-3},
        "eval": {"k": [2, 4], "n_trials": 200},
        "output": "run",
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(config))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["retrieve", "fit", "--config", str(tmp_path / "r.yaml")]) == 0
        assert main(["retrieve", "test", "--config", str(tmp_path / "r.yaml")]) == 0
    finally:
        torch.set_num_threads(previous)
    assert "4-way" in capsys.readouterr().out
    saved = read_checkpoint(tmp_path / "run" / "model.pt")
    meta = saved["brainfm"]
    assert meta["retrieval"]["adapter"]["type"] == "backbone" and meta["retrieval"]["held_out"]["unit"] == "recordings"
    held = set(meta["retrieval"]["held_out"]["ids"])
    assert len(held) == 1 and not held & set(meta["training_data"]["recordings"])
    # the pretrained weights travel inside the retrieval checkpoint: unchanged when frozen
    tokenizer, _ = load_tokenizer(checkpoint)
    changed = [name for name, value in tokenizer.state_dict().items()
               if not torch.equal(saved["state_dict"][f"model.pretrained.tokenizer.{name}"], value)]
    assert (changed == []) == freeze
