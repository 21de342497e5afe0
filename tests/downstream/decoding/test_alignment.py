"""Per-subject alignment (``align: signal | features``) on real eegmat trials: it whitens each subject
with that subject's own trials, never reads a label, and no other subject changes it."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
import torch

from brainfm.downstream.decoding.alignment import (
    align_signal,
    euclidean_alignment,
    standardize_per_group,
)
from brainfm.downstream.decoding.task import ModelConfig, load_task
from brainfm.downstream.decoding.trials import Trials, load_trials
from brainfm.errors import ConfigError

TASKS = files("brainfm.configs") / "downstream"


class _NoLabels:
    """Stands in for ``Trials.y``: any use of it fails the test."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"alignment read the labels (y.{name})")

    def __getitem__(self, key: object) -> None:
        raise AssertionError("alignment read the labels (y[...])")

    def __len__(self) -> int:
        raise AssertionError("alignment read the labels (len(y))")

    def __array__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("alignment read the labels (np.asarray(y))")


def _subset(trials: Trials, rows: np.ndarray) -> Trials:
    return Trials(trials.take(rows), trials.y[rows], trials.subject[rows], trials.session[rows], trials.run[rows],
                  trials.recording[rows], trials.classes, trials.sfreq, trials.ch_names, trials.sources, trials.index)


@pytest.fixture(scope="module")
def trials(eegmat_store) -> Trials:
    return load_trials(load_task(TASKS / "eegmat_arithmetic.yaml", store=eegmat_store))


def test_euclidean_alignment_whitens_each_subject_with_its_own_trials_only(trials):
    subjects = np.unique(trials.subject)
    assert len(subjects) == 3
    aligned = align_signal(trials, "signal").batch.signal
    assert aligned.shape == trials.batch.signal.shape and not torch.equal(aligned, trials.batch.signal)
    for subject in subjects:
        rows = np.flatnonzero(trials.subject == subject)
        x = aligned[rows].double()
        x = x - x.mean(dim=-1, keepdim=True)
        mean_cov = (x @ x.transpose(1, 2)).mean(0) / x.shape[-1]
        torch.testing.assert_close(mean_cov, torch.eye(x.shape[1], dtype=torch.float64), atol=1e-3, rtol=0)
        # the subject alone gives the same aligned trials: no other subject enters its reference
        alone = align_signal(_subset(trials, rows), "signal").batch.signal
        torch.testing.assert_close(alone, aligned[rows], atol=1e-6, rtol=0)
    # replacing another subject's data changes nothing for this one
    other = trials.subject != subjects[0]
    changed = trials.batch.signal.clone()
    changed[torch.as_tensor(other)] = torch.flip(changed[torch.as_tensor(other)], dims=[-1]) * 3.0
    again = euclidean_alignment(changed, trials.subject, trials.batch.channel_mask)
    first = torch.as_tensor(~other)
    torch.testing.assert_close(again[first], aligned[first], atol=1e-6, rtol=0)
    assert not torch.allclose(again[torch.as_tensor(other)], aligned[torch.as_tensor(other)])


def test_alignment_never_reads_labels(trials):
    blind = Trials(trials.batch, _NoLabels(), trials.subject, trials.session, trials.run,  # type: ignore[arg-type]
                   trials.recording, trials.classes, trials.sfreq, trials.ch_names, trials.sources, trials.index)
    torch.testing.assert_close(align_signal(blind, "signal").batch.signal, align_signal(trials, "signal").batch.signal)
    # relabelling every trial leaves both alignments unchanged
    shuffled = _subset(trials, np.arange(len(trials)))
    shuffled.y = np.random.default_rng(0).permutation(trials.y)
    torch.testing.assert_close(align_signal(shuffled, "signal").batch.signal, align_signal(trials, "signal").batch.signal)
    assert align_signal(trials, "features") is trials and align_signal(trials, "none") is trials


def test_feature_standardisation_is_per_subject(trials):
    features = trials.batch.signal[:, :, :64].clone() * 5 + 2  # any (n, N, D) array
    out = standardize_per_group(features, trials.subject)
    for subject in np.unique(trials.subject):
        rows = torch.as_tensor(np.flatnonzero(trials.subject == subject))
        torch.testing.assert_close(out[rows].mean(0), torch.zeros_like(out[0]), atol=1e-4, rtol=0)
        torch.testing.assert_close(standardize_per_group(features[rows], trials.subject[rows.numpy()]), out[rows])
    # a subject's statistics ignore the others: shift every other subject, this one stays
    moved = features.clone()
    others = torch.as_tensor(trials.subject != trials.subject[0])
    moved[others] += 100.0
    same = torch.as_tensor(trials.subject == trials.subject[0])
    torch.testing.assert_close(standardize_per_group(moved, trials.subject)[same], out[same])


def test_align_option_is_checked(eegmat_store, tmp_path):
    task = load_task(TASKS / "eegmat_arithmetic.yaml", store=eegmat_store)
    task.models = [ModelConfig(name="lora", kind="finetune", adaptation="lora", checkpoint="x.ckpt", align="features")]
    with pytest.raises(ConfigError, match="align 'features' standardises frozen features"):
        task.__post_init__()
    bad = tmp_path / "bad.yaml"
    bad.write_text((TASKS / "eegmat_arithmetic.yaml").read_text()
                   + "models:\n  - {name: zs, kind: zero_shot, checkpoint: x.ckpt, align: subject}\n")
    with pytest.raises(ConfigError, match="align"):
        load_task(bad, store=eegmat_store)


def test_ea_baselines_run_the_baseline_on_aligned_trials(eegmat_store, trials):
    from brainfm.downstream.decoding.evaluation import evaluate_task

    task = load_task(TASKS / "eegmat_arithmetic.yaml", store=eegmat_store)
    task.protocol.seeds, task.protocol.n_folds = [0], None
    task.baselines = ["bandpower_lr", "bandpower_lr_ea"]
    both = evaluate_task(task, trials).to_json()["models"]
    task.baselines = ["bandpower_lr"]
    on_aligned = evaluate_task(task, align_signal(trials, "signal")).to_json()["models"]["bandpower_lr"]
    assert both["bandpower_lr_ea"]["folds"] == on_aligned["folds"]
    assert both["bandpower_lr_ea"]["kind"] == "baseline"
    task.baselines = ["tangent_ea"]  # the suffix needs a known baseline before it
    with pytest.raises(ConfigError, match="unknown baseline"):
        task.__post_init__()
