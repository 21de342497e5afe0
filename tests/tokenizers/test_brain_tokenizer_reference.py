"""Reference BrainTokenizer weights load into brainfm's (brainomni.md §9 item 19).

``data/braintokenizer_reference_keys.json`` lists the names and shapes of the reference
model's ``state_dict()`` at the published size (read from OpenTSLab/BrainOmni's
``braintokenizer.model.BrainTokenizer`` built with its ``config.py`` values; names and shapes
only). The tests fill them with random tensors, as a reference-shaped dummy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from brainfm.errors import CheckpointError
from brainfm.loading.batch import Batch
from brainfm.tokenizers import BrainTokenizer, load_reference_brain_tokenizer
from brainfm.tokenizers.brain_tokenizer_reference import brain_tokenizer_state_from_reference

KEYS = Path(__file__).parent / "data" / "braintokenizer_reference_keys.json"
REFERENCE_PARAMETERS = 5_050_338  # sum(p.numel() for p in reference.parameters()) at the published size


def _reference_state(prefix: str = "") -> dict[str, torch.Tensor]:
    shapes = json.loads(KEYS.read_text())
    g = torch.Generator().manual_seed(0)
    state = {f"{prefix}{name}": torch.randn(shape, generator=g) for name, shape in shapes.items()}
    for name in state:
        if name.endswith("inited"):
            state[name] = torch.ones(1)
        if name.endswith("cluster_size"):
            state[name] = state[name].abs()
    return state


def test_reference_names_and_shapes_load_strictly_at_the_published_size():
    tokenizer = load_reference_brain_tokenizer(_reference_state())
    assert sum(p.numel() for p in tokenizer.parameters()) == REFERENCE_PARAMETERS
    assert not tokenizer.training
    assert tokenizer.get_config()["n_latents"] == 16 and tokenizer.vocab_size == 512
    # every reference tensor arrived somewhere: brainfm's state has one entry per reference
    # entry, plus one for the fused key/value projection split in two
    assert len(tokenizer.state_dict()) == len(json.loads(KEYS.read_text())) + 2


def test_values_land_where_they_belong():
    ref = _reference_state(prefix="module.")  # a DDP/DeepSpeed wrapper prefix is removed
    tokenizer = load_reference_brain_tokenizer(ref)
    own = tokenizer.state_dict()
    kv = ref["module.decoder.forwardsolution.kv.weight"]
    assert torch.equal(own["reconstruct.key.weight"], kv[:256]) and torch.equal(own["reconstruct.value.weight"], kv[256:])
    assert torch.equal(own["latent_queries"], ref["module.encoder.neuros"])
    assert torch.equal(own["compress.key.weight"], ref["module.encoder.k_proj.weight"])
    assert torch.equal(own["sensor_encoder.type_embedding.weight"], ref["module.sensor_embed.sensor_embedding_layer.weight"])
    assert torch.equal(own["quantizer.layers.3.embed"], ref["module.quantizer.rvq.layers.3._codebook.embed"])
    assert bool(own["quantizer.layers.0.initted"])
    # old-style weight norm: the effective weight is g v / |v| (norm over all but the output dimension)
    g = ref["module.encoder.seanet_encoder.model.0.conv.conv.weight_g"]
    v = ref["module.encoder.seanet_encoder.model.0.conv.conv.weight_v"]
    expected = g * v / v.flatten(1).norm(dim=1)[:, None, None]
    torch.testing.assert_close(tokenizer.encoder.model[0].conv.weight, expected)
    # transposed convolutions: the reference's convtr.convtr lands on the decoder's conv
    v_tr = ref["module.decoder.seanet_decoder.model.3.convtr.convtr.weight_v"]
    assert torch.equal(own["decoder.model.3.conv.parametrizations.weight.original1"], v_tr)


def test_the_loaded_tokenizer_encodes():
    tokenizer = load_reference_brain_tokenizer(_reference_state())
    b, c = 1, 5
    ones, zeros = torch.ones(b, c, dtype=torch.bool), torch.zeros(b, c, dtype=torch.long)
    batch = Batch(signal=torch.randn(b, c, 512), channel_mask=ones, sensor_pos=torch.randn(b, c, 6), sensor_type=zeros,
                  pos_mask=ones, frame_ids=zeros, channel_ids=zeros + 1, region_ids=zeros,
                  subject_ids=torch.zeros(b, dtype=torch.long), recording_ids=torch.zeros(b, dtype=torch.long),
                  start=torch.zeros(b, dtype=torch.long))
    with torch.no_grad():
        indices = tokenizer.encode(batch)
    assert indices.shape == (1, 16, 8, 4) and int(indices.max()) < 512


def test_files_are_read_weights_only_and_foreign_or_misshapen_weights_refused(tmp_path):
    path = tmp_path / "BrainTokenizer.pt"
    torch.save({"model": _reference_state()}, path)
    assert isinstance(load_reference_brain_tokenizer(path), BrainTokenizer)
    state = _reference_state()
    state["encoder.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"not part of the reference BrainTokenizer \(encoder.extra_head.weight\)"):
        brain_tokenizer_state_from_reference(state)
    state = _reference_state()
    state["encoder.k_proj.weight"] = torch.zeros(256, 128)
    with pytest.raises(CheckpointError, match=r"shapes differ: compress.key.weight: reference \(256, 128\)"):
        load_reference_brain_tokenizer(state)
    del state["encoder.k_proj.weight"]
    with pytest.raises(CheckpointError, match="missing compress.key.weight"):
        load_reference_brain_tokenizer(state)
    (tmp_path / "junk.pt").write_text("not weights")
    with pytest.raises(CheckpointError, match="junk.pt: cannot be read"):
        load_reference_brain_tokenizer(tmp_path / "junk.pt")
