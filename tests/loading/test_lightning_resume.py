"""A Lightning run resumed from a mid-epoch checkpoint sees exactly the batches it had left."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from brainfm.loading import WindowDataModule


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, ...]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(tuple(batch.recording_ids.tolist()) + tuple(batch.start.tolist()))
        return (self.weight * batch.signal.mean()).sum()

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(**kwargs) -> L.Trainer:
    kwargs.setdefault("enable_checkpointing", "callbacks" in kwargs)
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, **kwargs)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers")
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")  # lightning on torch 2.13
def test_resume_mid_epoch_continues_exactly(make_recording, make_store, tmp_path):
    store = make_store([make_recording("a", f"{s:02d}", n_times=1500) for s in range(4)])

    def data() -> WindowDataModule:
        return WindowDataModule(store, window_s=0.5, batch_size=10, val_fraction=0.0, seed=7)

    reference = _Recorder()
    _trainer(max_epochs=2).fit(reference, datamodule=data())
    per_epoch = len(reference.seen) // 2
    assert per_epoch == 12 and reference.seen[:per_epoch] != reference.seen[per_epoch:]

    # A run that saves a checkpoint mid-epoch (after step 5), as ModelCheckpoint does on a cluster.
    def saver(folder: str) -> L.pytorch.callbacks.ModelCheckpoint:
        return L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / folder, every_n_train_steps=5, save_top_k=-1,
                                                   filename="{step}")

    first = _Recorder()
    trainer = _trainer(max_epochs=1, callbacks=[saver("ckpt")])
    trainer.fit(first, datamodule=data())
    assert first.seen == reference.seen[:per_epoch]
    second = _Recorder()
    _trainer(max_epochs=2, callbacks=[saver("ckpt")]).fit(second, datamodule=data(), ckpt_path=tmp_path / "ckpt" / "step=5.ckpt")
    assert second.seen == reference.seen[5:]
