"""BaRISTA's acceptance checks (specs/barista.md §12 items 1 and 5-13) on the model and objective."""

from __future__ import annotations

import math

import pytest
import torch

from brainfm.errors import CheckpointError, ConfigError
from brainfm.loading.batch import Batch
from brainfm.models import BaristaBackbone, BaristaReadout, MaskedLatentObjective
from brainfm.models.barista import DilatedConvEncoder
from brainfm.models.barista_keys import load_reference_state_dict
from brainfm.models.barista_objective import draw_unit_mask, masked_mse
from brainfm.nn.data_facts import DataFacts

T = 6144  # a 3-s segment at 2048 Hz


def make_batch(b: int = 2, c: int = 5, t: int = T, *, regions: list[int] | None = None, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    region_ids = torch.tensor(regions if regions is not None else [2 + k % 3 for k in range(c)]).expand(b, c).clone()
    pos = torch.zeros(b, c, 6)
    pos[..., :3] = torch.randn(b, c, 3, generator=g) * 0.03
    return Batch(
        signal=torch.randn(b, c, t, generator=g), channel_mask=torch.ones(b, c, dtype=torch.bool), sensor_pos=pos,
        sensor_type=torch.full((b, c), 3), pos_mask=torch.ones(b, c, dtype=torch.bool),
        frame_ids=torch.full((b, c), 2), channel_ids=torch.arange(c).expand(b, c) + 2, region_ids=region_ids,
        subject_ids=torch.zeros(b, dtype=torch.long), recording_ids=torch.zeros(b, dtype=torch.long),
        start=torch.zeros(b, dtype=torch.long),
    )


def tiny(**kwargs) -> BaristaBackbone:
    with torch.random.fork_rng(devices=[]):  # a reproducible init, the global RNG left as it was
        torch.random.manual_seed(0)
        return BaristaBackbone(**{"n_layers": 2, "n_regions": 8, "dropout": 0.0, **kwargs}).eval()


def test_token_count_and_time_major_order():  # §12 item 1
    model, batch = tiny(), make_batch(c=5)
    features = model.features(batch)
    assert features.shape == (2, 12 * 5, 64) and model.feature_dim == 64
    latents, _, positions, _ = model.tokenize(batch)
    assert positions.tolist() == [t for t in range(12) for _ in range(5)]
    # token t*C + c is patch t of channel c
    channel_2_patch_7 = batch.signal[:, 2, 7 * 512 : 8 * 512]
    single = model.temporal_pooler(model.temporal_encoder(channel_2_patch_7[:, None]).squeeze(1))
    torch.testing.assert_close(latents[:, 7 * 5 + 2], single, atol=1e-5, rtol=1e-5)


def test_temporal_encoder_receptive_field_and_length():  # §12 item 5
    encoder = DilatedConvEncoder(time_norm=False)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.Conv1d):
                module.weight.abs_()  # positive weights: no cancellation hides an input
                module.bias.fill_(1.0)  # GELU in its near-linear range
    assert encoder.receptive_field == 125
    x = torch.zeros(1, 1, 512, requires_grad=True)
    out = encoder(x)
    assert out.shape == (1, 1, 512)
    out[0, 0, 256].backward()
    seen = torch.nonzero(x.grad[0, 0]).flatten()
    assert (seen.min().item(), seen.max().item()) == (256 - 62, 256 + 62) and len(seen) == 125
    assert DilatedConvEncoder()(torch.randn(3, 1, 512)).shape == (3, 1, 512)


