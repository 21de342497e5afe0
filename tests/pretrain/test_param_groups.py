"""Weight-decay exemptions (BrainOmni spec §4.4: no decay on norm parameters or the type embedding)."""

from __future__ import annotations

import pytest
import torch

from brainfm.errors import ConfigError
from brainfm.pretrain.module import PretrainModule
from brainfm.pretrain.param_groups import exempt_from_decay, parameter_groups
from brainfm.tokenizers import BrainTokenizer

TINY = {"n_filters": 8, "dim": 32, "n_codes": 64, "n_levels": 2, "n_latents": 4, "n_heads": 4, "lstm_layers": 1}


def test_reference_rule_exempts_exactly_the_rmsnorm_and_the_type_embedding():
    # the reference exempts names containing "norm" and the type embedding: two tensors in BrainTokenizer
    names = exempt_from_decay(BrainTokenizer(**TINY), ["norm", "embedding"])
    assert names == {"sensor_encoder.norm.weight", "sensor_encoder.type_embedding.weight"}


def test_bias_category_and_patterns():
    tokenizer = BrainTokenizer(**TINY)
    names = exempt_from_decay(tokenizer, ["bias", "latent_queries"])
    biases = {n for n, _ in tokenizer.named_parameters() if n.endswith(".bias")}
    assert biases and names == biases | {"latent_queries"}
    # weight-normalised convolutions keep their magnitude/direction out of the bias category
    assert not any("parametrizations" in n for n in names)
    with pytest.raises(ConfigError, match="'decoder.hed.\\*' is neither a category"):
        exempt_from_decay(tokenizer, ["decoder.hed.*"])


def test_groups_partition_the_trainable_parameters_and_the_optimiser_obeys_them():
    tokenizer = BrainTokenizer(**TINY)
    groups = parameter_groups(tokenizer, ["norm", "embedding"])
    all_ids = {id(p) for p in tokenizer.parameters() if p.requires_grad}
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == all_ids
    assert "weight_decay" not in groups[0] and groups[1]["weight_decay"] == 0.0
    optimizer = torch.optim.AdamW(groups, lr=0.0, weight_decay=0.5)
    # with lr 0 nothing moves; with lr > 0 and zero gradients only decoupled decay moves weights
    for g in optimizer.param_groups:
        g["lr"] = 0.1
    before = {n: p.detach().clone() for n, p in tokenizer.named_parameters()}
    for p in tokenizer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = dict(tokenizer.named_parameters())
    assert torch.equal(after["sensor_encoder.norm.weight"], before["sensor_encoder.norm.weight"])
    assert torch.equal(after["sensor_encoder.type_embedding.weight"], before["sensor_encoder.type_embedding.weight"])
    assert not torch.equal(after["compress.key.weight"], before["compress.key.weight"])


def test_the_engine_builds_two_groups_from_the_recipe_setting():
    module = PretrainModule(BrainTokenizer(**TINY), optimizer=lambda p: torch.optim.AdamW(p, weight_decay=0.01),
                            no_weight_decay=["norm", "embedding"])
    optimizer = module.configure_optimizers()
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert len(optimizer.param_groups[1]["params"]) == 2
    plain = PretrainModule(BrainTokenizer(**TINY), optimizer=lambda p: torch.optim.AdamW(p, weight_decay=0.01))
    assert len(plain.configure_optimizers().param_groups) == 1
    with pytest.raises(ConfigError, match="nothing_like_this"):
        PretrainModule(BrainTokenizer(**TINY), no_weight_decay=["nothing_like_this"])


def _recipe_rules(size: str) -> list[str]:
    """``model.no_weight_decay`` of the shipped BrainOmni recipe with a size preset (the preset wins)."""
    import yaml

    from brainfm.pretrain.cli import recipe_path

    rules: list[str] = []
    for path in (recipe_path("brainomni"), recipe_path("brainomni", size)):
        rules = (yaml.safe_load(path.read_text()).get("model") or {}).get("no_weight_decay", rules)
    return rules


@pytest.mark.parametrize(("size", "dim", "n_heads"), [("tiny", 256, 8), ("base", 512, 16)])
def test_brainomni_recipe_exempts_norms_the_mask_token_and_the_projection(size, dim, n_heads):
    """Spec §5.7: no decay on norms, input projection and mask token; the head decays (§8 #8)."""
    from brainfm.models import BrainOmni, MaskedTokenObjective

    rules = _recipe_rules(size)
    module = PretrainModule(backbone=BrainOmni(dim=dim, n_heads=n_heads, depth=2), objective=MaskedTokenObjective(dim=dim),
                            optimizer=lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.5), no_weight_decay=rules)
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    expected = {n for n in names if "_norm." in n} | {"backbone.mask_token"}
    if size == "base":  # token width 256 -> 512: the projection exists
        expected |= {"backbone.projection.weight", "backbone.projection.bias"}
    assert len([n for n in expected if "_norm." in n]) == 2 * 2  # two RMSNorms per block
    assert exempt_from_decay(module, rules) == expected
    # with zero gradients only the decoupled decay moves a weight: exempt ones stay, the others shrink
    optimizer = module.configure_optimizers()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for n, p in module.named_parameters():
        if n in expected:
            assert torch.equal(p, before[n]), n
        elif before[n].abs().sum() > 0:  # zero-initialised biases stay zero either way
            assert (p.abs() < before[n].abs()).any(), n
    assert "objective.head.weight" not in expected and "backbone.blocks.0.temporal.qkv_proj.bias" not in expected
