"""Released BrainOmni stage-2 weights -> brainfm names (spec ``brainomni.md`` §5.5, §5.6, §9 item 19).

The reference saves one state dict for the whole model: ``tokenizer.*`` (the BrainTokenizer),
``mask_token``, ``projection.*`` (base only), ``blocks.<i>.*`` and ``predict_head.*``. This
module renames the stage-2 part for :class:`~brainfm.models.brainomni.BrainOmni` (prefix
``backbone.``) and :class:`~brainfm.models.masked_token.MaskedTokenObjective` (``objective.``).
The temporal attention's RoPE buffers are not weights: the stored frequencies ``freqs`` are
checked against the ones brainfm regenerates (base 10,000) and dropped, and the complex
rotation cache ``rotate`` (lost by some exports) is regenerated on the fly. The tokenizer's
keys are returned unchanged under ``tokenizer.``, for the BrainTokenizer's own map.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from brainfm.errors import CheckpointError

__all__ = ["from_released_state_dict", "reference_rope_frequencies"]

# reference name inside a block -> brainfm name inside a block
_BLOCK_KEYS = {
    "pre_attn_norm.weight": "attn_norm.weight",
    "pre_ff_norm.weight": "ff_norm.weight",
    "time_attn.qkv.weight": "temporal.qkv_proj.weight",
    "time_attn.qkv.bias": "temporal.qkv_proj.bias",
    "time_attn.proj.weight": "temporal.o_proj.weight",
    "time_attn.proj.bias": "temporal.o_proj.bias",
    "spatial_attn.qkv.weight": "spatial.qkv_proj.weight",
    "spatial_attn.qkv.bias": "spatial.qkv_proj.bias",
    "spatial_attn.proj.weight": "spatial.o_proj.weight",
    "spatial_attn.proj.bias": "spatial.o_proj.bias",
    "ff.layer.0.weight": "ff.fc1.weight",
    "ff.layer.0.bias": "ff.fc1.bias",
    "ff.layer.2.weight": "ff.fc2.weight",
    "ff.layer.2.bias": "ff.fc2.bias",
}
_TOP_KEYS = {
    "mask_token": "backbone.mask_token",
    "projection.weight": "backbone.projection.weight",
    "projection.bias": "backbone.projection.bias",
    "predict_head.weight": "objective.head.weight",
    "predict_head.bias": "objective.head.bias",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def reference_rope_frequencies(dim: int, base: float = 10_000.0) -> torch.Tensor:
    """The temporal RoPE frequencies as the reference computes and stores them.

    Parameters
    ----------
    dim : int
        The model width D (temporal attention works on D/2 features).
    base : float
        Frequency base.

    Returns
    -------
    freqs : torch.Tensor, shape (D/4,)
        ``base^(-2i / (D/2))`` for i = 0 .. D/4 - 1 (float32, as stored).
    """
    width = dim // 2
    return 1.0 / (base ** (torch.arange(0, width, 2)[: width // 2].float() / width))


def from_released_state_dict(state: Mapping[str, torch.Tensor], base: float = 10_000.0) -> dict[str, torch.Tensor]:
    """Rename a released BrainOmni state dict to brainfm's module names.

    Parameters
    ----------
    state : mapping of str to torch.Tensor
        The reference's state dict (``BrainOmni.state_dict()``).
    base : float
        The RoPE base the stored frequencies must match.

    Returns
    -------
    state : dict of str to torch.Tensor
        Keys under ``backbone.``, ``objective.`` and ``tokenizer.`` (the last unchanged),
        ready for :func:`brainfm.checkpoint.load_state_strict` on a module holding
        ``tokenizer``, ``backbone`` and ``objective``.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in state.items():
        if name.startswith("tokenizer."):
            out[name] = value
        elif name in _TOP_KEYS:
            out[_TOP_KEYS[name]] = value
        elif (match := _BLOCK.match(name)) is not None:
            index, rest = match.groups()
            if rest == "time_attn.rope_embedding_layer.freqs":
                dim = 4 * value.numel()
                expected = reference_rope_frequencies(dim, base)
                if not torch.allclose(value.float().cpu(), expected, rtol=1e-6, atol=0.0):
                    raise CheckpointError(
                        f"{name}: the stored RoPE frequencies are not those of base {base:g}; pass the base they "
                        "were made with."
                    )
            elif rest == "time_attn.rope_embedding_layer.rotate":
                continue  # the complex cache, regenerated from the frequencies
            elif rest in _BLOCK_KEYS:
                out[f"backbone.blocks.{index}.{_BLOCK_KEYS[rest]}"] = value
            else:
                unknown.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"Names the released BrainOmni does not have: {sorted(unknown)[:10]}.")
    return out
