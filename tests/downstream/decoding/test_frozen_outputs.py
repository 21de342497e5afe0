"""Reusing a LoRA backbone's frozen outputs: the same logits and gradients, a shared store, and no
caching where it would be wrong (inputs that need gradients, modules whose rows interact)."""

from __future__ import annotations

import copy
from importlib.resources import files

import numpy as np
import pytest
import torch
from torch import nn

from brainfm.downstream.decoding.backbone import FeatureBackbone
from brainfm.downstream.decoding.classifier import BackboneClassifier
from brainfm.downstream.decoding.frozen_outputs import OutputStore, cache_frozen_outputs
from brainfm.downstream.decoding.heads import ClassificationHead
from brainfm.downstream.decoding.task import load_task
from brainfm.downstream.decoding.training import seeded
from brainfm.downstream.decoding.trials import load_trials
from brainfm.tokenizers import BrainTokenizer

TASKS = files("brainfm.configs") / "downstream"


@pytest.fixture(scope="module")
def trials(eegmat_store):
    return load_trials(load_task(TASKS / "eegmat_arithmetic.yaml", store=eegmat_store))


def _classifier(store):
    def make():
        tokenizer = BrainTokenizer(n_filters=8, dim=32, n_codes=64, n_levels=2, n_latents=4, n_heads=4, lstm_layers=1,
                                   sfreq=None).eval()
        backbone = FeatureBackbone(tokenizer, info=None)
        head = ClassificationHead(16, 32, 2, "mean", "linear")
        return BackboneClassifier(backbone, head, "lora", rank=2, frozen_outputs=store)
    return seeded(make, 0)


def _step(net, batch, y):
    net.zero_grad()
    logits = net(batch)
    nn.functional.cross_entropy(logits, y).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}  # (the reconstruction side gets none)
    return logits.detach(), grads


def test_lora_classifier_with_stored_frozen_outputs_matches_the_plain_one(trials):
    store = OutputStore()
    cached, plain = _classifier(store), _classifier(None)
    cached.train(), plain.train()
    rows = np.arange(0, 12)
    batch, y = trials.take(rows), torch.as_tensor(trials.y[rows])
    for attempt in range(2):  # the second pass reads every frozen row from the store
        logits, grads = _step(cached, batch, y)
        expected, expected_grads = _step(plain, batch, y)
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
        assert grads.keys() == expected_grads.keys() and grads
        for name in grads:
            torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-3, atol=1e-6)
        if attempt == 0:
            misses = store.misses
    assert "model.encoder" in store.rows and store.row_wise["model.encoder"]  # the SEANet encoder
    assert store.misses == misses and store.hits > 0  # nothing recomputed the second time
    # a copy (another fold, seed or learning rate) shares the store, and a half-known batch mixes both
    other = copy.deepcopy(cached)
    assert other.backbone.model.encoder.forward.store is store
    mixed = np.arange(6, 18)
    logits, _ = _step(other, trials.take(mixed), torch.as_tensor(trials.y[mixed]))
    expected, _ = _step(plain, trials.take(mixed), torch.as_tensor(trials.y[mixed]))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    assert store.misses > misses


class _BatchCentred(nn.Module):
    """Rows depend on each other (subtracts the batch mean): must never be served row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x - x.mean(0, keepdim=True))


def test_modules_that_are_not_row_wise_or_need_gradients_are_computed_every_time():
    model = nn.Sequential(_BatchCentred(), nn.Linear(3, 3)).eval()  # in training mode nothing is stored
    model[0].requires_grad_(False)
    store = OutputStore()
    assert cache_frozen_outputs(model, store) == ["0"]
    x = torch.randn(5, 3)
    first = model(x)
    assert store.row_wise["0"] is False
    torch.testing.assert_close(model(x[:2]), model[1](model[0].linear(x[:2] - x[:2].mean(0, keepdim=True))))
    torch.testing.assert_close(first, model[1](model[0].linear(x - x.mean(0, keepdim=True))))
    # an input that needs a gradient goes through the module (gradients must reach it)
    frozen = nn.Linear(3, 3).requires_grad_(False)
    chain = nn.Sequential(nn.Linear(3, 3), frozen).eval()
    cache_frozen_outputs(chain, store)
    x = torch.randn(4, 3)
    chain(x).sum().backward()
    assert chain[0].weight.grad is not None and "1" not in store.rows
    chain.train()
    chain[1](x)
    assert "1" not in store.rows


def test_a_full_store_stops_growing_and_still_computes():
    frozen = nn.Sequential(nn.Linear(3, 3), nn.Tanh()).requires_grad_(False).eval()
    head = nn.Linear(3, 2)
    model = nn.Sequential(frozen, head).eval()
    store = OutputStore(max_bytes=0)
    cache_frozen_outputs(model, store)
    x = torch.randn(6, 3)
    torch.testing.assert_close(model(x), head(torch.tanh(frozen[0](x))))
    assert store.n_bytes == 0 and not store.rows["0"]
