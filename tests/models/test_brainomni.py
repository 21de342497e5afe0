"""BrainOmni stage 2 (spec brainomni.md §5, acceptance checks §9 items 13-17 and 19)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from brainfm.checkpoint import load_state_strict
from brainfm.errors import CheckpointError, ConfigError
from brainfm.loading.batch import Batch
from brainfm.models import BrainOmni, MaskedTokenObjective
from brainfm.models.brainomni_weights import from_released_state_dict, reference_rope_frequencies
from brainfm.nn import DataFacts
from brainfm.tokenizers import BrainTokenizer

SMALL_TOKENIZER = {"n_filters": 4, "dim": 32, "n_codes": 16, "n_levels": 4, "n_latents": 4, "n_heads": 4,
                   "lstm_layers": 1, "kmeans_samples": 64}


def _batch(b: int = 2, c: int = 6, t: int = 1024, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(signal=torch.randn(b, c, t, generator=g), channel_mask=torch.ones(b, c, dtype=torch.bool),
                 sensor_pos=torch.randn(b, c, 6, generator=g), sensor_type=torch.zeros(b, c, dtype=torch.long),
                 pos_mask=torch.ones(b, c, dtype=torch.bool), frame_ids=torch.zeros(b, c, dtype=torch.long),
                 channel_ids=torch.ones(b, c, dtype=torch.long), region_ids=torch.zeros(b, c, dtype=torch.long),
                 subject_ids=torch.zeros(b, dtype=torch.long), recording_ids=torch.zeros(b, dtype=torch.long),
                 start=torch.zeros(b, dtype=torch.long))


@pytest.fixture(scope="module")
def tokenizer() -> BrainTokenizer:
    """A small BrainTokenizer whose codebooks are initialised on one training pass, then frozen."""
    tok = BrainTokenizer(**SMALL_TOKENIZER)
    tok.loss(_batch(4, 6, 1024, seed=1))  # k-means initialisation of the codebooks
    return tok.eval().requires_grad_(False)


def _small(**kwargs) -> BrainOmni:
    return BrainOmni(**{"dim": 32, "n_heads": 4, "depth": 2, "token_dim": 32, "n_latents": 4, **kwargs})


@pytest.mark.parametrize("size,dim,heads,expected", [("tiny", 256, 8, 8.4e6), ("base", 512, 16, 33e6)])
def test_sizes_match_the_published_parameter_counts(size, dim, heads, expected):  # item 16
    backbone = BrainOmni(dim=dim, n_heads=heads, depth=12, token_dim=256, n_latents=16)
    objective = MaskedTokenObjective(dim=dim, n_codes=512, n_levels=4)
    count = sum(p.numel() for p in backbone.parameters()) + sum(p.numel() for p in objective.parameters())
    assert abs(count - expected) / expected < 0.015, (size, count)
    assert count == {"tiny": 8_424_704, "base": 32_707_328}[size]


def test_block_output_halves_are_spatial_then_temporal():  # item 13
    block = _small().blocks[0].eval()
    x = torch.randn(2, 4, 10, 32)
    with torch.no_grad():
        for part in (block.spatial.o_proj, block.temporal.o_proj):
            part.weight.zero_(), part.bias.zero_()
        block.spatial.o_proj.bias.fill_(1.0)  # spatial attention outputs ones, temporal zeros
        out = block.attention(x)
    assert torch.equal(out[..., :16], torch.ones(2, 4, 10, 16))
    assert torch.equal(out[..., 16:], torch.zeros(2, 4, 10, 16))


def test_temporal_attention_is_non_causal_and_spatial_mixes_latents_at_one_step_only():  # item 13
    block = _small().blocks[0].eval()
    x = torch.randn(1, 4, 10, 32)
    changed = x.clone()
    changed[0, 1, 9, :16] += 1.0  # the last step of latent 1, temporal half
    with torch.no_grad():
        delta = (block.attention(changed) - block.attention(x)).abs()
    assert delta[0, 1, 0, 16:].max() > 1e-4  # an earlier step sees a later one: not causal
    assert delta[0, [0, 2, 3], :, 16:].max() == 0  # temporal attention stays within its latent channel
    assert delta[..., :16].max() == 0  # the spatial half reads only the second half of the input
    changed = x.clone()
    changed[0, 1, 9, 16:] += 1.0  # spatial half of latent 1 at step 9
    with torch.no_grad():
        delta = (block.attention(changed) - block.attention(x)).abs()
    assert delta[0, [0, 2, 3], 9, :16].max() > 1e-4  # other latents at the same step
    assert delta[0, :, :9, :16].max() == 0  # no other step


def test_permuting_latents_with_their_embeddings_permutes_the_output(tokenizer):  # item 13
    backbone = _small().eval()
    grid = torch.randn(2, 4, 12, 32)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = backbone(grid, tokenizer)
        original = tokenizer.latent_queries.detach().clone()
        tokenizer.latent_queries.copy_(original[perm])
        try:
            permuted = backbone(grid[:, perm], tokenizer)
        finally:
            tokenizer.latent_queries.copy_(original)
    torch.testing.assert_close(permuted, out[:, perm], rtol=1e-5, atol=1e-5)


def test_rope_gives_each_head_its_own_frequency_band():  # item 14
    backbone = BrainOmni(dim=256, n_heads=8, depth=2, token_dim=256, n_latents=16)
    rope = backbone.blocks[0].temporal.rope
    head_dim = 128 // 4
    table = rope.angles(torch.arange(160))
    assert table.shape == (160, 4, head_dim // 2)
    all_freqs = 10_000.0 ** (-torch.arange(0, 128, 2, dtype=torch.float64) / 128)  # across D/2 = 128
    for h in range(4):
        band = all_freqs[h * head_dim // 2 : (h + 1) * head_dim // 2]
        torch.testing.assert_close(table[7, h].double(), 7 * band, rtol=1e-6, atol=1e-6)
    # regenerated frequencies equal those the reference stores
    torch.testing.assert_close(rope.inv_freq.flatten(), reference_rope_frequencies(256), rtol=1e-6, atol=0.0)
    assert "inv_freq" not in "".join(backbone.state_dict())  # derived, not a weight


def test_encode_shape_unit_norm_and_determinism(tokenizer):  # item 15
    backbone = _small(overlap=0.25).eval()
    batch = _batch(2, 6, 7680)  # 30 s at 256 Hz
    with torch.no_grad():
        a, b = backbone.encode(batch, tokenizer), backbone.encode(batch, tokenizer)
    assert a.shape == (2, 4, 160, 32)  # W = 160 with overlap 0.25
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2, 4, 160))
    assert torch.equal(a, b)
    assert backbone.features(batch, tokenizer).shape == (2, 4 * 160, 32) and backbone.feature_dim == 32
    # all blocks but the last: the last block's weights do not matter
    with torch.no_grad():
        backbone.blocks[-1].ff.fc2.weight.add_(1.0)
        assert torch.equal(backbone.encode(batch, tokenizer), a)
    parity = _small(overlap=0.25, eval_attn_dropout=True, dropout=0.5).eval()
    with torch.no_grad():
        assert not torch.equal(parity.encode(batch, tokenizer), parity.encode(batch, tokenizer))
    assert not parity.blocks[0].temporal.training  # the parity switch leaves the mode as it was


def test_training_dropout_is_active_only_in_training(tokenizer):
    backbone = _small(dropout=0.3)
    grid = torch.randn(1, 4, 8, 32)
    with torch.no_grad():
        backbone.train()
        assert not torch.equal(backbone(grid, tokenizer), backbone(grid, tokenizer))
        backbone.eval()
        assert torch.equal(backbone(grid, tokenizer), backbone(grid, tokenizer))


def test_objective_loss_trains_backbone_head_and_mask_token_not_the_tokenizer(tokenizer):
    backbone, objective = _small(), MaskedTokenObjective(dim=32, n_codes=16, n_levels=4)
    terms = objective(_batch(), tokenizer=tokenizer, backbone=backbone, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"loss", "acc", "acc_level0", "acc_level1", "acc_level2", "acc_level3"}
    assert abs(float(terms["loss"].detach()) - math.log(16)) < 0.5  # untrained: about uniform over the codes
    terms["loss"].backward()
    assert backbone.mask_token.grad is not None and objective.head.weight.grad is not None
    assert backbone.blocks[0].temporal.qkv_proj.weight.grad is not None
    assert all(p.grad is None for p in tokenizer.parameters())


def test_a_head_or_backbone_that_does_not_fit_is_refused(tokenizer):
    facts = DataFacts(sfreq=256.0, n_times=512, sensor_types=["eeg"], recording_types={"r": ["eeg"]})
    with pytest.raises(ConfigError, match="n_latents 4 --model.backbone.init_args.token_dim 32"):
        BrainOmni(dim=64, n_heads=4, depth=2, token_dim=256, n_latents=16).check_data(facts, tokenizer)
    with pytest.raises(ConfigError, match="set --model.objective.init_args.dim 32"):
        MaskedTokenObjective(dim=64, n_codes=16).check_data(facts, tokenizer, _small())
    with pytest.raises(ConfigError, match="n_codes 16"):
        MaskedTokenObjective(dim=32, n_codes=512).check_data(facts, tokenizer, _small())
    with pytest.raises(ConfigError, match="FrozenTokenizer"):
        _small().check_data(facts, None)
    with pytest.raises(ConfigError, match="n_heads must be even"):
        BrainOmni(dim=32, n_heads=3)


def test_channels_without_positions_are_refused_naming_the_recordings(tokenizer, caplog):
    facts = DataFacts(sfreq=256.0, n_times=512, sensor_types=["eeg"], recording_types={"a": ["eeg"], "b": ["eeg"]},
                      positioned={"a": 19, "b": 20}, unpositioned={"a": 1, "b": 0})
    with pytest.raises(ConfigError, match=r"1 recordings have good channels without one \(a \(1\)\)"):
        _small().check_data(facts, tokenizer)
    _small(on_unpositioned="warn").check_data(facts, tokenizer)
    assert "without one (a (1))" in caplog.text
    _small(on_unpositioned="ignore").check_data(facts, tokenizer)


def _released_state(dim: int, n_heads: int, depth: int, token_dim: int, n_codes: int, levels: int) -> dict:
    """A state dict with the names and shapes of the reference's ``BrainOmni`` (stage-2 part)."""
    half = dim // 2
    state = {"mask_token": torch.randn(token_dim), "predict_head.weight": torch.randn(levels * n_codes, dim),
             "predict_head.bias": torch.randn(levels * n_codes)}
    if token_dim != dim:
        state |= {"projection.weight": torch.randn(dim, token_dim), "projection.bias": torch.randn(dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        state |= {p + "pre_attn_norm.weight": torch.randn(dim), p + "pre_ff_norm.weight": torch.randn(dim),
                  p + "ff.layer.0.weight": torch.randn(4 * dim, dim), p + "ff.layer.0.bias": torch.randn(4 * dim),
                  p + "ff.layer.2.weight": torch.randn(dim, 4 * dim), p + "ff.layer.2.bias": torch.randn(dim)}
        for name in ("time_attn", "spatial_attn"):
            state |= {p + f"{name}.qkv.weight": torch.randn(3 * half, half), p + f"{name}.qkv.bias": torch.randn(3 * half),
                      p + f"{name}.proj.weight": torch.randn(half, half), p + f"{name}.proj.bias": torch.randn(half)}
        freqs = reference_rope_frequencies(dim)
        state[p + "time_attn.rope_embedding_layer.freqs"] = freqs
        angles = torch.outer(torch.arange(240).float(), freqs)
        state[p + "time_attn.rope_embedding_layer.rotate"] = torch.polar(torch.ones_like(angles), angles)
    return state


@pytest.mark.parametrize("dim,heads", [(256, 8), (512, 16)])
def test_released_key_names_load_strictly(dim, heads):  # item 19
    released = _released_state(dim, heads, 12, 256, 512, 4)
    mapped = from_released_state_dict(released)
    holder = torch.nn.Module()
    holder.backbone = BrainOmni(dim=dim, n_heads=heads, depth=12, token_dim=256, n_latents=16)
    holder.objective = MaskedTokenObjective(dim=dim, n_codes=512, n_levels=4)
    load_state_strict(holder, mapped, "released BrainOmni")
    assert torch.equal(holder.backbone.blocks[3].temporal.qkv_proj.weight, released["blocks.3.time_attn.qkv.weight"])
    assert torch.equal(holder.backbone.blocks[3].ff.fc2.bias, released["blocks.3.ff.layer.2.bias"])
    assert torch.equal(holder.objective.head.weight, released["predict_head.weight"])
    wrong = dict(released)
    wrong["blocks.0.time_attn.rope_embedding_layer.freqs"] = reference_rope_frequencies(dim, base=500.0)
    with pytest.raises(CheckpointError, match="not those of base 10000"):
        from_released_state_dict(wrong)
    with pytest.raises(CheckpointError, match="blocks.0.extra"):
        from_released_state_dict({**released, "blocks.0.extra": torch.zeros(1)})


@pytest.mark.slow
def test_a_small_model_learns_planted_temporal_structure_below_the_unigram_entropy():  # item 17
    """2 blocks of width 64 on code grids whose codes hold for 4 steps (random codewords of norm ~4 per level,
    comparable to the latent-channel embeddings)."""
    g = torch.Generator().manual_seed(0)
    n_codes, levels, n_latents, token_dim = 16, 2, 4, 32
    codebooks = 4 * torch.randn(levels, n_codes, token_dim, generator=g) / math.sqrt(token_dim)
    tokenizer = SimpleNamespace(latent_queries=torch.randn(n_latents, token_dim, generator=g))
    backbone = BrainOmni(dim=64, n_heads=4, depth=2, token_dim=token_dim, n_latents=n_latents, dropout=0.0)
    objective = MaskedTokenObjective(dim=64, n_codes=n_codes, n_levels=levels)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *objective.parameters()], lr=3e-3)

    def grids(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        codes = torch.randint(0, n_codes, (b, n_latents, 6, levels), generator=g).repeat_interleave(4, dim=2)
        features = sum(codebooks[level][codes[..., level]] for level in range(levels))  # (B, C', 24, d_tok)
        return features, codes

    _, codes = grids(512)
    frequency = torch.bincount(codes.flatten(), minlength=n_codes).float() / codes.numel()
    unigram = float(-(frequency * frequency.clamp_min(1e-12).log()).sum())  # ~ log 16
    for _ in range(300):
        loss = objective.grid_loss(*grids(8), backbone, tokenizer, generator=g)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    backbone.eval()
    with torch.no_grad():
        held_out = objective.grid_loss(*grids(64), backbone, tokenizer, generator=g)
    assert float(held_out["loss"]) < 0.85 * unigram, (float(held_out["loss"]), unigram)
    assert float(held_out["acc"]) > 0.3  # chance: 1/16
