"""Mu-law and quantile tokenizers (MEG-GPT spec §4.5, §11 items 6 and 8) and the tokenizer interface."""

from __future__ import annotations

import pytest
import torch

from brainfm.errors import ConfigError
from brainfm.loading.batch import Batch
from brainfm.nn import DataFacts
from brainfm.tokenizers import (
    MuLawTokenizer,
    QuantileTokenizer,
    Tokenizer,
    percent_variance_explained,
)


def _batch(signal: torch.Tensor, mask: torch.Tensor | None = None) -> Batch:
    b, c, _ = signal.shape
    return Batch(
        signal=signal,
        channel_mask=torch.ones(b, c, dtype=torch.bool) if mask is None else mask,
        sensor_pos=torch.zeros(b, c, 6),
        sensor_type=torch.zeros(b, c, dtype=torch.long),
        pos_mask=torch.ones(b, c, dtype=torch.bool),
        frame_ids=torch.zeros(b, c, dtype=torch.long),
        channel_ids=torch.ones(b, c, dtype=torch.long),
        region_ids=torch.zeros(b, c, dtype=torch.long),
        subject_ids=torch.zeros(b, dtype=torch.long),
        recording_ids=torch.zeros(b, dtype=torch.long),
        start=torch.zeros(b, dtype=torch.long),
    )


@pytest.mark.parametrize("n_bins", [256, 182, 108, 54])
def test_mulaw_vocabulary_and_half_bin_round_trip(n_bins):
    tokenizer = MuLawTokenizer(n_bins=n_bins)
    assert tokenizer.vocab_size == n_bins + 1
    # in range: |x| <= scale; dense enough to hit every bin
    x = torch.linspace(-4.0, 4.0, 200_001)
    tokens = tokenizer.tokenize(x)
    assert int(tokens.min()) == 1 and int(tokens.max()) == n_bins
    assert torch.unique(tokens).numel() == n_bins  # every bin reachable: exactly n_bins symbols
    error = (tokenizer.compand(tokenizer.detokenize(tokens)) - tokenizer.compand(x)).abs()
    assert float(error.max()) <= 1.0 / n_bins + 1e-6  # half of a bin of width 2 / n_bins


def test_mulaw_companding_is_the_published_formula():
    tokenizer = MuLawTokenizer(n_bins=256, mu=255.0, scale=4.0)
    x = torch.tensor([-8.0, -2.0, 0.0, 0.5, 4.0])
    expected = torch.sign(x / 4).mul(torch.log1p(255 * (x / 4).clamp(-1, 1).abs()) / torch.log1p(torch.tensor(255.0)))
    torch.testing.assert_close(tokenizer.compand(x), expected)
    torch.testing.assert_close(tokenizer.expand(tokenizer.compand(torch.tensor([1.3]))), torch.tensor([1.3]))


def test_pve_definition():
    x = torch.randn(1000) + 3.0
    assert float(percent_variance_explained(x, x)) == pytest.approx(100.0)
    assert float(percent_variance_explained(x, torch.zeros_like(x))) == pytest.approx(0.0, abs=1e-5)


def test_masked_channels_get_token_zero_and_decode_to_zero():
    tokenizer = MuLawTokenizer(n_bins=54)
    signal = torch.randn(2, 3, 50)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    batch = _batch(signal, mask)
    tokens = tokenizer.encode(batch)
    assert tokens.shape == (2, 3, 50) and tokens.dtype == torch.int64
    assert bool((tokens[~mask] == 0).all()) and bool((tokens[mask] >= 1).all())
    assert bool((tokenizer.decode(tokens, batch)[~mask] == 0).all())


def test_quantile_bins_are_equal_probability_and_round_trip_within_half_a_bin():
    generator = torch.Generator().manual_seed(0)
    tokenizer = QuantileTokenizer(n_bins=16)
    assert not tokenizer.fitted
    with pytest.raises(ConfigError, match="has not seen any data"):
        tokenizer.tokenize(torch.zeros(3))
    tokenizer.update(torch.randn(400_000, generator=generator))
    fresh = torch.randn(400_000, generator=generator)
    tokens = tokenizer.tokenize(fresh)
    shares = torch.bincount(tokens, minlength=17)[1:].double() / fresh.numel()
    assert torch.allclose(shares, torch.full((16,), 1 / 16, dtype=torch.float64), atol=0.004)
    # Standard-normal quantiles: the median edge is 0, the bin medians are symmetric.
    assert float(tokenizer.edges()[7]) == pytest.approx(0.0, abs=0.02)
    torch.testing.assert_close(tokenizer.medians(), -tokenizer.medians().flip(0), atol=0.03, rtol=0)
    # Round trip in the companded (CDF) units: at most half a bin (1 / 32), up to the grid resolution.
    x = torch.linspace(-2.5, 2.5, 5001)
    error = (tokenizer.cdf(tokenizer.detokenize(tokenizer.tokenize(x))) - tokenizer.cdf(x)).abs()
    assert float(error.max()) <= 0.5 / 16 + 1e-3


def test_quantile_learns_only_in_training_mode():
    tokenizer = QuantileTokenizer(n_bins=8)
    batch = _batch(torch.randn(2, 2, 100), torch.tensor([[True, False], [True, True]]))
    tokenizer.train()
    tokenizer.loss(batch)
    assert float(tokenizer.counts.sum()) == 300  # good channels only
    tokenizer.eval()
    tokenizer.loss(batch)
    assert float(tokenizer.counts.sum()) == 300


@pytest.mark.parametrize("cls,kwargs", [(MuLawTokenizer, {"n_bins": 108, "mu": 100.0}),
                                        (QuantileTokenizer, {"n_bins": 32, "clip": 6.0})])
def test_config_round_trip(cls, kwargs):
    tokenizer = cls(**kwargs)
    config = tokenizer.get_config()
    assert {k: config[k] for k in kwargs} == kwargs
    rebuilt = cls.from_config(config)
    assert rebuilt.get_config() == config and rebuilt.vocab_size == tokenizer.vocab_size


def test_invalid_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="'n_bins'"):
        MuLawTokenizer(n_bins=1)
    with pytest.raises(ValueError, match="'clip'"):
        QuantileTokenizer(clip=0)


class _EegOnly(Tokenizer):
    sensor_types = ("eeg",)


def test_check_data_names_the_recordings_of_unsupported_types():
    facts = DataFacts(sfreq=160.0, n_times=320, sensor_types=["eeg", "grad", "mag"],
                      recording_types={"a_eeg": ["eeg"], "b_meg": ["grad", "mag"], "c_meg": ["mag"]})
    with pytest.raises(ConfigError, match=r"\['grad', 'mag'\] channels in 2 recordings \(b_meg, c_meg\)"):
        _EegOnly().check_data(facts)
    _EegOnly().check_data(DataFacts(sfreq=160.0, n_times=320, sensor_types=["eeg"]))
