"""Load BaRISTA checkpoints that users obtained themselves into :class:`BaristaBackbone`.

brainfm ships no BaRISTA weights (the reference code and checkpoints are licensed for
non-commercial academic use only). A user who has such a state dict loads it with
:func:`load_reference_state_dict`, which renames the reference's keys (``specs/barista.md``
§6.6) to brainfm's and loads strictly:

===========================================================================  ==========================================
reference key                                                                brainfm key
===========================================================================  ==========================================
``tokenizer.temporal_encoder.feature_extractor.net.{i}.conv1.conv.*``        ``temporal_encoder.blocks.{i}.conv1.*``
``tokenizer.temporal_encoder.feature_extractor.net.{i}.conv2.conv.*``        ``temporal_encoder.blocks.{i}.conv2.*``
``tokenizer.temporal_encoder.feature_extractor.net.{i}.projector.*``         ``temporal_encoder.blocks.{i}.projector.*``
``tokenizer.temporal_pooler.final_layer.weight`` (64 x 512)                  ``temporal_pooler.weight``
``tokenizer.spatial_encoder.subcomponent_embeddings.{k}.weight``             ``spatial_embeddings.{k}.weight``
``backbone.layers.{i}.{attention.qkv_proj, attention.o_proj, mlp.*, norm1,   ``layers.{i}.<same>``
norm2}.*``
``backbone.layers.{i}.attention.rotary_emb.inv_freq``                        (checked against brainfm's, not stored)
``backbone.norm.weight``                                                     ``norm.weight``
===========================================================================  ==========================================

The reference's convolutions are 2-D with kernel ``(1, 3)``; their weights ``(out, in, 1, k)``
become brainfm's 1-D ``(out, in, k)``. Pretraining heads (``masked_recon``,
``multi_head_fc``) are not in released checkpoints and are refused if present. The spatial
table's row meaning is the checkpoint's: rows of a parcel table index the reference's
Brain Treebank parcel enum, not brainfm's region vocabulary, so a store's region ids must be
mapped to that enum before such a table is meaningful.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from brainfm.errors import CheckpointError
from brainfm.models.barista import BaristaBackbone

__all__ = ["convert_reference_state_dict", "load_reference_state_dict"]

_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^tokenizer\.temporal_encoder\.feature_extractor\.net\.(\d+)\.(conv1|conv2)\.conv\.(weight|bias)$",
         r"temporal_encoder.blocks.\1.\2.\3"),
        (r"^tokenizer\.temporal_encoder\.feature_extractor\.net\.(\d+)\.projector\.(weight|bias)$",
         r"temporal_encoder.blocks.\1.projector.\2"),
        (r"^tokenizer\.temporal_pooler\.final_layer\.weight$", "temporal_pooler.weight"),
        (r"^tokenizer\.spatial_encoder\.subcomponent_embeddings\.(\d+)\.weight$", r"spatial_embeddings.\1.weight"),
        (r"^backbone\.layers\.(\d+)\.((?:attention\.(?:qkv_proj|o_proj)|mlp\.(?:gate_proj|up_proj|down_proj))"
         r"\.(?:weight|bias)|norm1\.weight|norm2\.weight)$", r"layers.\1.\2"),
        (r"^backbone\.norm\.weight$", "norm.weight"),
    )
)
_ROTARY = re.compile(r"^backbone\.layers\.(\d+)\.attention\.rotary_emb\.inv_freq$")


def convert_reference_state_dict(state: Mapping[str, torch.Tensor],
                                 backbone: BaristaBackbone | None = None) -> dict[str, torch.Tensor]:
    """Rename a reference state dict's keys to brainfm's (module docstring).

    Parameters
    ----------
    state : mapping of str to torch.Tensor
        The reference state dict (a ``model.`` prefix, as Lightning writes, is removed).
    backbone : BaristaBackbone | None
        When given, the checkpoint's rotary frequencies are checked against its own.

    Returns
    -------
    converted : dict of str to torch.Tensor
        brainfm keys.

    Raises
    ------
    brainfm.errors.CheckpointError
        Keys that are not BaRISTA's, listed.
    """
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        name = key.removeprefix("model.")
        rotary = _ROTARY.match(name)
        if rotary:
            if backbone is not None:
                own = backbone.layers[int(rotary[1])].attention.rope.inv_freq.reshape(-1)
                if value.numel() != own.numel() or not torch.allclose(value.reshape(-1).float(), own, rtol=1e-5):
                    raise CheckpointError(f"{key}: the checkpoint's rotary frequencies differ from brainfm's "
                                          "(base 10,000, half-split); it is not a BaRISTA checkpoint of this size.")
            continue
        for pattern, replacement in _RULES:
            if pattern.match(name):
                target = pattern.sub(replacement, name)
                if target.startswith("temporal_encoder.") and target.endswith(".weight") and value.dim() == 4:
                    value = value.squeeze(2)  # (out, in, 1, k) -> (out, in, k)
                converted[target] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} keys are not keys of a released BaRISTA encoder: {unknown[:8]}"
            f"{' ...' if len(unknown) > 8 else ''} (pretraining heads such as masked_recon and multi_head_fc are "
            "never part of one)."
        )
    return converted


def load_reference_state_dict(backbone: BaristaBackbone, state: Mapping[str, torch.Tensor]) -> BaristaBackbone:
    """Load a user-supplied reference state dict into ``backbone``, strictly.

    Parameters
    ----------
    backbone : BaristaBackbone
        Built with the checkpoint's sizes and spatial scale (``spatial_scale``, ``n_regions``).
    state : mapping of str to torch.Tensor
        The reference state dict (``torch.load(path, weights_only=True)``; a ``state_dict``
        entry is taken when present).

    Returns
    -------
    backbone : BaristaBackbone
        The same module, loaded.

    Raises
    ------
    brainfm.errors.CheckpointError
        Unknown, missing or mis-shaped tensors, listed by name.
    """
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    converted = convert_reference_state_dict(state, backbone)
    own = backbone.state_dict()
    buffers = {"region_lobes"}  # brainfm's own region -> lobe map, set from the data
    missing = sorted(k for k in own if k not in converted and k not in buffers)
    unexpected = sorted(k for k in converted if k not in own)
    shapes = sorted(f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}"
                    for k, v in converted.items() if k in own and v.shape != own[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(
            "The BaRISTA checkpoint does not fit this backbone"
            + (f"; missing: {missing[:8]}" if missing else "")
            + (f"; unexpected: {unexpected[:8]}" if unexpected else "")
            + (f"; shapes differ: {shapes[:8]}" if shapes else "")
            + ". Build the backbone with the checkpoint's spatial_scale and n_regions."
        )
    backbone.load_state_dict({**{k: own[k] for k in buffers if k in own}, **converted}, strict=True)
    return backbone
