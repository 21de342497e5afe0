"""Modality adapters: shapes, token counts, cross-channel tokens, fMRI padding (spec §8.1-8.3, 8.10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter, zero_pad_voxels
from brainfm.downstream.retrieval.medformer import Medformer, n_tokens


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "shape", "tokens"),
    [("eeg", (2, 63, 250), 221), ("meg", (2, 271, 201), 178), ("fmri", (2, 7000), 899)],
)
def test_reference_adapters_map_inputs_to_1024(preset, shape, tokens):
    adapter = ModalityAdapter(preset)
    assert adapter.medformer.n_outputs == tokens
    assert adapter.config.embedding_dim == 1440  # TSConv: 36 positions x 40 filters
    with torch.no_grad():
        adapter.eval()
        out = adapter(_randn(*shape))
        adapter.train()
        out_train = adapter(_randn(*shape))
    assert out.shape == (2, 1024) and out_train.shape == (2, 1024)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("n_chans", "n_times", "counts"),
    [(63, 250, (126, 63, 32)), (271, 201, (101, 51, 26)), (8, 1024, (513, 257, 129))],
)
def test_medformer_token_counts(n_chans, n_times, counts):
    assert tuple(n_tokens(n_times, p) for p in (2, 4, 8)) == counts
    medformer = Medformer(n_chans, n_times, d_model=16, n_heads=2, d_ff=16).eval()
    tokens = medformer.embedding(_randn(1, n_chans, n_times))
    assert tuple(t.shape[1] for t in tokens) == counts
    assert medformer.n_outputs == sum(counts)
    with torch.no_grad():
        assert medformer(_randn(1, n_chans, n_times)).shape == (1, sum(counts), 16)


def test_tsconv_flattens_to_1440_for_the_reference_width():
    config = AdapterConfig(n_chans=63, n_times=250)
    assert (config.tsconv_width, config.embedding_dim) == (36, 1440)


@pytest.mark.parametrize("patch_len", [2, 4, 8])
def test_a_token_spans_all_channels_for_its_own_samples_only(patch_len):
    # Before attention: perturbing one channel within samples [p j, p (j + 1)) changes token j
    # of granularity p, whichever channel it is, and no other token of that granularity.
    n_chans, n_times = 5, 40
    medformer = Medformer(n_chans, n_times, d_model=8, n_heads=2, d_ff=8).eval()
    granularity = medformer.patch_lens.index(patch_len)
    x = _randn(1, n_chans, n_times)
    with torch.no_grad():
        base = medformer.embedding(x)[granularity]
        for channel in (0, n_chans - 1):
            for token in (0, 3, n_times // patch_len - 2):
                changed = x.clone()
                changed[0, channel, patch_len * token : patch_len * (token + 1)] += 1.0
                diff = (medformer.embedding(changed)[granularity] - base).abs().sum(-1)[0]
                assert diff[token] > 1e-4, (channel, token)
                others = torch.cat([diff[:token], diff[token + 1 :]])
                assert torch.all(others == 0), (channel, token)
        # The right padding replicates the last sample: changing it also changes the padding token.
        changed = x.clone()
        changed[0, 2, -1] += 1.0
        diff = (medformer.embedding(changed)[granularity] - base).abs().sum(-1)[0]
        assert torch.nonzero(diff).flatten().tolist() == [n_times // patch_len - 1, n_times // patch_len]


def test_training_augmentations_change_the_output_and_evaluation_is_deterministic():
    adapter = ModalityAdapter(AdapterConfig(n_chans=4, n_times=32, d_model=32, temporal_kernel=5, pool_kernel=5, pool_stride=2, out_dim=16))
    x = _randn(3, 4, 32)
    adapter.eval()
    with torch.no_grad():
        torch.testing.assert_close(adapter(x), adapter(x))
        adapter.train()
        assert not torch.allclose(adapter(x), adapter(x))


def test_wrong_input_shape_names_the_expected_shape():
    adapter = ModalityAdapter(AdapterConfig(n_chans=4, n_times=32, d_model=32, temporal_kernel=5, pool_kernel=5, pool_stride=2, out_dim=16))
    with pytest.raises(ValueError, match=r"\(batch, 4, 32\)"):
        adapter(torch.zeros(2, 5, 32))
    fmri = ModalityAdapter(AdapterConfig(n_chans=2, n_times=32, n_voxels=50, d_model=32, temporal_kernel=5, pool_kernel=5, pool_stride=2, out_dim=16))
    with pytest.raises(ValueError, match="zero_pad_voxels"):
        fmri(torch.zeros(2, 40))
    assert fmri.eval()(zero_pad_voxels(torch.ones(2, 40), 50)).shape == (2, 16)


def test_narrow_adapter_with_reference_kernels_is_refused():
    with pytest.raises(ValueError, match="lower temporal_kernel or pool_kernel"):
        AdapterConfig(n_chans=4, n_times=32, d_model=32)


def test_short_fmri_vectors_are_zero_padded_at_the_end():
    betas = np.arange(1, 6037, dtype=np.float32)[None]  # subject 1 of THINGS-fMRI: 6,036 voxels
    padded = zero_pad_voxels(betas)
    assert padded.shape == (1, 7000)
    np.testing.assert_array_equal(padded[0, :6036], betas[0])
    assert not padded[0, 6036:].any()
    tensor = zero_pad_voxels(torch.from_numpy(betas))
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_array_equal(tensor.numpy(), padded)
    with pytest.raises(ValueError, match="more than n_voxels=7000"):
        zero_pad_voxels(np.zeros((1, 7001)))
