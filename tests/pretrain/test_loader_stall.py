"""The data-loader stall callback: a slow loader shows as a large share, a fast one as a small share."""

from __future__ import annotations

import time

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from brainfm.cli.main import main
from brainfm.pretrain.loader_stall import LoaderStallMonitor

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]


class _SlowData(Dataset):
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> torch.Tensor:
        time.sleep(self.delay_s)
        return torch.ones(4)


class _SlowStep(L.LightningModule):
    def __init__(self, compute_s: float) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.compute_s = compute_s

    def training_step(self, batch, batch_idx):
        time.sleep(self.compute_s)
        return self.layer(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(delay_s: float, compute_s: float, tmp_path, skip_first: int = 2) -> LoaderStallMonitor:
    monitor = LoaderStallMonitor(skip_first=skip_first)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[monitor])
    trainer.fit(_SlowStep(compute_s), DataLoader(_SlowData(delay_s), batch_size=1))
    return monitor


def test_a_slow_loader_stalls_about_its_share_of_the_step(tmp_path):
    monitor = _fit(delay_s=0.08, compute_s=0.08, tmp_path=tmp_path)
    summary = monitor.summary
    assert summary["n_steps"] == 12 - 2  # the first two batches are skipped (the first has no previous end anyway)
    # about half; the fit loop's own overhead (more on a busy machine) also counts as waiting
    assert 0.35 < summary["stall_fraction"] < 0.8
    assert summary["mean_step_s"] >= 0.16 and summary["mean_wait_s"] >= 0.08


def test_a_fast_loader_barely_stalls(tmp_path):
    monitor = _fit(delay_s=0.0, compute_s=0.08, tmp_path=tmp_path, skip_first=0)
    assert monitor.summary["n_steps"] == 11
    # what remains is the fit loop's own overhead per step (a few ms; more on a busy machine)
    assert monitor.stall_fraction < 0.2


def test_nothing_measured_gives_none_and_bad_arguments_are_refused():
    monitor = LoaderStallMonitor()
    assert monitor.stall_fraction is None and monitor.summary["mean_step_s"] is None
    with pytest.raises(ValueError, match="skip_first must be a non-negative int"):
        LoaderStallMonitor(skip_first=-1)


@pytest.mark.slow
def test_the_callback_runs_from_the_cli_and_logs_its_metrics(tiny_store, tmp_path):
    status = main(["pretrain", "fit", "--recipe", "mulaw", "--data.store", str(tiny_store),
                   "--trainer.callbacks+=brainfm.pretrain.loader_stall.LoaderStallMonitor",
                   "--trainer.callbacks.skip_first", "0", "--trainer.max_steps", "6", "--trainer.log_every_n_steps", "1",
                   "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                   "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu",
                   "--data.batch_size", "2", "--data.val_fraction", "0.34"])
    assert status == 0
    header = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"perf/loader_stall", "perf/step_time_s", "perf/wait_time_s"} <= set(header)