def test_spatial_embeddings():  # §12 item 6
    batch = make_batch(c=4, regions=[0, 2, 2, 3])
    parcels = tiny(spatial_scale="parcels")
    spatial = parcels.tokenize(batch)[1].view(2, 12, 4, 64)
    assert torch.equal(spatial, spatial[:, :1].expand_as(spatial))  # identical across the 12 steps
    assert torch.equal(spatial[0, 0, 0], torch.zeros(64))  # id 0 -> zero vector
    assert torch.equal(spatial[0, 0, 1], spatial[0, 0, 2]) and not torch.equal(spatial[0, 0, 1], spatial[0, 0, 3])
    lobes = tiny(spatial_scale="lobes")
    lobes.check_data(_facts(regions=["<pad>", "<unk>", "Left-Hippocampus", "ctx_rh_G_front_middle",
                                     "shaft:LA/0"]), None)
    assert lobes.region_lobes[:5].tolist() == [0, 0, 3, 6, 0]
    lobe_batch = make_batch(c=3, regions=[2, 3, 4])
    got = lobes.spatial(lobe_batch)[0]
    torch.testing.assert_close(got[0], lobes.spatial_embeddings[0].weight[3])
    assert torch.equal(got[2], torch.zeros(64))  # a shaft region has no lobe
    coords = tiny(spatial_scale="coords")
    ids = coords.spatial_ids(batch)
    expected = sum(coords.spatial_embeddings[k](ids[k][0, 1]) for k in range(3))
    torch.testing.assert_close(coords.spatial(batch)[0, 1], expected)
    assert ids[0][0, 1].item() == round(batch.sensor_pos[0, 1, 0].item() * 1000 + 100)


