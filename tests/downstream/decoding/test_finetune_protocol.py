"""BaRISTA's fine-tuning protocol pieces (``specs/barista.md`` §8, §12 item 14): the per-epoch schedule,
the head's own learning rate, the frozen tokenizer, weighted pooling and epoch selection on validation AUROC."""

from __future__ import annotations

import math
from importlib.resources import files

import numpy as np
import pytest
import torch
from torch import nn

from brainfm.checkpoint import CheckpointInfo, PretrainedModel
from brainfm.downstream.decoding.backbone import FeatureBackbone
from brainfm.downstream.decoding.classifier import BackboneClassifier
from brainfm.downstream.decoding.heads import ClassificationHead
from brainfm.downstream.decoding.metrics import auroc
from brainfm.downstream.decoding.optim import epoch_factor, freeze_parameters, parameter_groups
from brainfm.downstream.decoding.task import load_task
from brainfm.downstream.decoding.training import fit_classifier
from brainfm.errors import ConfigError
from brainfm.models import BaristaBackbone

TASKS = files("brainfm.configs") / "downstream"
TOKENIZER = ["*.temporal_encoder.*", "*.temporal_pooler.*", "*.spatial_embeddings.*"]


def _barista() -> FeatureBackbone:
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(0)
        backbone = BaristaBackbone(n_layers=2, n_regions=8, dropout=0.0)
    info = CheckpointInfo(path="synthetic", brainfm_version="test", tokenizer={}, backbone={})
    return FeatureBackbone(PretrainedModel(None, backbone, None, info).eval(), info)


def test_ramp_then_exponential_decay():  # §12 item 14
    factors = [epoch_factor(e, "ramp_decay") for e in range(30)]
    for e in range(6):
        assert factors[e] == pytest.approx(0.2 + 0.16 * e)
    for e in range(6, 30):
        assert factors[e] == pytest.approx(0.99 ** (e - 5))
    assert max(factors) == pytest.approx(1.0) and factors.index(max(factors)) == 5
    assert {epoch_factor(e) for e in range(10)} == {1.0}
    with pytest.raises(ConfigError, match="'schedule'.*'cosine'"):
        epoch_factor(0, "cosine")  # type: ignore[arg-type]


def test_tokenizer_frozen_backbone_and_head_at_their_own_learning_rates():  # §12 item 14
    net = BackboneClassifier(_barista(), ClassificationHead(12 * 3, 64, 2, "weighted"), "full", freeze=TOKENIZER)
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable and not any(k in name for name in trainable
                                 for k in ("temporal_encoder", "temporal_pooler", "spatial_embeddings"))
    assert any(".layers.0.attention" in name for name in trainable) and "head.token_weights.weight" in trainable
    groups = parameter_groups(net, 1e-4, 1e-3)
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 1e-4), ("head", 1e-3)]
    head_ids = {id(p) for p in net.head.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head_ids
    assert sum(len(g["params"]) for g in groups) == len(trainable)  # every trainable weight once, no frozen one
    # without head_lr, one group; a misspelt pattern is refused instead of training everything
    assert [g["lr"] for g in parameter_groups(net, 1e-4)] == [1e-4]
    with pytest.raises(ConfigError, match=r"'\*\.temporal_encodr\.\*' matches no parameter"):
        freeze_parameters(nn.Linear(2, 2), ["*.temporal_encodr.*"])
    with pytest.raises(ConfigError, match="adaptation 'full'"):
        BackboneClassifier(_barista(), ClassificationHead(36, 64, 2), "lora", freeze=TOKENIZER)


def test_weighted_pooling_is_one_weight_per_token():
    head = ClassificationHead(4, 3, 2, "weighted")
    features = torch.randn(5, 4, 3)
    with torch.no_grad():
        head.token_weights.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 0.0]]))  # only token 1 counts
    torch.testing.assert_close(head(features), head.net(features[:, 1]))
    with pytest.raises(ValueError, match="built for 4 tokens per trial, got 6"):
        head(torch.randn(5, 6, 3))


