"""Shipped task YAMLs validate and each runs a tiny fold on its real data; misspelt keys are refused."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest

from brainfm.cli.main import main
from brainfm.downstream.decoding.evaluation import evaluate_task
from brainfm.downstream.decoding.task import load_task
from brainfm.downstream.decoding.trials import load_trials
from brainfm.errors import ConfigError

TASKS = files("brainfm.configs") / "downstream"


@pytest.mark.parametrize("name", ["eegmmidb_imagery", "eegmat_arithmetic", "ssvep_exo", "braintreebank_sentence_onset",
                                  "braintreebank_speech"])
def test_shipped_task_validates(name):
    task = load_task(TASKS / f"{name}.yaml", store="/nonexistent")
    assert task.name == name and len(task.classes) >= 2 and task.protocol.seeds


def test_misspelt_key_is_refused_with_a_suggestion(tmp_path):
    text = (TASKS / "ssvep_exo.yaml").read_text().replace("protocol:", "protocl:")
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError, match="unknown key 'protocl'.*Did you mean 'protocol'"):
        load_task(tmp_path / "t.yaml")
    text = (TASKS / "ssvep_exo.yaml").read_text().replace("name: cross_subject", "name: cross_subjects")
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError, match="cross_subjects"):
        load_task(tmp_path / "t.yaml")


def test_cli_exit_2_on_a_bad_task(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text((TASKS / "ssvep_exo.yaml").read_text().replace("window:", "windw:"))
    assert main(["evaluate", "--config", str(tmp_path / "t.yaml")]) == 2
    assert "Did you mean 'window'" in capsys.readouterr().err


def _tiny(task):
    task.protocol.seeds = [0]
    return task


def test_eegmat_task_reads_recording_labels_and_runs_cross_subject(eegmat_store):
    task = _tiny(load_task(TASKS / "eegmat_arithmetic.yaml", store=eegmat_store))
    task.protocol.n_folds = None
    trials = load_trials(task)
    assert len(trials) == 3 * 2 * 6  # 3 subjects x 2 recordings x six 4-s windows of 24 s
    # label from the recording's 'task' field: rest (_1) -> 0, arithmetic (_2) -> 1
    for rid, label in zip(trials.recording, trials.y, strict=True):
        assert label == (0 if rid.endswith("task-1") else 1)
    assert trials.ch_names[:3] == ["Fp1", "Fp2", "F3"] and trials.sfreq == 128
    result = evaluate_task(task, trials)
    assert set(result.models) == {"bandpower_lr", "tangent_lr", "tangent_lr_ea"}
    assert all(len(m.folds) == 3 for m in result.models.values())


def test_ssvep_task_reads_event_labels(ssvep_store):
    task = _tiny(load_task(TASKS / "ssvep_exo.yaml", store=ssvep_store))
    trials = load_trials(task)
    assert set(np.unique(trials.y)) == {0, 1, 2, 3} and trials.batch.signal.shape[1:] == (8, 384)
    result = evaluate_task(task, trials)
    # CCA reads the flicker frequency: well above the 4-class chance level even on 2 subjects
    assert result.models["cca"].summary("balanced_accuracy")["mean"] > 0.4


def test_eegmmidb_task_selects_imagery_runs_within_session(eegmmidb_store, tmp_path, capsys):
    task = load_task(TASKS / "eegmmidb_imagery.yaml", store=eegmmidb_store)
    trials = load_trials(task)
    assert set(trials.recording) == {"eegmmidb_sub-001_run-04"}  # run 3 (executed) is not selected
    assert np.bincount(trials.y).tolist() == [8, 7]
    status = main(["evaluate", "--config", str(TASKS / "eegmmidb_imagery.yaml"), "--store", str(eegmmidb_store),
                   "--seeds", "0", "--out", str(tmp_path / "out"), "--json", "-q"])
    assert status == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "eegmmidb_imagery" and doc["protocol"] == "within_session"
    assert set(doc["models"]) == {"bandpower_lr", "tangent_lr", "csp_lda"}
    for entry in doc["models"].values():
        assert entry["kind"] == "baseline" and len(entry["folds"]) == 5
        assert set(entry) >= {"balanced_accuracy", "kappa", "macro_f1", "auroc", "folds"}
        assert set(entry["balanced_accuracy"]) == {"mean", "sd"}
    out = tmp_path / "out"
    assert (out / "results.md").is_file() and (out / "folds.png").is_file() and (out / "confusion_csp_lda.png").is_file()
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 3 * 5
