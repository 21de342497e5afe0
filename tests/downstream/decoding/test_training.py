"""Model selection in the decoding trainer: ties in validation balanced accuracy, seeded fits,
and identical ``evaluate`` documents from identical runs."""

from __future__ import annotations

import json
import math
from importlib.resources import files

import numpy as np
import pytest
import torch
from torch import nn

from brainfm.downstream.decoding.evaluation import evaluate_task
from brainfm.downstream.decoding.heads import ClassificationHead
from brainfm.downstream.decoding.task import load_task
from brainfm.downstream.decoding.training import ValidationScore, fit_classifier
from brainfm.downstream.decoding.trials import load_trials

TASKS = files("brainfm.configs") / "downstream"


def test_validation_score_prefers_the_higher_metric_then_the_lower_loss():
    assert ValidationScore(0.6, 0.9).better_than(ValidationScore(0.5, 0.1))
    assert not ValidationScore(0.5, 0.1).better_than(ValidationScore(0.6, 0.9))
    assert ValidationScore(0.5, 0.6).better_than(ValidationScore(0.5, 0.7))  # a tie: the lower loss
    assert not ValidationScore(0.5, 0.7).better_than(ValidationScore(0.5, 0.6))
    assert not ValidationScore(0.5, 0.6).better_than(ValidationScore(0.5, 0.6))  # equal: keep the earlier
    assert not ValidationScore(0.5).better_than(ValidationScore(0.5, 0.6))  # no loss to break the tie
    assert ValidationScore(0.0, math.nan).better_than(None)


def _constant_input_problem():
    """Inputs carry no information: every epoch predicts one class (balanced accuracy 0.5), the loss still falls."""
    y = np.array([0, 1] * 20)
    features = torch.ones(len(y), 1, 4)  # (n, N, D)
    rows = np.arange(len(y))
    return y, features, rows[:30], rows[30:]


def test_a_tie_in_balanced_accuracy_keeps_the_epoch_with_the_lower_validation_loss():
    y, features, fit_rows, val_rows = _constant_input_problem()

    def make_net():
        net = ClassificationHead(1, 4, 2, "mean", "linear")
        with torch.no_grad():
            net.net[1].bias.copy_(torch.tensor([2.0, -2.0]))  # starts far from the best constant prediction
        return net

    def fit(patience):
        return fit_classifier(make_net, lambda net, rows: net(features[rows]), y, fit_rows, val_rows, lrs=[0.05],
                              max_epochs=8, patience=patience, batch_size=8, weight_decay=0.0, seed=0)

    trained = fit(8)
    assert trained.val_score == 0.5 and trained.select_on == "balanced_accuracy"
    assert trained.epochs > 1, "a tie at chance kept the first, nearly untrained epoch"
    # patience counts epochs without a higher balanced accuracy: a falling loss alone does not prolong
    # training, but the kept epoch is the last (lowest-loss) one of those run
    assert fit(2).epochs == 3
    assert trained.val_loss < math.log(2) + 1.0
    # the kept weights are the ones scored: their validation loss is the recorded one
    with torch.no_grad():
        logits = trained.net.eval()(features[val_rows])
    weights = torch.ones(2)
    recorded = nn.functional.cross_entropy(logits, torch.as_tensor(y[val_rows]), weight=weights).item()
    assert recorded == pytest.approx(trained.val_loss, rel=1e-5)


def test_a_fit_depends_on_its_seed_only_not_on_the_global_generator():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    features = torch.as_tensor(rng.normal(size=(60, 3, 8)) + y[:, None, None] * 0.5, dtype=torch.float32)

    def fit(seed):
        def make_net():
            return ClassificationHead(3, 8, 2, "flatten", "mlp", drop_prob=0.5)  # dropout draws at every step
        trained = fit_classifier(make_net, lambda net, rows: net(features[rows]), y, np.arange(40), np.arange(40, 60),
                                 lrs=[1e-2, 1e-3], max_epochs=4, patience=4, batch_size=8, weight_decay=0.01, seed=seed)
        return trained.net.state_dict()

    first = fit(1)
    torch.rand(1000)  # the global generator moves between the two runs
    second = fit(1)
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)
    other = fit(2)
    assert any(not torch.equal(first[n], other[n]) for n in first)


def test_identical_evaluations_give_identical_json(eegmat_store, tmp_path):
    from brainfm.downstream.decoding.models import build_model_runners
    from brainfm.downstream.decoding.report import write_results
    from brainfm.downstream.decoding.task import ModelConfig

    task = load_task(TASKS / "eegmat_arithmetic.yaml", store=eegmat_store)
    task.protocol.seeds, task.protocol.n_folds, task.baselines = [0, 1], None, ["bandpower_lr", "tangent_lr"]
    task.models = [ModelConfig(name="eegnet", kind="scratch", architecture="eegnet", max_epochs=2, lrs=[1e-3])]
    trials = load_trials(task)
    documents = []
    for run in range(2):
        torch.rand(100 + run)  # different global generator states
        runners, _ = build_model_runners(task, trials)
        result = evaluate_task(task, trials, model_runners=runners)
        files_written = write_results(result, task, tmp_path / f"run{run}")
        documents.append((tmp_path / f"run{run}" / "results.json").read_text())
        assert json.loads(documents[-1]) == result.to_json()
        timings = json.loads((tmp_path / f"run{run}" / "timings.json").read_text())
        assert len(timings["models"]["eegnet"]["per_fit"]) == len(result.models["eegnet"].folds)
        assert files_written["timings"].endswith("timings.json")
    assert documents[0] == documents[1]
    assert "seconds" not in documents[0]
