"""The MEG-GPT recipe through ``brainfm pretrain fit``: a frozen sample tokenizer from its checkpoint,
fast_dev_run of every size, the loss falls on a real store, exact resume, load_model rebuilds it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brainfm.checkpoint import load_model, load_tokenizer, read_checkpoint
from brainfm.cli.main import main

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
    pytest.mark.filterwarnings(r"ignore:Found \d+ module\(s\) in eval mode"),  # the frozen tokenizer
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint"),
    pytest.mark.filterwarnings("ignore:The dirpath has changed from"),  # resuming into another run folder
]

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu", "--data.val_fraction", "0.34"]


def _checkpoints(root: Path) -> list[Path]:
    return sorted(root.glob("lightning_logs/version_*/checkpoints/*.ckpt"))


@pytest.fixture(scope="session")
def sample_tokenizer_checkpoint(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sample tokenizer (16 tokens, 8 GRU units) trained for 3 steps on the tiny store."""
    root = tmp_path_factory.mktemp("sample_tokenizer")
    status = main(["pretrain", "fit", "--recipe", "sample_tokenizer", "--data.store", str(tiny_store),
                   "--model.tokenizer.init_args.n_tokens", "16", "--model.tokenizer.init_args.n_units", "8",
                   "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0", "--data.batch_size", "4",
                   "--trainer.default_root_dir", str(root), *QUIET])
    assert status == 0
    return _checkpoints(root)[-1]


def _fit(store: Path, tokenizer: Path, root: Path, *extra: str) -> int:
    return main(["pretrain", "fit", "--recipe", "meg_gpt", "--data.store", str(store),
                 "--model.tokenizer.init_args.checkpoint", str(tokenizer), "--trainer.default_root_dir", str(root),
                 *QUIET, *extra])


@pytest.mark.parametrize("size", [None, "tiny", "reference_v0"])
def test_recipe_runs_fast_dev_run(size, tiny_store, sample_tokenizer_checkpoint, tmp_path):
    sizes = [] if size is None else ["--size", size]
    extra = ["--model.backbone.init_args.d_model", "32", "--model.backbone.init_args.ff_dim", "32"]
    assert _fit(tiny_store, sample_tokenizer_checkpoint, tmp_path, *sizes, *extra, "--trainer.fast_dev_run", "true",
                "--data.batch_size", "1") == 0


def test_recipe_refuses_a_missing_tokenizer_checkpoint(tiny_store, tmp_path, capsys):
    status = main(["pretrain", "fit", "--recipe", "meg_gpt", "--size", "tiny", "--data.store", str(tiny_store),
                   "--trainer.fast_dev_run", "true", *QUIET])
    assert status == 2
    assert "checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_trains_resumes_exactly_and_loads(tiny_store, sample_tokenizer_checkpoint, tmp_path):
    common = ["--size", "tiny", "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1",
              "--data.batch_size", "2", "--trainer.max_epochs", "-1"]
    full = tmp_path / "full"
    assert _fit(tiny_store, sample_tokenizer_checkpoint, full, *common, "--trainer.max_steps", "12") == 0
    metrics = (next(full.glob("lightning_logs/version_*")) / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    losses = [float(row.split(",")[header.index("train/loss")]) for row in metrics[1:]
              if row.split(",")[header.index("train/loss")]]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # the loss falls
    assert "train/top1" in header and "train/top5" in header

    # interrupted at step 4 (mid-epoch: 6 batches per epoch), resumed to 12: the same weights as the
    # uninterrupted run
    half = tmp_path / "half"
    assert _fit(tiny_store, sample_tokenizer_checkpoint, half, *common, "--trainer.max_steps", "4") == 0
    resumed = tmp_path / "resumed"
    assert _fit(tiny_store, sample_tokenizer_checkpoint, resumed, *common, "--trainer.max_steps", "12",
                "--ckpt_path", str(_checkpoints(half)[-1])) == 0
    a = read_checkpoint(_checkpoints(full)[-1])["state_dict"]
    b = read_checkpoint(_checkpoints(resumed)[-1])["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)

    model = load_model(_checkpoints(full)[-1])
    meta = read_checkpoint(_checkpoints(full)[-1])["brainfm"]
    # the tokenizer's vocabulary as refactored when its checkpoint was written (used tokens + unknown)
    assert meta["backbone"]["init_args"]["n_tokens"] == load_tokenizer(sample_tokenizer_checkpoint)[0].vocab_size
    assert model.generative and model.feature_dim == 64
