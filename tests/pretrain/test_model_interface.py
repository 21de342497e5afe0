"""The one model interface downstream uses: load_model(...).features(batch), and FrozenTokenizer."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from brainfm.checkpoint import (
    BrainfmCheckpointIO,
    FrozenTokenizer,
    PretrainedModel,
    load_model,
    load_tokenizer,
)
from brainfm.errors import CheckpointError, ConfigError
from brainfm.loading import WindowDataModule
from brainfm.pretrain.facts import data_facts
from brainfm.pretrain.module import PretrainModule
from brainfm.tokenizers import BrainTokenizer

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]

TINY = {"n_filters": 8, "dim": 32, "n_codes": 64, "n_levels": 2, "n_latents": 4, "n_heads": 4, "lstm_layers": 1,
        "kmeans_samples": 256}


@pytest.fixture(scope="module")
def tokenizer_checkpoint(tiny_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("interface")
    data = WindowDataModule(tiny_store, window_s=2.0, batch_size=4, val_fraction=0.34, seed=3)
    module = PretrainModule(BrainTokenizer(**TINY), data_facts=data_facts(data.index))
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, filename="last")
    trainer = L.Trainer(max_steps=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False, accelerator="cpu", devices=1, default_root_dir=root,
                        plugins=[BrainfmCheckpointIO()], callbacks=[saver], limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    return root / "last.ckpt", data


def test_load_model_gives_features_of_a_tokenizer_only_checkpoint(tokenizer_checkpoint):
    path, data = tokenizer_checkpoint
    model = load_model(path)
    assert isinstance(model, PretrainedModel) and not model.training and model.backbone is None
    assert model.info.training_data["subjects"] and model.feature_dim == 32 and not model.generative
    batch = next(iter(data.val_dataloader()))
    features = model.features(batch)
    assert features.shape == (len(batch), 4 * 8, 32)  # 4 latents x 8 steps of a 2-s window
    tokenizer, _ = load_tokenizer(path)
    assert torch.equal(features, tokenizer.features(batch))


def test_frozen_tokenizer_never_trains_and_rebuilds_without_its_file(tokenizer_checkpoint, tmp_path):
    path, data = tokenizer_checkpoint
    frozen = FrozenTokenizer(checkpoint=str(path))
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.inner.training  # no channel dropout or noise in a frozen tokenizer
    batch = next(iter(data.val_dataloader()))
    codes = frozen.encode(batch)
    assert codes.shape[-1] == 2 and frozen.n_windows(512) == 1  # inner attributes pass through
    config = frozen.get_config()
    assert config["training_data"]["subjects"] and config["tokenizer"]["class_path"].endswith("BrainTokenizer")
    rebuilt = FrozenTokenizer.from_config({**config, "checkpoint": str(tmp_path / "gone.ckpt")})
    rebuilt.load_state_dict(frozen.state_dict())
    assert torch.equal(rebuilt.encode(batch), codes)
    with pytest.raises(ConfigError, match="does not exist"):
        FrozenTokenizer(checkpoint=str(tmp_path / "gone.ckpt"))
    with pytest.raises(ConfigError, match="not trained"):
        frozen.loss(batch)


def test_a_recipe_needs_something_to_train():
    with pytest.raises(ConfigError, match="tokenizer to train"):
        PretrainModule()


def test_embedding_a_checkpoint_without_features_is_refused_before_writing(tiny_store, tmp_path, capsys):
    from brainfm.cli.main import main
    from brainfm.tokenizers import MuLawTokenizer

    data = WindowDataModule(tiny_store, window_s=2.0, batch_size=4, val_fraction=0.34, seed=3)
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="mulaw")
    L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
              use_distributed_sampler=False, accelerator="cpu", devices=1, default_root_dir=tmp_path,
              plugins=[BrainfmCheckpointIO()], callbacks=[saver], limit_val_batches=0).fit(
        PretrainModule(MuLawTokenizer(), data_facts=data_facts(data.index)), datamodule=data)
    with pytest.raises(CheckpointError, match="no continuous features"):
        _ = load_model(tmp_path / "mulaw.ckpt").feature_dim
    assert main(["embed", str(tmp_path / "mulaw.ckpt"), str(tiny_store), str(tmp_path / "out.h5")]) == 2
    assert "no continuous features" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.h5*"))
