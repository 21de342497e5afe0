"""``brainfm demo``: the whole pipeline on the bundled sample, end to end with the small budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from brainfm.cli.demo_pipeline import BUDGETS, demo_task, has_foundation_model, latest_checkpoint
from brainfm.cli.main import main
from brainfm.downstream.decoding.task import load_task
from brainfm.errors import BrainFMError


@pytest.mark.parametrize("model", [None, "model.ckpt"])
@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_demo_task_of_every_budget_validates(tmp_path, budget, model):
    path = tmp_path / "task.yaml"
    import yaml

    model_path = None if model is None else tmp_path / model
    path.write_text(yaml.safe_dump(demo_task(tmp_path / "store.zarr", tmp_path / "tok.ckpt", BUDGETS[budget], model_path)))
    task = load_task(path)
    assert task.protocol.name == "cross_run"  # one subject: runs, never windows of one run, on both sides
    assert task.protocol.seeds == list(BUDGETS[budget].seeds)
    assert {"bandpower_lr", "tangent_lr", "csp_lda"} <= set(task.baselines)
    kinds = {m.kind for m in task.models}
    assert {"zero_shot", "probe", "scratch"} <= kinds
    assert ("finetune" in kinds) == BUDGETS[budget].finetune
    # trained decoders read the foundation model when there is one, else the tokenizer
    trained = {m.checkpoint for m in task.models if m.kind in ("probe", "finetune")}
    assert trained == {str(tmp_path / (model or "tok.ckpt"))}


def test_latest_checkpoint_takes_the_newest_run(tmp_path):
    with pytest.raises(BrainFMError, match="No checkpoint was written under"):
        latest_checkpoint(tmp_path)
    for version, name in ((2, "epoch=0-step=2.ckpt"), (10, "epoch=1-step=4.ckpt")):
        folder = tmp_path / "lightning_logs" / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"")
    # version_10 sorts before version_2 as text: the number decides
    assert latest_checkpoint(tmp_path).parent.parent.name == "version_10"


# 23-41 s on the shared 2-core machine at load 4-8 (up to 110 s at load 14): not marked slow
def test_demo_runs_end_to_end_with_the_small_budget(tmp_path, capfd):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--budget", "small", "--json", "-q"]) == 0
    captured = capfd.readouterr()
    summary = json.loads(captured.out)  # stdout holds the JSON summary only
    assert "brainfm evaluate --config" in captured.err
    outputs = {name: Path(path) for name, path in summary["outputs"].items()}
    for name, path in outputs.items():
        assert path.exists(), f"{name}: {path} is missing"
        assert path.is_relative_to(out), f"{name} lies outside the run folder: {path}"
    assert outputs["store"] == out / "store.zarr" and outputs["report"] == out / "report.html"
    assert "eegmmidb_sub-001_run-03" in outputs["report"].read_text()

    # the tokenizer trained on one run and kept the other for validation; the checkpoint says so
    training = torch.load(outputs["tokenizer_checkpoint"], weights_only=True)["brainfm"]["training_data"]
    assert len(training["recordings"]) == 1 and summary["pretrained_on"] == training["recordings"]
    assert training["subjects"] == ["eegmmidb/001"]

    results = json.loads(outputs["results_json"].read_text())
    assert results["protocol"] == "cross_run" and results["n_trials"] == 30  # 15 T1/T2 trials per run
    models = summary["models"]
    assert {"bandpower_lr", "tangent_lr", "csp_lda", "eegnet"} <= set(models)
    expected = ({"tokenizer_zero_shot", "brainomni_zero_shot", "brainomni_probe"} if has_foundation_model()
                else {"tokenizer_zero_shot", "tokenizer_probe"})
    assert {name for name, model in models.items() if model["kind"] == "brainfm"} == expected
    for name, model in results["models"].items():
        assert 0.0 <= model["balanced_accuracy"]["mean"] <= 1.0, name
        folds = model["folds"]
        # each run held out once
        assert sorted(f["fold"] for f in folds) == ["run eegmmidb_sub-001_run-03", "run eegmmidb_sub-001_run-04"], name
        assert all(f["n_train"] == f["n_test"] == 15 for f in folds), name
    # the single subject was in pretraining: the guard's override is reported, never silent
    assert any("subject eegmmidb/001" in found for found in summary["leakage"].values())
    assert any(Path(p).name == "folds.png" for p in summary["outputs"].values())
    stages = {"preprocess", "report", "tokenizer", "evaluate"} | ({"pretrain"} if has_foundation_model() else set())
    assert set(summary["seconds"]) == stages
    if has_foundation_model():  # BrainOmni stage 2 on the demo's own tokenizer, on the same training run
        model = torch.load(outputs["model_checkpoint"], weights_only=True)["brainfm"]
        assert model["training_data"]["recordings"] == training["recordings"]
        assert model["backbone"]["class_path"].endswith("BrainOmni")


def test_demo_text_summary_says_where_everything_is(tmp_path, capsys, monkeypatch):
    """The human summary: the table, the leakage note, seconds per stage and every output's path."""
    import brainfm.cli.demo_pipeline as pipeline

    def fake_run_demo(out, **kwargs):
        assert kwargs["budget"] == "small" and kwargs["progress"] is False  # -q: no progress bars
        kwargs["say"]("[1/4] brainfm preprocess ...")
        kwargs["say"]("a stage's details (left out under -q)")
        return pipeline.DemoResult(
            Path(out), outputs={"store": f"{out}/store.zarr", "figure_folds": f"{out}/evaluation/folds.png"},
            seconds={"preprocess": 4.2, "evaluate": 20.0}, table="| model |\n",
            leaked={"tokenizer_probe": ["subject eegmmidb/001"]}, pretrained_on=["eegmmidb_sub-001_run-03"])

    monkeypatch.setattr(pipeline, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path), "--budget", "small", "-q"]) == 0
    text = capsys.readouterr().out
    assert "[1/4] brainfm preprocess" in text and "a stage's details" not in text
    assert "| model |" in text
    assert "Pretrained on eegmmidb_sub-001_run-03" in text and "subject eegmmidb/001" in text
    assert "not an honest estimate" in text
    assert "Done in 24 s (preprocess 4 s, evaluate 20 s)" in text
    assert f"  store         {tmp_path}/store.zarr" in text
    assert f"  figure_folds  {tmp_path}/evaluation/folds.png" in text


def test_demo_refuses_an_unknown_budget(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--budget", "huge"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_demo_exit_status_names_the_kind_of_failure(tmp_path, capsys, monkeypatch):
    """2 for unusable arguments (before any work), 3 for a bug in brainfm."""
    assert main(["demo", "--out", str(tmp_path / "a"), "--jobs", "0", "-q"]) == 2
    assert "jobs must be >= 1" in capsys.readouterr().err
    import brainfm.cli.demo_pipeline as pipeline

    def broken(out, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(pipeline, "run_demo", broken)
    assert main(["demo", "--out", str(tmp_path / "b"), "-q"]) == 3
    assert "KeyError" in capsys.readouterr().err