def test_fit_classifier_applies_the_schedule_and_keeps_the_best_validation_auroc(monkeypatch):
    seen: list[list[float]] = []

    class Recording(torch.optim.AdamW):
        def step(self, closure=None):  # type: ignore[no-untyped-def]
            seen.append([g["lr"] for g in self.param_groups])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((80, 6)), dtype=torch.float32)
    y = (x[:, 0].numpy() + 0.8 * rng.standard_normal(80) > 0).astype(np.int64)
    val_scores: list[float] = []

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, rows: np.ndarray) -> torch.Tensor:
            return self.head(torch.relu(self.body(x[rows])))

    fit_rows, val_rows = np.arange(0, 60), np.arange(60, 80)

    def forward(net: nn.Module, rows: np.ndarray) -> torch.Tensor:
        logits = net(rows)
        if not net.training and len(rows) == len(val_rows) and (rows == val_rows).all():
            val_scores.append(auroc(y[rows], torch.softmax(logits, -1)[:, 1].numpy()))
        return logits

    trained = fit_classifier(Net, forward, y, fit_rows, val_rows, lrs=[1e-2], max_epochs=8, patience=8,
                             batch_size=20, weight_decay=1e-2, seed=0, head_lr=1e-1, schedule="ramp_decay",
                             select_on="auroc")
    assert len(seen) == 8 * 3  # 3 steps per epoch
    for step, (body_lr, head_lr) in enumerate(seen):
        factor = epoch_factor(step // 3, "ramp_decay")
        assert math.isclose(body_lr, 1e-2 * factor) and math.isclose(head_lr, 1e-1 * factor)
    assert len(val_scores) == 8 and trained.select_on == "auroc"
    assert trained.val_score == pytest.approx(max(val_scores))
    assert trained.epochs == 1 + int(np.argmax(val_scores))  # the epoch reaching the best AUROC (no tie here)
    # the kept weights are that epoch's: scoring them again gives the same validation AUROC
    trained.net.eval()
    with torch.no_grad():
        again = auroc(y[val_rows], torch.softmax(trained.net(val_rows), -1)[:, 1].numpy())
    assert again == pytest.approx(max(val_scores))


@pytest.mark.parametrize("name", ["braintreebank_sentence_onset_barista", "braintreebank_speech_barista"])
def test_shipped_barista_protocol_configs(name, tmp_path):
    task = load_task(TASKS / f"{name}.yaml", store="/nonexistent")
    (model,) = task.models
    assert (model.kind, model.adaptation, model.lrs, model.head_lr) == ("finetune", "full", [1e-4], 1e-3)
    assert (model.schedule, model.select_on, model.max_epochs, model.batch_size) == ("ramp_decay", "auroc", 30, 128)
    assert model.patience >= model.max_epochs and model.weight_decay == 1e-2 and task.protocol.seeds == [0, 1, 2, 3, 4]
    assert model.freeze == TOKENIZER and task.normalization == "window"
    # the spec's task protocol (§4.6-4.7): disjoint positives, balanced classes, one random 80/10/10 split
    assert task.window.prune_overlap == [task.classes[1]] and task.protocol.balance == "subsample"
    assert (task.protocol.name, task.protocol.split, task.protocol.fractions) == ("within_session", "random",
                                                                                  [0.8, 0.1, 0.1])
    text = (TASKS / f"{name}.yaml").read_text().replace("select_on: auroc", "select_on: accuracy")
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError, match="select_on"):
        load_task(tmp_path / "t.yaml", store="/nonexistent")


def test_evaluate_checkpoint_flag_needs_a_model_that_reads_one(tmp_path, capsys):
    from brainfm.cli.main import main

    status = main(["evaluate", "--config", str(TASKS / "braintreebank_speech.yaml"), "--store", str(tmp_path),
                   "--checkpoint", str(tmp_path / "barista.ckpt")])
    assert status == 2
    assert "--checkpoint: task 'braintreebank_speech' has no model that reads a checkpoint" in capsys.readouterr().err
