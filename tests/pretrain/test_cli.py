"""``brainfm pretrain fit|validate``: every shipped recipe runs, configs are validated, DDP shards the data."""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from brainfm.checkpoint import load_tokenizer
from brainfm.cli.main import main
from brainfm.errors import ConfigError
from brainfm.loading import WindowDataModule
from brainfm.pretrain.cli import recipe_path

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The .(train|val)_dataloader. does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval"),
]

RECIPES = sorted(Path(str(importlib.resources.files("brainfm.configs") / "pretrain")).glob("*.yaml"))
PRESETS = sorted(Path(str(importlib.resources.files("brainfm.configs") / "pretrain")).glob("*/*.yaml"))
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu", "--data.batch_size", "4", "--data.val_fraction", "0.34"]


def test_recipes_are_shipped():
    assert {p.stem for p in RECIPES} >= {"mulaw", "quantile"}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES + PRESETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_recipe_validates_and_runs_fast_dev_run(recipe, tiny_store, request, tmp_path):
    stage = recipe if recipe.parent.name == "pretrain" else recipe.parent.with_suffix(".yaml")
    if "brainfm.checkpoint.FrozenTokenizer" in stage.read_text():
        pytest.skip("a stage-2 recipe needs a trained tokenizer checkpoint: run by its own test file")
    ieeg = "barista" in (recipe.stem, recipe.parent.name)  # an iEEG model: a real iEEG store at 2048 Hz
    store = request.getfixturevalue("tiny_ieeg_store") if ieeg else tiny_store
    if recipe.parent.name == "pretrain":
        configs = ["--recipe", recipe.stem]
    else:  # a size preset: applied on top of its recipe
        configs = ["--recipe", recipe.parent.name, "--size", recipe.stem]
    status = main(["pretrain", "fit", *configs, "--data.store", str(store), "--trainer.fast_dev_run", "true",
                   "--trainer.default_root_dir", str(tmp_path), *QUIET, "--data.batch_size", "1"])
    assert status == 0


def test_a_misspelt_config_key_is_refused(tiny_store, tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text(recipe_path("mulaw").read_text().replace("n_bins:", "n_bin:"))
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "fit", "--config", str(config), "--data.store", str(tiny_store)])
    assert exit_info.value.code == 2
    assert "n_bin" in capsys.readouterr().err


def test_unknown_recipes_and_sizes_are_refused_with_the_choices(capsys):
    with pytest.raises(ConfigError, match="Allowed values are .*mulaw.*but got 'mulaw2'"):
        recipe_path("mulaw2")
    assert main(["pretrain", "fit", "--recipe", "mulaw", "--size", "huge"]) == 2
    assert "'--size' parameter of recipe 'mulaw'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed from")  # validate logs into a new version folder
def test_fit_saves_config_metrics_and_a_loadable_checkpoint_then_validate(tiny_store, tmp_path):
    args = ["--recipe", "mulaw", "--data.store", str(tiny_store), "--trainer.default_root_dir", str(tmp_path), *QUIET]
    assert main(["pretrain", "fit", *args, "--model.tokenizer.init_args.n_bins", "54"]) == 0
    run = tmp_path / "lightning_logs" / "version_0"
    assert "n_bins: 54" in (run / "config.yaml").read_text()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/loss", "val/pve"} <= set(header)
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    tokenizer, info = load_tokenizer(checkpoint)
    assert tokenizer.vocab_size == 55 and info.data.sfreq == 256.0
    assert main(["pretrain", "validate", *args, "--model.tokenizer.init_args.n_bins", "54",
                 "--ckpt_path", str(checkpoint)]) == 0


_RECORDER = '''
import json, os
from lightning.pytorch.callbacks import Callback

class SeenWindows(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir, self.seen = out_dir, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += [[int(r), int(s)] for r, s in zip(batch.recording_ids, batch.start)]

    def on_train_end(self, trainer, pl_module):
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"seen": self.seen, "world_size": trainer.world_size}, f)
'''


