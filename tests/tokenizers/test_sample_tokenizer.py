"""MEG-GPT's sample-level tokenizer: the tokenizer checks of meg-gpt.md §11 (items 1-5, 7)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from brainfm.loading.batch import Batch
from brainfm.tokenizers import SampleLevelTokenizer, percent_variance_explained


def _batch(signal: torch.Tensor) -> Batch:
    b, c, _ = signal.shape
    return Batch(signal=signal, channel_mask=torch.ones(b, c, dtype=torch.bool), sensor_pos=torch.zeros(b, c, 6),
                 sensor_type=torch.ones(b, c, dtype=torch.long), pos_mask=torch.ones(b, c, dtype=torch.bool),
                 frame_ids=torch.zeros(b, c, dtype=torch.long), channel_ids=torch.ones(b, c, dtype=torch.long),
                 region_ids=torch.zeros(b, c, dtype=torch.long), subject_ids=torch.zeros(b, dtype=torch.long),
                 recording_ids=torch.zeros(b, dtype=torch.long), start=torch.zeros(b, dtype=torch.long))


def test_shapes():  # item 1: 4 windows of 200 samples x 52 channels
    tokenizer = SampleLevelTokenizer().eval()
    x = torch.randn(4, 52, 200, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = tokenizer.tokenize(x)
        assert labels.shape == (4, 52, 200) and tokenizer.detokenize(labels).shape == (4, 52, 200)
    assert 1 <= int(labels.min()) and int(labels.max()) <= 128 and tokenizer.vocab_size == 129


def test_token_weights():  # item 2
    tokenizer = SampleLevelTokenizer(n_tokens=16, n_units=8)
    alpha = torch.randn(3, 50, 16, generator=torch.Generator().manual_seed(1))
    tokenizer.train()
    tokenizer.gumbel_noise = False
    tokenizer.temperature.fill_(1.0)
    torch.testing.assert_close(tokenizer.token_weights(alpha), alpha.softmax(-1))
    tokenizer.gumbel_noise = True
    for tau in (1.0, 0.5, 0.0):
        tokenizer.temperature.fill_(tau)
        torch.testing.assert_close(tokenizer.token_weights(alpha).sum(-1), torch.ones(3, 50))
    weights = tokenizer.token_weights(alpha)  # tau = 0: one-hot
    assert bool(((weights == 0) | (weights == 1)).all())
    tokenizer.eval()
    tokenizer.temperature.fill_(0.7)
    assert torch.equal(tokenizer.token_weights(alpha), torch.nn.functional.one_hot(alpha.argmax(-1), 16).float())


def test_encoder_is_causal():  # item 3
    tokenizer = SampleLevelTokenizer(n_tokens=16, n_units=8).eval()
    x = torch.randn(1, 2, 200, generator=torch.Generator().manual_seed(2))
    changed = x.clone()
    changed[..., 120] += 5.0
    with torch.no_grad():
        before, after = tokenizer.logits(x), tokenizer.logits(changed)
    assert torch.equal(before[..., :120, :], after[..., :120, :])
    assert not torch.equal(before[..., 120, :], after[..., 120, :])


@pytest.mark.parametrize("padding,support", [("same", (-5, 4)), ("causal", (0, 9))])
def test_kernel_support(padding, support):  # item 4
    tokenizer = SampleLevelTokenizer(n_tokens=8, n_units=4, kernel_padding=padding)
    with torch.no_grad():
        tokenizer.token_kernels.weight.normal_(generator=torch.Generator().manual_seed(3))
        base = tokenizer.synthesise(torch.zeros(1, 60, 8))
        weights = torch.zeros(1, 60, 8)
        weights[0, 30, 5] = 1.0
        changed = (tokenizer.synthesise(weights) - base).abs()[0] > 0
    assert torch.nonzero(changed).flatten().tolist() == list(range(30 + support[0], 30 + support[1] + 1))


def test_vocabulary_refactoring():  # item 7
    tokenizer = SampleLevelTokenizer(n_tokens=6, n_units=4)
    counts = torch.tensor([5, 0, 40, 7, 0, 12])
    tokenizer.refactor_vocabulary(counts)
    assert tokenizer.labels.tolist() == [4, 0, 1, 3, 0, 2]  # by descending count, unused tokens dropped
    assert tokenizer.vocab_size == 5  # K' + 1
    ids = tokenizer.ids_of_labels()
    assert ids.tolist() == [-1, 2, 5, 3, 0]
    assert torch.equal(tokenizer.labels[ids[1:]], torch.arange(1, 5))  # labels -> ids -> labels
    # label 0 decodes to the bias alone
    silent = tokenizer.detokenize(torch.zeros(1, 1, 20, dtype=torch.long))
    torch.testing.assert_close(silent, torch.full((1, 1, 20), float(tokenizer.token_kernels.bias.detach().sum())))
    # training data never get label 0: every token it uses is in the vocabulary
    x = torch.randn(2, 3, 200, generator=torch.Generator().manual_seed(4))
    tokenizer.eval()
    fresh = SampleLevelTokenizer(n_tokens=6, n_units=4).eval()
    fresh.refactor_vocabulary(fresh.count_tokens(x))
    assert int(fresh.tokenize(x).min()) >= 1


def _mixture(generator: torch.Generator, b: int = 8, c: int = 4, n: int = 200) -> torch.Tensor:
    t = torch.arange(n) / 200.0
    phase = torch.rand(b, c, 2, generator=generator) * 2 * math.pi
    x = torch.sin(2 * math.pi * 10 * t + phase[..., :1]) + 0.5 * torch.sin(2 * math.pi * 20 * t + phase[..., 1:])
    noise = torch.zeros(b, c, n)
    e = 0.2 * torch.randn(b, c, n, generator=generator)
    for i in range(1, n):
        noise[..., i] = 0.8 * noise[..., i - 1] + e[..., i]
    return x + noise


@pytest.mark.bench  # ~2-8 minutes on a shared 2-core machine (300 GRU steps): pytest -m bench
def test_a_small_tokenizer_learns_sinusoids_in_ar_noise():  # item 5
    L.seed_everything(0, verbose=False)
    generator = torch.Generator().manual_seed(0)
    tokenizer = SampleLevelTokenizer(n_tokens=16, n_units=32)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=1e-3)
    held_out = _mixture(torch.Generator().manual_seed(9))
    tokenizer.eval()
    with torch.no_grad():
        initial = float((tokenizer.detokenize(tokenizer.tokenize(held_out)) - held_out).pow(2).mean())
    tokenizer.train()
    steps = 300
    for step in range(steps):
        tokenizer.temperature.fill_(1.0 - step / (steps - 1))
        loss = tokenizer.loss(_batch(_mixture(generator)))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokenizer.eval()
    with torch.no_grad():
        reconstruction = tokenizer.detokenize(tokenizer.tokenize(held_out))
    mse = float((reconstruction - held_out).pow(2).mean())
    assert mse < 0.5 * initial, (initial, mse)
    assert float(percent_variance_explained(held_out, reconstruction)) > 50
