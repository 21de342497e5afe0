"""MEG-GPT transformer: the acceptance checks of meg-gpt.md §11 (items 9-15) and PASSTA."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from brainfm.errors import ConfigError
from brainfm.models.meg_gpt import MEGGPT, MEGGPT_PRESETS, sample_tokens
from brainfm.models.next_token import NextTokenLoss, sequences_of
from brainfm.nn import DataFacts
from brainfm.nn.passta import PASSTA, passta_visibility


def _spec_visibility(s: int, n_out: int = 40, p: int = 4, u: int = 16) -> torch.Tensor:
    """§5.4 written out element by element (the formula, not the code under test)."""
    n_patches = s // p
    table = torch.zeros(n_out, n_patches + u, dtype=torch.bool)
    for q in range(n_out):
        t = s - n_out + q
        for i in range(n_patches):
            table[q, i] = 4 * i + 3 <= t
        for j in range(u):
            table[q, n_patches + j] = s - 16 + j <= t
    return table


def _model(**kwargs) -> MEGGPT:
    kwargs = {"n_tokens": 12, "n_channels": 6, "n_recordings": 3, "d_model": 32, "n_heads": 4, "n_layers": 2,
              "ff_dim": 32, "dropout": 0.0, **kwargs}
    return MEGGPT(**kwargs)


def _inputs(b=2, c=5, s=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(1, 12, (b, c, s), generator=g), torch.arange(c).expand(b, c) + 1,
            torch.arange(b) % 3)


@pytest.mark.parametrize("s", [80, 40])
def test_passta_visibility_matches_the_spec_formula(s):  # item 10
    assert torch.equal(passta_visibility(s, 40, 4, 16), _spec_visibility(s))


def test_rows_without_keys_give_exactly_zero():  # item 10
    visible = passta_visibility(40, 40, 4, 16)
    assert visible.any(1).tolist()[:4] == [False, False, False, True] and bool(visible[3:].any(1).all())
    layer = PASSTA(32, 4, 40, 40).eval()
    x = torch.randn(2, 3, 40, 32)
    core = layer.attention(x.reshape(6, 40, 32))  # (N, H, L, kd) before the output projection
    out = layer(x)
    assert torch.equal(core[:, :, :3], torch.zeros_like(core[:, :, :3]))
    assert torch.equal(out[:, :, :3], torch.zeros_like(out[:, :, :3]))
    assert bool(out[:, :, 3:].abs().amax(-1).gt(0).all()) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("collapse, shape", [("per_patch", (1, 4)), ("head_mixing", (4, 16))])
def test_patch_collapse_variants(collapse, shape):
    layer = PASSTA(32, 4, 80, 40, patch_collapse=collapse).eval()
    assert tuple(layer.collapse.weight.shape) == shape  # the converter's (4, 1) / (16, 4) kernels, transposed
    # a patch's keys depend only on its own 4 steps: change step 9 (patch 2) -> only that key moves
    x = torch.randn(1, 80, 32)
    changed = x.clone()
    changed[:, 9] += 1.0
    keys, moved = layer.patched_kv(layer._collapse(x)), layer.patched_kv(layer._collapse(changed))
    differs = (keys - moved).abs().amax(-1)[0] > 0
    assert differs.tolist() == [i == 2 for i in range(20)]


@pytest.mark.parametrize("collapse", ["per_patch", "head_mixing"])
def test_patch_collapse_equals_its_formula(collapse):
    """The collapse as one product over (step, head) rows equals the formula written out per element."""
    with torch.random.fork_rng(devices=[]):  # seeded here, the global state left as it was
        torch.random.manual_seed(0)
        d, h, p = 32, 4, 4
        layer = PASSTA(d, h, 16, 8, patch_length=p, n_unpatched=0, patch_collapse=collapse)
        x = torch.randn(3, 16, d)
        w, b = layer.collapse.weight.detach(), layer.collapse.bias.detach()
        kd = d // h
        expected = torch.zeros(3, 16 // p, d)
        for i in range(16 // p):
            steps = x[:, i * p:(i + 1) * p]  # (N, p, D)
            if collapse == "per_patch":  # one weight per step, shared by every feature
                expected[:, i] = (steps * w[0][None, :, None]).sum(1) + b[0]
                continue
            for o in range(h):  # output head o, key-width slice k: sum over input heads and steps
                for head in range(h):
                    for j in range(p):
                        expected[:, i, o * kd:(o + 1) * kd] += w[o, head * p + j] * steps[:, j, head * kd:(head + 1) * kd]
                expected[:, i, o * kd:(o + 1) * kd] += b[o]
        torch.testing.assert_close(layer._collapse(x), expected, rtol=1e-5, atol=1e-5)


def test_first_rerelease_layer_fuses_q_k_v_without_changing_the_result():
    """Patch length 1, no tail, every step a query: one (3D, D) product gives what the separate ones give."""
    with torch.random.fork_rng(devices=[]):  # seeded here, the global state left as it was
        torch.random.manual_seed(0)
        layer = PASSTA(32, 4, 20, 20, patch_length=1, n_unpatched=0, patch_collapse="head_mixing", band=3)
        assert layer.fused_qkv and not PASSTA(32, 4, 20, 16, patch_length=1, n_unpatched=0).fused_qkv
        x = torch.randn(6, 20, 32)
        q = layer.query(x).view(6, 20, 4, 8).transpose(1, 2)
        k, v = layer.patched_kv(x).view(6, 20, 2, 4, 8).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~layer.visible, -math.inf)
        torch.testing.assert_close(layer.attention(x), scores.softmax(-1) @ v, rtol=1e-5, atol=1e-5)


def test_shapes_and_loss_positions():  # item 9
    model = _model().eval()
    tokens, channels, recordings = _inputs(b=2, c=5, s=81)
    assert model(tokens[..., :80], channels, recordings).shape == (2, 5, 40, 12)
    objective = NextTokenLoss(n_loss=8)
    logits = model(tokens[..., :80], channels, recordings)
    # the loss reads only the last 8 positions: logits of earlier positions do not enter it
    full = torch.nn.functional.cross_entropy(logits[:, :, -8:].reshape(-1, 12), tokens[..., -8:].reshape(-1))
    batch = _batch(tokens, channels, recordings)
    torch.testing.assert_close(objective(batch, backbone=model)["loss"], full)
    assert 0 <= float(objective(batch, backbone=model)["top1"]) <= float(objective(batch, backbone=model)["top5"]) <= 1


def test_sequences_are_consecutive_runs():
    tokens = torch.arange(2 * 3 * 170).reshape(2, 3, 170)
    seq, n = sequences_of(tokens, 81)
    assert n == 2 and seq.shape == (4, 3, 81)
    assert torch.equal(seq[1], tokens[0, :, 81:162]) and torch.equal(seq[2], tokens[1, :, :81])


def test_end_to_end_causality():  # item 11
    model = _model(n_layers=3).eval()
    tokens, channels, recordings = _inputs()
    base = model(tokens, channels, recordings)
    for p in (45, 60, 79):
        changed = tokens.clone()
        changed[:, :, p] = (changed[:, :, p] % 11) + 1
        after = model(changed, channels, recordings)
        q_max = p - 40  # outputs q with 40 + q < p must not move
        assert torch.equal(base[:, :, :q_max], after[:, :, :q_max]), p
        assert not torch.equal(base[:, :, q_max:], after[:, :, q_max:]), p


def test_channel_independence_without_channel_attention():  # item 12
    model = _model().eval()
    tokens, channels, recordings = _inputs()
    changed = tokens.clone()
    changed[:, 2] = (changed[:, 2] % 11) + 1
    base, after = model(tokens, channels, recordings), model(changed, channels, recordings)
    others = [0, 1, 3, 4]
    assert torch.equal(base[:, others], after[:, others]) and not torch.equal(base[:, 2], after[:, 2])
    mixing = _model(channel_attention=True).eval()  # with channel attention, channel 2 reaches the others
    assert not torch.equal(mixing(tokens, channels, recordings)[:, 0], mixing(changed, channels, recordings)[:, 0])


def test_parameter_count_of_the_paper_configuration():  # item 14
    without = sum(p.numel() for p in MEGGPT(66, 52, 612).parameters())
    with_channel = sum(p.numel() for p in MEGGPT(66, 52, 612, channel_attention=True).parameters())
    # counted from §5: embeddings 965,600; per layer q 160,400 + kv 2 x 320,800 + out 160,400 + collapse 5
    # + 2 norms 1,600 + feed-forward 320,800; head 26,466
    assert without == 965_600 + 4 * 1_284_805 + 26_466 == 6_131_286
    assert with_channel - without == 4 * 320_800  # the inert channel projections
    # the spec's rounded figures (6.21 M / 7.49 M) lie within 1.3 % of this count (docs/meg_gpt.md)
    assert math.isclose(without, 6.21e6, rel_tol=0.013) and math.isclose(with_channel, 7.49e6, rel_tol=0.013)


def test_reference_rerelease_profile_builds():
    model = MEGGPT(66, 52, 621, recording_dim=66, **MEGGPT_PRESETS["meggpt-v0"]).eval()
    tokens = torch.randint(1, 66, (1, 52, 100))
    assert model(tokens, torch.arange(52)[None], torch.tensor([3])).shape == (1, 52, 16, 66)
    assert model.blocks[0].attention.visible.sum(1).max() == 9  # band of 8 patches + its own


def test_overfits_a_periodic_sequence():  # item 13: 1 layer, width 32, CE < 0.1 within 500 steps
    L.seed_everything(0, verbose=False)
    model = _model(n_layers=1, n_channels=2, n_recordings=1)
    period = torch.tensor([1, 4, 2, 9, 5, 3, 7])
    tokens = period[torch.arange(81 + 20) % 7]
    batch_tokens = torch.stack([tokens[i:i + 81] for i in range(20)])[:, None]  # (20, 1, 81)
    objective = NextTokenLoss(n_loss=8)
    batch = _batch(batch_tokens, torch.ones(20, 1, dtype=torch.long), torch.zeros(20, dtype=torch.long))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(500):
        loss = objective(batch, backbone=model)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1


def test_generation():  # item 15
    model = _model().eval()
    prompt, channels, recordings = _inputs(b=3, c=4)
    channels = channels[:, :4]
    kwargs = {"channel_ids": channels, "recording_ids": recordings}
    a = model.generate(prompt, 12, generator=torch.Generator().manual_seed(7), top_p=0.99, **kwargs)
    b = model.generate(prompt, 12, generator=torch.Generator().manual_seed(7), top_p=0.99, batch_size=2, **kwargs)
    c = model.generate(prompt, 12, generator=torch.Generator().manual_seed(8), top_p=0.99, **kwargs)
    assert a.shape == (3, 4, 12) and torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.min()) >= 1  # token 0 never drawn by default
    greedy = model.generate(prompt, 5, temperature=0.0, **kwargs)
    cold = model.generate(prompt, 5, temperature=1e-4, generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(greedy, cold)
    first = model(prompt, channels, recordings, last=1)[:, :, 0]
    first[..., 0] = -math.inf
    assert torch.equal(greedy[..., 0], first.argmax(-1))
    with pytest.raises(ConfigError, match="context is 80"):
        model.generate(prompt[..., :60], 3, **kwargs)
    with pytest.raises(ConfigError, match="channels"):
        model.generate(prompt, 3, channel_ids=channels[:, :3], recording_ids=recordings)


def test_sampling_filters():
    logits = torch.tensor([[5.0, 1.0, 3.0, 2.9, -1.0]])
    draws = torch.stack([sample_tokens(logits, top_k=2, generator=torch.Generator().manual_seed(i)) for i in range(50)])
    assert set(draws.flatten().tolist()) == {2, 3}  # 0 excluded, then the two best
    draws = torch.stack([sample_tokens(logits, top_p=0.45, generator=torch.Generator().manual_seed(i)) for i in range(20)])
    assert set(draws.flatten().tolist()) == {2}
    assert int(sample_tokens(logits, temperature=0.0, allow_oov=True)) == 0


def test_sizes_come_from_the_data_and_too_many_recordings_are_refused():
    facts = DataFacts(sfreq=250.0, n_times=200, vocabulary_size=9,
                      recording_types={f"r{i}": ["mag"] for i in range(4)})

    class _Tok:
        vocab_size = 17

    model = MEGGPT(d_model=32, n_heads=4, n_layers=1, ff_dim=32)
    model.check_data(facts, _Tok())
    assert (model.tokens.num_embeddings, model.channels.num_embeddings, model.recordings.num_embeddings) == (17, 9, 4)
    assert {k: model.get_config()[k] for k in ("n_tokens", "n_channels", "n_recordings")} == \
        {"n_tokens": 17, "n_channels": 9, "n_recordings": 4}
    rebuilt = MEGGPT.from_config(model.get_config())
    assert set(rebuilt.state_dict()) == set(model.state_dict())
    small = MEGGPT(17, 9, 3, d_model=32, n_heads=4, n_layers=1, ff_dim=32)
    with pytest.raises(ConfigError, match="4 recordings, more than the 3"):
        small.check_data(facts, _Tok())

    class _Other:
        vocab_size = 30

    with pytest.raises(ConfigError, match="tokenizer has 30 tokens"):
        MEGGPT(17, 9, 4, d_model=32, n_heads=4, n_layers=1, ff_dim=32).check_data(facts, _Other())
    with pytest.raises(ConfigError, match="shorter than the 81 tokens"):
        NextTokenLoss().check_data(DataFacts(sfreq=250.0, n_times=60), None, rebuilt)


def test_unseen_recordings_get_no_recording_embedding():
    model = _model()
    tokens, channels, _ = _inputs(b=2)
    model.train()
    model.embed(tokens, channels, torch.tensor([0, 0]))
    model.eval()
    seen = model.embed(tokens, channels, torch.tensor([0, 0]))
    unseen = model.embed(tokens, channels, torch.tensor([2, 2]))
    none = model.embed(tokens, channels, None)
    assert torch.equal(unseen, none) and not torch.equal(seen, none)


def _batch(tokens, channels, recordings):
    from brainfm.loading.batch import Batch

    b, c, t = tokens.shape
    batch = Batch(signal=torch.zeros(b, c, t), channel_mask=torch.ones(b, c, dtype=torch.bool),
                  sensor_pos=torch.zeros(b, c, 6), sensor_type=torch.ones(b, c, dtype=torch.long),
                  pos_mask=torch.ones(b, c, dtype=torch.bool), frame_ids=torch.zeros(b, c, dtype=torch.long),
                  channel_ids=channels, region_ids=torch.zeros(b, c, dtype=torch.long),
                  subject_ids=torch.zeros(b, dtype=torch.long), recording_ids=recordings,
                  start=torch.zeros(b, dtype=torch.long))
    batch.codes = tokens  # cached codes (as brainfm tokenize gives them)
    return batch
