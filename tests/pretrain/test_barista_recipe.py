"""The BaRISTA recipe through ``brainfm pretrain`` on a real iEEG store, and its checkpoint through load_model."""

from __future__ import annotations

import pytest
import torch

from brainfm.checkpoint import load_model
from brainfm.cli.main import main
from brainfm.loading import WindowDataModule

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu"]


@pytest.mark.slow
def test_fit_then_load_model_features(tiny_ieeg_store, tmp_path):
    args = ["--recipe", "barista", "--size", "tiny", "--data.store", str(tiny_ieeg_store), "--data.batch_size", "2",
            "--data.val_fraction", "0.3", "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
            "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(tmp_path),
            "--model.backbone.init_args.spatial_scale", "lobes", *QUIET]
    assert main(["pretrain", "fit", *args]) == 0
    run = tmp_path / "lightning_logs" / "version_0"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/loss", "val/latent", "val/raw", "val/latent_baseline", "val/masked_fraction"} <= set(header)
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    model = load_model(checkpoint)
    assert model.feature_dim == 64 and model.tokenizer is None and not model.training
    assert model.info.training_data["recordings"]
    data = WindowDataModule(tiny_ieeg_store, window_s=3.0, batch_size=2, normalization="window",
                            channel_types=["seeg", "ecog", "dbs"], split_unit="window", val_fraction=0.3)
    batch = next(iter(data.val_dataloader()))
    features = model.features(batch)
    assert features.shape == (2, 12 * batch.signal.shape[1], 64) and torch.isfinite(features).all()
    assert torch.equal(features, model.backbone.features(batch))


def test_region_masking_refuses_a_store_without_regions(tmp_path, shared_data, capsys):
    """The same recording preprocessed without the regions step: refused before training, named."""
    import shutil

    from brainfm.preprocessing.run import preprocess

    recipe = tmp_path / "noregions.yaml"
    recipe.write_text(
        "name: noregions\ndescription: barista without regions\npick:\n  types: [seeg, ecog, dbs]\n"
        "crop: {tmin_s: 0.0, tmax_s: 6.0}\nsteps:\n  - resample: {sfreq: 2048, method: polyphase}\n"
    )
    shutil.copytree(shared_data / "bids" / "ieeg-ecog", tmp_path / "ieeg")
    summary = preprocess(tmp_path / "ieeg", tmp_path / "store", recipe=recipe)
    assert summary.failed == []
    status = main(["pretrain", "fit", "--recipe", "barista", "--size", "tiny", "--data.store", str(tmp_path / "store"),
                   "--model.objective.init_args.mask_unit", "region", "--model.backbone.init_args.spatial_scale",
                   "coords", "--trainer.fast_dev_run", "true", *QUIET])
    assert status == 2
    err = capsys.readouterr().err
    assert "Region-scale masking" in err and summary.processed[0] in err and "'barista' recipe" in err
