"""The BaRISTA recipe in the training engine: exact resume (EMA teacher, masks, dropout) and 2-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from brainfm.checkpoint import BrainfmCheckpointIO, load_model
from brainfm.loading import WindowDataModule
from brainfm.models import BaristaBackbone, MaskedLatentObjective
from brainfm.pretrain.facts import data_facts
from brainfm.pretrain.module import PretrainModule

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]


def _data(store: Path) -> WindowDataModule:
    return WindowDataModule(store, window_s=3.0, batch_size=1, normalization="window", val_fraction=0.3, seed=3,
                            channel_types=["seeg", "ecog", "dbs"], split_unit="window")


def _module(store: Path) -> PretrainModule:
    facts = data_facts(_data(store).index)
    return PretrainModule(
        backbone=BaristaBackbone(n_layers=1, n_regions=max(facts.n_regions, 8)),  # dropout 0.1 draws randoms
        objective=MaskedLatentObjective(target="ema_teacher", ema_decay=0.5),  # random masks; EMA state
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=1e-2),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        data_facts=facts,
    )


def _trainer(root: Path, **kwargs) -> L.Trainer:
    return L.Trainer(**{"max_epochs": -1, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                        "use_distributed_sampler": False, "accelerator": "cpu", "devices": 1, "default_root_dir": root,
                        "plugins": [BrainfmCheckpointIO()], "limit_val_batches": 0, "gradient_clip_val": 1.0,
                        "enable_checkpointing": "callbacks" in kwargs, **kwargs})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
def test_barista_resumes_exactly_mid_epoch(tiny_ieeg_store, tmp_path):
    """4 steps in one go equal 2 steps, a checkpoint, and 2 resumed steps (under another seed): weights,
    EMA teacher, AdamW moments, the schedule, the sampler position and the mask/dropout draws."""
    L.seed_everything(5)
    reference = _module(tiny_ieeg_store)
    _trainer(tmp_path / "ref", max_steps=4).fit(reference, datamodule=_data(tiny_ieeg_store))

    L.seed_everything(5)
    saver = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, filename="{step}")
    first = _module(tiny_ieeg_store)
    _trainer(tmp_path / "a", max_steps=2, callbacks=[saver]).fit(first, datamodule=_data(tiny_ieeg_store))
    assert not torch.equal(first.objective.teacher_pooler.weight, reference.objective.teacher_pooler.weight)

    L.seed_everything(999)  # the checkpoint's random state must win
    resumed = _module(tiny_ieeg_store)
    trainer = _trainer(tmp_path / "b", max_steps=4)
    trainer.fit(resumed, datamodule=_data(tiny_ieeg_store), ckpt_path=tmp_path / "ckpt" / "step=2.ckpt")
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert trainer.lr_scheduler_configs[0].scheduler.get_last_lr() == [1e-3 * 0.5**4]
    # the checkpoint is a model downstream code can load; the objective's teacher is not part of it
    model = load_model(tmp_path / "ckpt" / "step=2.ckpt")
    assert model.feature_dim == 64 and model.backbone.layers[0].norm1.weight.shape == (64,)


_RECORDER = '''
import hashlib, json, os
from lightning.pytorch.callbacks import Callback

class Recorder(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir, self.seen = out_dir, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += [[int(r), int(s)] for r, s in zip(batch.recording_ids, batch.start)]

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for name, value in sorted(pl_module.state_dict().items()):
            digest.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"seen": self.seen, "world_size": trainer.world_size, "digest": digest.hexdigest(),
                       "steps": trainer.global_step}, f)
'''


@pytest.mark.slow
def test_barista_ddp_two_processes_share_one_model(tiny_ieeg_store, tmp_path):
    """``brainfm pretrain fit --recipe barista`` on 2 gloo processes: disjoint windows, identical weights
    (EMA teacher included) on both ranks after the run, a loadable checkpoint."""
    (tmp_path / "recorder.py").write_text(_RECORDER)
    (tmp_path / "callbacks.yaml").write_text(
        f"trainer:\n  callbacks:\n    - class_path: recorder.Recorder\n      init_args: {{out_dir: '{tmp_path}'}}\n")
    brainfm = Path(sys.executable).with_name("brainfm")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    command = [str(brainfm), "pretrain", "fit", "--recipe", "barista", "--size", "tiny",
               "--config", str(tmp_path / "callbacks.yaml"), "--data.store", str(tiny_ieeg_store),
               "--data.batch_size", "1", "--data.val_fraction", "0.3", "--data.drop_last", "true",
               "--model.backbone.init_args.n_layers", "1", "--model.objective.init_args.target", "ema_teacher",
               "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.devices", "2",
               "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
               "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [2, 2]
    seen = [{tuple(w) for w in r["seen"]} for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 2 and not seen[0] & seen[1]  # each rank its own windows
    assert ranks[0]["digest"] == ranks[1]["digest"]  # gradients averaged: one model on both ranks
    (checkpoint,) = (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    model = load_model(checkpoint)
    assert len(model.backbone.layers) == 1
