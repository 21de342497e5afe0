"""Soft MoE routing, frozen adapters and the round-robin sampler (spec §8.4, 8.5, 8.7)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import ConcatDataset, TensorDataset

from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.sampler import RoundRobinModalitySampler
from brainfm.downstream.retrieval.shared_projection import SharedProjection, SoftMoE


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _small(n_chans: int, n_times: int, n_voxels: int | None = None) -> ModalityAdapter:
    return ModalityAdapter(
        AdapterConfig(
            n_chans=n_chans, n_times=n_times, n_voxels=n_voxels, d_model=32, n_heads=2, d_ff=32,
            temporal_kernel=5, pool_kernel=5, pool_stride=2, n_filters=8, out_dim=16,
        )
    )


def _shared(**kwargs) -> SharedProjection:
    adapters = {"eeg": _small(6, 40), "meg": _small(9, 30), "fmri": _small(2, 32, n_voxels=50)}
    return SharedProjection(adapters, SoftMoE(dim=16, n_experts=5, router_hidden=32), **kwargs)


def test_router_weights_are_non_negative_and_sum_to_one():
    moe = SoftMoE(dim=16, n_experts=5, router_hidden=32)
    weights = moe.routing(_randn(10, 16))
    assert weights.shape == (10, 5)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(10))


def test_experts_sharing_weights_give_that_experts_output():
    moe = SoftMoE(dim=16, n_experts=5, router_hidden=32)
    single = torch.nn.Linear(16, 16)
    with torch.no_grad():
        moe.experts.weight.copy_(single.weight.repeat(5, 1))
        moe.experts.bias.copy_(single.bias.repeat(5))
    x = _randn(7, 16)
    torch.testing.assert_close(moe(x), single(x))
    # and with distinct experts the output is the router-weighted mix
    moe2 = SoftMoE(dim=16, n_experts=5, router_hidden=32)
    expected = (moe2.routing(x)[:, :, None] * moe2.expert_outputs(x)).sum(1)
    torch.testing.assert_close(moe2(x), expected)


def test_stage2_gradients_reach_only_the_moe_and_the_logit_scale():
    model = _shared()
    loss_fn = ContrastiveLoss("brainflora")
    loss = loss_fn(model(_randn(4, 6, 40), "eeg"), _randn(4, 16, seed=1))
    loss.backward()
    for name, parameter in model.adapters.named_parameters():
        assert parameter.grad is None and not parameter.requires_grad, name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.moe.parameters())
    assert loss_fn.logit_scale.grad is not None
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.moe.parameters()}


def test_frozen_adapters_are_deterministic_and_unchanged_by_an_optimiser_step():
    model = _shared()
    loss_fn = ContrastiveLoss()
    optimiser = torch.optim.AdamW([*filter(lambda p: p.requires_grad, model.parameters()), loss_fn.logit_scale], lr=1e-2)
    before = {k: v.clone() for k, v in model.adapters.state_dict().items()}
    x = _randn(4, 9, 30)
    assert model.training and not model.adapters.training
    first = model.adapters["meg"](x)
    torch.testing.assert_close(model.adapters["meg"](x), first)
    moe_before = model.moe.experts.weight.clone()
    loss_fn(model(x, "meg"), _randn(4, 16, seed=2)).backward()
    optimiser.step()
    for key, value in model.adapters.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)  # BatchNorm statistics included
    assert not torch.equal(model.moe.experts.weight, moe_before)


def test_parity_flag_leaves_the_frozen_adapters_in_training_mode():
    model = _shared(frozen_adapters_train_mode=True)
    assert model.adapters.training
    x = _randn(4, 6, 40)
    assert not torch.allclose(model.adapters["eeg"](x), model.adapters["eeg"](x))  # dropout on
    model.eval()
    assert not model.adapters.training


def test_every_modality_goes_through_its_own_adapter():
    model = _shared().eval()
    out = {m: model(x, m) for m, x in [("eeg", _randn(3, 6, 40)), ("meg", _randn(3, 9, 30)), ("fmri", _randn(3, 50))]}
    assert all(v.shape == (3, 16) for v in out.values())
    with pytest.raises(KeyError, match="known: eeg, meg, fmri"):
        model(_randn(3, 6, 40), "ieeg")


def test_sampler_batches_hold_one_modality_and_cycle_round_robin():
    sizes = {"eeg": 50, "meg": 23, "fmri": 31}
    sampler = RoundRobinModalitySampler(sizes, batch_size=5, seed=3)
    batches = list(sampler)
    ranges = {"eeg": range(0, 50), "meg": range(50, 73), "fmri": range(73, 104)}
    modalities = []
    for batch in batches:
        assert len(batch) == 5
        owners = {name for name, r in ranges.items() if batch[0] in r}
        (owner,) = owners
        assert all(i in ranges[owner] for i in batch)
        modalities.append(owner)
    assert modalities == sampler.batch_modalities
    # full round-robin while all three have batches (4 for meg), then eeg and fmri alternate
    assert modalities[:12] == ["eeg", "meg", "fmri"] * 4
    assert modalities[12:16] == ["eeg", "fmri"] * 2
    assert modalities[16:] == ["eeg"] * 4
    assert len(batches) == len(sampler) == 10 + 4 + 6
    seen = sorted(i for batch in batches for i in batch)
    assert len(seen) == len(set(seen))  # no repeats within an epoch


def test_sampler_is_seeded_per_epoch_and_keeps_last_batches_when_asked():
    sampler = RoundRobinModalitySampler({"eeg": 12, "meg": 7}, batch_size=4, seed=1)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    keep = RoundRobinModalitySampler({"eeg": 12, "meg": 7}, batch_size=4, drop_last=False, shuffle=False)
    batches = list(keep)
    assert len(batches) == len(keep) == 5
    assert sorted(i for b in batches for i in b) == list(range(19))


def test_sampler_drives_a_dataloader_over_concatenated_modalities():
    datasets = [TensorDataset(torch.full((n, 1), float(k))) for k, n in enumerate((8, 6))]
    sampler = RoundRobinModalitySampler({"eeg": 8, "meg": 6}, batch_size=2, seed=0)
    loader = torch.utils.data.DataLoader(ConcatDataset(datasets), batch_sampler=sampler)
    for (values,), modality in zip(loader, ["eeg", "meg"] * 3 + ["eeg"], strict=True):
        assert values.unique().tolist() == [{"eeg": 0.0, "meg": 1.0}[modality]]


def test_stage2_training_alternates_modalities_and_trains_only_the_projection():
    from brainfm.downstream.retrieval.training import train_shared_projection

    model = _shared()
    loss = ContrastiveLoss()
    data = {
        "eeg": (_randn(24, 6, 40, seed=1), _randn(24, 16, seed=2)),
        "fmri": (_randn(16, 50, seed=3), _randn(16, 16, seed=4)),
    }
    adapters_before = {k: v.clone() for k, v in model.adapters.state_dict().items()}
    history = train_shared_projection(model, loss, data, n_epochs=15, batch_size=8, lr=1e-2)
    modalities = [m for m, _ in history]
    assert modalities[:5] == ["eeg", "fmri", "eeg", "fmri", "eeg"]
    assert len(history) == 15 * (3 + 2)
    for key, value in model.adapters.state_dict().items():
        torch.testing.assert_close(value, adapters_before[key], msg=key)
    first = [v for m, v in history[:10] if m == "eeg"]
    last = [v for m, v in history[-10:] if m == "eeg"]
    assert sum(last) / len(last) < sum(first) / len(first)  # the projection fits the targets
    with pytest.raises(KeyError, match="ieeg"):
        train_shared_projection(model, loss, {"ieeg": data["eeg"]}, n_epochs=1)