def test_rope_position_is_the_patch_and_channels_are_equivariant():  # §12 item 7
    model, batch = tiny(spatial_scale="coords"), make_batch(b=1, c=5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = Batch(**{**batch.to_dict(), "signal": batch.signal[:, perm], "sensor_pos": batch.sensor_pos[:, perm],
                        "region_ids": batch.region_ids[:, perm]})
    out = model.features(batch).view(1, 12, 5, 64)
    out_perm = model.features(permuted).view(1, 12, 5, 64)
    torch.testing.assert_close(out_perm, out[:, :, perm], atol=1e-5, rtol=1e-5)
    # all tokens of a patch share a rotation: rotating a query/key by its position gives equal results per patch
    rope = model.layers[0].attention.rope
    q = torch.randn(1, 1, 1, 16).expand(1, 1, 5, 16)
    rotated = rope(q, torch.full((5,), 7))
    assert torch.equal(rotated, rotated[:, :, :1].expand_as(rotated))


def test_windows_and_padding_never_mix():  # §12 item 8
    model = tiny()
    batch = make_batch(b=2, c=5)
    batch.channel_mask[0, 4] = False  # window 0 has 4 channels and one padding channel
    batch.signal[0, 4] = 0.0
    reference = model.features(batch)
    other = Batch(**batch.to_dict())
    other.signal = batch.signal.clone()
    other.signal[1] = torch.randn(5, T)  # perturb window 2
    other.signal[0, 4] = 100.0  # and window 1's padding channel
    changed = model.features(other)
    torch.testing.assert_close(changed[0], reference[0])
    assert not torch.allclose(changed[1], reference[1])
    assert torch.equal(changed[0].view(12, 5, 64)[:, 4], torch.zeros(12, 64))


@pytest.mark.parametrize(("scale", "count"), [("parcels", 839_144), ("coords", 869_800), ("lobes", 832_744)])
def test_parameter_counts(scale, count):  # §12 item 9
    model = BaristaBackbone(spatial_scale=scale)
    assert sum(p.numel() for p in model.parameters()) == count


def _reference_state(scale: str) -> dict[str, torch.Tensor]:
    """A synthetic state dict with the released checkpoints' names and shapes (spec §6.6)."""
    g = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    channels = [1, 5, 5, 5, 5, 1]
    for i in range(5):
        prefix = f"tokenizer.temporal_encoder.feature_extractor.net.{i}"
        c_in, c_out = channels[i], channels[i + 1]
        state[f"{prefix}.conv1.conv.weight"] = torch.randn(c_out, c_in, 1, 3, generator=g)
        state[f"{prefix}.conv1.conv.bias"] = torch.randn(c_out, generator=g)
        state[f"{prefix}.conv2.conv.weight"] = torch.randn(c_out, c_out, 1, 3, generator=g)
        state[f"{prefix}.conv2.conv.bias"] = torch.randn(c_out, generator=g)
        if i in (0, 4):
            state[f"{prefix}.projector.weight"] = torch.randn(c_out, c_in, 1, 1, generator=g)
            state[f"{prefix}.projector.bias"] = torch.randn(c_out, generator=g)
    state["tokenizer.temporal_pooler.final_layer.weight"] = torch.randn(64, 512, generator=g)
    tables = {"parcels": [121], "coords": [200, 200, 200], "lobes": [21]}[scale]
    for k, rows in enumerate(tables):
        state[f"tokenizer.spatial_encoder.subcomponent_embeddings.{k}.weight"] = torch.randn(rows, 64, generator=g)
    inv_freq = 10_000 ** (-torch.arange(0, 16, 2).float() / 16)
    for i in range(12):
        p = f"backbone.layers.{i}"
        for name, shape in (("attention.qkv_proj", (192, 64)), ("attention.o_proj", (64, 64)),
                            ("mlp.gate_proj", (256, 64)), ("mlp.up_proj", (256, 64)), ("mlp.down_proj", (64, 256))):
            state[f"{p}.{name}.weight"] = torch.randn(*shape, generator=g)
            state[f"{p}.{name}.bias"] = torch.randn(shape[0], generator=g)
        state[f"{p}.attention.rotary_emb.inv_freq"] = inv_freq.clone()
        state[f"{p}.norm1.weight"] = torch.randn(64, generator=g)
        state[f"{p}.norm2.weight"] = torch.randn(64, generator=g)
    state["backbone.norm.weight"] = torch.randn(64, generator=g)
    return state


@pytest.mark.parametrize("scale", ["parcels", "coords", "lobes"])
def test_key_map_loads_a_reference_state_dict_strictly(scale):  # §12 item 10
    state = _reference_state(scale)
    model = load_reference_state_dict(BaristaBackbone(spatial_scale=scale), state)
    assert torch.equal(model.temporal_encoder.blocks[0].conv1.weight, state[
        "tokenizer.temporal_encoder.feature_extractor.net.0.conv1.conv.weight"].squeeze(2))
    assert torch.equal(model.layers[11].mlp.down_proj.bias, state["backbone.layers.11.mlp.down_proj.bias"])
    assert torch.equal(model.spatial_embeddings[0].weight,
                       state["tokenizer.spatial_encoder.subcomponent_embeddings.0.weight"])


def test_key_map_refuses_heads_missing_and_misshaped_tensors():
    state = _reference_state("parcels")
    with pytest.raises(CheckpointError, match="masked_recon"):
        load_reference_state_dict(BaristaBackbone(), {**state, "masked_recon.weight": torch.zeros(512, 64)})
    with pytest.raises(CheckpointError, match=r"missing: \['norm.weight'\]"):
        load_reference_state_dict(BaristaBackbone(), {k: v for k, v in state.items() if k != "backbone.norm.weight"})
    with pytest.raises(CheckpointError, match=r"spatial_embeddings.0.weight: checkpoint \(121, 64\), model \(200, 64\)"):
        load_reference_state_dict(BaristaBackbone(n_regions=200), state)
    bad = {**state, "backbone.layers.0.attention.rotary_emb.inv_freq": torch.ones(8)}
    with pytest.raises(CheckpointError, match="rotary frequencies"):
        load_reference_state_dict(BaristaBackbone(), bad)


def test_masking_units():  # §12 item 11
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(64, 10, dtype=torch.bool)
    valid[:, 9] = False
    channels = torch.arange(10).expand(64, 10)
    masked = draw_unit_mask(channels, valid, 0.5, g)
    fraction = masked.sum(1) / valid.sum(1)
    assert (fraction >= 0.5).all() and (fraction < 1).all() and not masked[:, 9].any()
    regions = torch.tensor([2, 2, 2, 3, 3, 4, 4, 4, 5, 5]).expand(64, 10)
    masked = draw_unit_mask(regions, valid, 0.5, g)
    for region in (2, 3, 4):
        rows = (regions[0] == region) & valid[0]
        block = masked[:, rows]
        assert (block.all(1) | ~block.any(1)).all()  # a region is masked whole or not at all
    fraction = masked.sum(1) / valid.sum(1)
    assert (fraction >= 0.5).all() and (fraction < 1).all()
    # through the objective: every masked channel is masked at all 12 patches
    objective = MaskedLatentObjective(mask_unit="region")
    batch = make_batch(b=3, c=6, regions=[2, 2, 3, 3, 0, 4])
    units = objective.units(batch)
    assert units[0, 0] == units[0, 1] and units[0, 4] not in (units[0, :4].tolist() + [units[0, 5].item()])


def test_loss_locality_and_stop_gradient(monkeypatch):  # §12 item 12
    g = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(2, 24, 64, generator=g), torch.randn(2, 24, 64, generator=g)
    masked = torch.rand(2, 24, generator=g) < 0.5
    changed = prediction.clone()
    changed[~masked] += 10.0
    assert masked_mse(prediction, target, masked) == masked_mse(changed, target, masked)
    seen = []
    original = masked_mse

    def spy(pred, tgt, mask):
        seen.append(tgt.requires_grad)
        return original(pred, tgt, mask)

    monkeypatch.setattr("brainfm.models.barista_objective.masked_mse", spy)
    model, objective = tiny(), MaskedLatentObjective()
    model.train()
    losses = objective(make_batch(), backbone=model)
    assert seen[:2] == [False, False]  # latent target detached; raw patches are data
    losses["loss"].backward()
    assert model.temporal_encoder.blocks[0].conv1.weight.grad is not None
    assert 0.5 <= losses["masked_fraction"].item() < 1


def _facts(**kwargs) -> DataFacts:
    base = {"sfreq": 2048.0, "n_times": T, "n_channels": 5, "n_regions": 5, "sensor_types": ["seeg"],
            "recording_types": {"r1": ["seeg"], "r2": ["seeg"]}, "positioned": {"r1": 5, "r2": 5},
            "regioned": {"r1": 5, "r2": 5}}
    return DataFacts(**{**base, **kwargs})


def test_data_that_does_not_fit_is_refused_naming_recordings():
    model = tiny()
    with pytest.raises(ConfigError, match="2048 Hz.*512 Hz.*'barista' recipe"):
        model.check_data(_facts(sfreq=512.0), None)
    with pytest.raises(ConfigError, match=r"recordings have none: \['eeg1'\]"):
        model.check_data(_facts(recording_types={"r1": ["seeg"], "eeg1": ["eeg"]}), None)
    with pytest.raises(ConfigError, match="n_regions 40"):
        model.check_data(_facts(n_regions=40), None)
    with pytest.raises(ConfigError, match=r"iEEG recordings have none: \['r2'\]"):
        MaskedLatentObjective(mask_unit="region").check_data(_facts(regioned={"r1": 5, "r2": 0}), None, model)
    MaskedLatentObjective(mask_unit="channel").check_data(_facts(regioned={"r1": 5, "r2": 0}), None, tiny(
        spatial_scale="coords"))
    with pytest.raises(ConfigError, match=r"positions; these recordings have none: \['r1'\]"):
        tiny(spatial_scale="coords").check_data(_facts(positioned={"r1": 0, "r2": 3}), None)


def test_readout_heads():
    features = torch.randn(3, 60, 64)
    weighted = BaristaReadout("weighted", n_classes=2, n_tokens=60)
    assert weighted(features).shape == (3, 2)
    with pytest.raises(ValueError, match="built for 60 tokens"):
        weighted(torch.randn(3, 48, 64))
    mean = BaristaReadout("mean", n_classes=3)
    valid = torch.ones(3, 60, dtype=torch.bool)
    valid[:, 48:] = False
    torch.testing.assert_close(mean(features, valid), mean(features[:, :48]))  # padding ignored
    with pytest.raises(ConfigError, match="needs n_tokens"):
        BaristaReadout("weighted")


def _synthetic_regions(n: int, g: torch.Generator, n_times: int = 4 * 512) -> Batch:
    """Windows of 8 channels in 2 regions: a shared region oscillation plus noise, z-scored per window."""
    batch = make_batch(b=n, c=8, t=n_times, regions=[2, 2, 2, 2, 3, 3, 3, 3])
    t = torch.arange(n_times) / 2048.0
    freq = torch.rand(n, 2, 1, generator=g) * 20 + 4
    phase = torch.rand(n, 2, 1, generator=g) * 2 * math.pi
    region = torch.sin(2 * math.pi * freq * t + phase)  # (n, 2, T)
    signal = region.repeat_interleave(4, dim=1) + 0.3 * torch.randn(n, 8, n_times, generator=g)
    batch.signal = (signal - signal.mean(-1, keepdim=True)) / signal.std(-1, keepdim=True)
    return batch


@pytest.mark.slow
def test_pretraining_reduces_the_masked_loss_without_collapse():  # §12 item 13
    """300 steps on 1-s windows (4 patches) of 2 windows each, to keep the CPU cost near half a minute."""
    g = torch.Generator().manual_seed(1)
    losses = []
    with torch.random.fork_rng(devices=[]):  # init and mask draws reproducible, the global RNG left as it was
        torch.random.manual_seed(0)
        model, objective = BaristaBackbone(n_layers=2, n_regions=8), MaskedLatentObjective()
        optimizer = torch.optim.AdamW([*model.parameters(), *objective.parameters()], lr=1e-3)
        for _ in range(300):
            out = objective(_synthetic_regions(2, g), backbone=model)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
            losses.append(out["loss"].item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last <= 0.7 * first, (first, last)
    with torch.no_grad():
        latents = model.tokenize(_synthetic_regions(8, g))[0]
    assert latents.reshape(-1, 64).std(0).min() > 0.1


def test_ema_teacher_target_copies_then_follows_the_student():
    """``target: ema_teacher``: the teacher starts as the student's patch encoder and pooler, then moves
    by EMA (decay d: teacher <- d * teacher + (1 - d) * student) at each training forward, never by
    gradient; in eval mode it stays put."""
    model = tiny()
    objective = MaskedLatentObjective(target="ema_teacher", ema_decay=0.9)
    assert not any(p.requires_grad for p in objective.teacher_encoder.parameters())
    objective.check_data(_facts(), None, model)
    batch = make_batch()
    # untouched student: the EMA target equals the stop-gradient target
    with torch.no_grad():
        latents = model.tokenize(batch)[0]
    torch.testing.assert_close(objective.targets(latents, batch, model), latents)
    assert bool(objective.teacher_ready)
    student = model.temporal_pooler.weight
    before = objective.teacher_pooler.weight.clone()
    with torch.no_grad():
        student.add_(1.0)
    objective.eval()
    objective.targets(latents, batch, model)
    assert torch.equal(objective.teacher_pooler.weight, before)  # eval: no update
    objective.train()
    model.train()
    losses = objective(batch, backbone=model)
    torch.testing.assert_close(objective.teacher_pooler.weight, 0.9 * before + 0.1 * student.detach())
    losses["loss"].backward()
    assert objective.teacher_pooler.weight.grad is None and student.grad is not None
    # the teacher is state: it travels in the state dict (exact resume)
    assert {"teacher_ready", "teacher_pooler.weight"} <= set(objective.state_dict())
    with pytest.raises(ConfigError, match="encoder_channels"):
        objective.check_data(_facts(), None, tiny(encoder_channels=[1, 4, 1]))
    with pytest.raises(ConfigError, match="'target' parameter.*'ema_teacher'"):
        MaskedLatentObjective(target="teacher")


def test_token_normalised_target_is_scale_free():
    """``target_norm: token``: each target token has mean 0 and variance 1 over its features, so the
    latent loss and its trivial predictor do not change when the encoder's output scale does."""
    model, batch = tiny(), make_batch()
    objective = MaskedLatentObjective(target_norm="token")
    with torch.no_grad():
        latents = model.tokenize(batch)[0]
        target = objective.targets(latents, batch, model)
        torch.testing.assert_close(target.mean(-1), torch.zeros(target.shape[:2]), atol=1e-5, rtol=0)
        torch.testing.assert_close(target.var(-1, unbiased=False), torch.ones(target.shape[:2]), atol=1e-3, rtol=0)
        torch.testing.assert_close(objective.targets(8.0 * latents, batch, model), target, atol=1e-5, rtol=1e-5)
        with torch.random.fork_rng(devices=[]):
            torch.random.manual_seed(5)
            first = objective(batch, backbone=model)
        model.temporal_pooler.weight.mul_(8.0)
        with torch.random.fork_rng(devices=[]):
            torch.random.manual_seed(5)
            scaled = objective(batch, backbone=model)
    torch.testing.assert_close(scaled["latent_baseline"], first["latent_baseline"], atol=1e-5, rtol=1e-4)
    assert 0 < float(first["latent_baseline"]) < 1.0  # the mean target explains part of unit variance
    with pytest.raises(ConfigError, match="'target_norm' parameter"):
        MaskedLatentObjective(target_norm="batch")


def test_predict_gives_the_tokens_the_loss_is_computed_from():
    """``predict`` returns what ``forward`` scores (same masks): the loss terms, the batch-fitted trivial
    predictor and the per-feature target spread can be recomputed from it."""
    model, batch = tiny(), make_batch(c=6)
    objective = MaskedLatentObjective().eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(3)
        out = objective.predict(batch, model)
        torch.random.manual_seed(3)
        losses = objective(batch, backbone=model)
    masked, target = out["masked"], out["target"]
    assert out["latent_prediction"].shape == target.shape == (2, 12 * 6, 64)
    assert out["raw_prediction"].shape == out["raw_target"].shape == (2, 12 * 6, 512)
    torch.testing.assert_close(losses["latent"], masked_mse(out["latent_prediction"], target, masked))
    torch.testing.assert_close(losses["raw"], masked_mse(out["raw_prediction"], out["raw_target"], masked))
    chosen = target[masked]  # (n_masked, 64)
    torch.testing.assert_close(losses["latent_baseline"], chosen.var(0, unbiased=False).mean())
    torch.testing.assert_close(losses["target_std"], chosen.std(0, unbiased=False).mean())
    # the raw target of token t*C + c is patch t of channel c
    torch.testing.assert_close(out["raw_target"][:, 7 * 6 + 2], batch.signal[:, 2, 7 * 512 : 8 * 512])


def test_ema_decay_one_keeps_the_initial_encoder_as_a_fixed_target():
    model, batch = tiny(), make_batch()
    objective = MaskedLatentObjective(target="ema_teacher", ema_decay=1.0)
    optimizer = torch.optim.SGD([*model.parameters(), *objective.parameters()], lr=0.1)
    with torch.no_grad():
        first = objective.targets(model.tokenize(batch)[0], batch, model)
    for _ in range(2):
        optimizer.zero_grad()
        objective(batch, backbone=model)["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        latents = model.tokenize(batch)[0]
        assert not torch.allclose(latents, first)  # the student moved
        torch.testing.assert_close(objective.targets(latents, batch, model), first)  # the target did not
    with pytest.raises(ConfigError, match=r"'ema_decay' parameter: must lie in \[0, 1\]"):
        MaskedLatentObjective(target="ema_teacher", ema_decay=1.5)