@pytest.mark.slow
def test_ddp_two_processes_see_disjoint_windows_and_share_the_fit(tiny_store, tmp_path):
    (tmp_path / "seen_windows.py").write_text(_RECORDER)
    (tmp_path / "callbacks.yaml").write_text(
        f"trainer:\n  callbacks:\n    - class_path: seen_windows.SeenWindows\n      init_args: {{out_dir: '{tmp_path}'}}\n")
    brainfm = Path(sys.executable).with_name("brainfm")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    command = [str(brainfm), "pretrain", "fit", "--recipe", "quantile", "--config", str(tmp_path / "callbacks.yaml"),
               "--data.store", str(tiny_store), "--data.drop_last", "true", "--trainer.devices", "2",
               "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(tmp_path), *QUIET]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [{tuple(w) for w in r["seen"]} for r in ranks]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert all(len(r["seen"]) == len(s) for r, s in zip(ranks, seen, strict=True))  # no window twice on one rank
    # Both ranks' samples went into the one histogram every rank holds.
    data = WindowDataModule(tiny_store, window_s=2.0, batch_size=4, val_fraction=0.34, seed=0)
    train = data.split("train")
    good = {layout.index: int(layout.good.sum()) for layout in train.layouts}
    (checkpoint,) = (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    tokenizer, _ = load_tokenizer(checkpoint)
    expected = sum(good[r] for r, _ in seen[0] | seen[1]) * data.n_times
    assert float(tokenizer.counts.sum()) == expected
    assert torch.isfinite(tokenizer.edges()).all()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint")
@pytest.mark.filterwarnings("ignore:The dirpath has changed from")  # the resumed run logs into its own folder
def test_fit_ending_before_its_first_validation_leaves_one_final_checkpoint_that_resumes_exactly(tiny_store, tmp_path):
    """``max_steps`` below ``val_check_interval``: Lightning's ModelCheckpoint never saves, brainfm's
    final checkpoint does (once per step), and resuming from it reaches an uninterrupted run's weights."""
    from brainfm.checkpoint import read_checkpoint

    args = ["--recipe", "braintokenizer", "--size", "tiny", "--data.store", str(tiny_store), *QUIET,
            "--trainer.val_check_interval", "100", "--trainer.check_val_every_n_epoch", "null",
            "--trainer.max_epochs", "-1", "--model.lr_scheduler.init_args.total_steps", "7"]  # one schedule for all

    def fit(name: str, steps: int, *extra: str) -> list[Path]:
        root = tmp_path / name
        assert main(["pretrain", "fit", *args, "--trainer.default_root_dir", str(root),
                     "--trainer.max_steps", str(steps), *extra]) == 0
        return sorted((root / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))

    reference = fit("reference", 7)  # 5 batches per epoch: the run crosses an epoch
    assert [p.name for p in reference] == ["epoch=1-step=7.ckpt"]
    first = fit("first", 3)
    assert [p.name for p in first] == ["epoch=0-step=3.ckpt"]
    tokenizer, info = load_tokenizer(first[0])  # loadable: format, digest, training record
    assert info.training_data["recordings"] and tokenizer.fitted
    resumed = fit("resumed", 7, "--ckpt_path", str(first[0]))
    assert [p.name for p in resumed] == ["epoch=1-step=7.ckpt"]
    want, got = read_checkpoint(reference[0]), read_checkpoint(resumed[0])
    assert want["brainfm"]["state_digest"] == got["brainfm"]["state_digest"]
    differ = [k for k, v in want["state_dict"].items() if not torch.equal(v, got["state_dict"][k])]
    assert not differ, differ
    # A run whose last step already has Lightning's checkpoint (validation at the epoch's end): no second file.
    assert [p.name for p in fit("validated", 5, "--trainer.val_check_interval", "5")] == ["epoch=0-step=5.ckpt"]
