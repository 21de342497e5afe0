"""Loading BrainTokenizer weights saved by the reference code (BrainOmni spec §9 item 19).

Users who obtained the reference BrainTokenizer weights themselves (OpenTSLab/BrainOmni, MIT;
brainfm never downloads them) can load them into :class:`~brainfm.tokenizers.BrainTokenizer`:

>>> tokenizer = load_reference_brain_tokenizer("BrainTokenizer.pt")  # doctest: +SKIP

The reference's module tree differs from brainfm's only in names and in one fused tensor:

| reference | brainfm |
|---|---|
| ``sensor_embed.pos_embedding_layer`` / ``sensor_embedding_layer`` / ``aggregate_mlp.layer`` / ``norm`` | ``sensor_encoder.position`` / ``type_embedding`` / ``feed_forward`` / ``norm`` |
| ``encoder.seanet_encoder.model.i`` / ``decoder.seanet_decoder.model.i`` | ``encoder.model.i`` / ``decoder.model.i`` |
| ``...conv.conv.weight_g`` / ``weight_v`` (``torch.nn.utils.weight_norm``) | ``...conv.parametrizations.weight.original0`` / ``original1`` |
| ``...convtr.convtr.*`` | ``...conv.*`` |
| ``encoder.neuros`` | ``latent_queries`` |
| ``encoder.k_proj`` / ``encoder.backwardsolution.v`` / ``.proj`` | ``compress.key`` / ``compress.value`` / ``compress.out`` |
| ``decoder.forwardsolution.kv`` (keys and values fused, ``(2 D, D)``) / ``.proj`` | ``reconstruct.key`` + ``reconstruct.value`` (split in halves) / ``reconstruct.out`` |
| ``quantizer.rvq.layers.l._codebook.embed`` / ``embed_avg`` / ``cluster_size`` / ``inited`` | ``quantizer.layers.l.embed`` / ``embed_avg`` / ``cluster_size`` / ``initted`` |

Prefixes added by wrappers (``module.``, ``model.``) are removed first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from brainfm.errors import CheckpointError
from brainfm.tokenizers.brain_tokenizer import BrainTokenizer

__all__ = ["brain_tokenizer_config_from_reference", "brain_tokenizer_state_from_reference",
           "load_reference_brain_tokenizer"]

# (pattern on the reference name, replacement) applied in order; the first match wins.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^sensor_embed\.pos_embedding_layer\.", "sensor_encoder.position."),
    (r"^sensor_embed\.sensor_embedding_layer\.", "sensor_encoder.type_embedding."),
    (r"^sensor_embed\.aggregate_mlp\.layer\.", "sensor_encoder.feed_forward."),
    (r"^sensor_embed\.norm\.", "sensor_encoder.norm."),
    (r"^encoder\.seanet_encoder\.model\.", "encoder.model."),
    (r"^decoder\.seanet_decoder\.model\.", "decoder.model."),
    (r"^encoder\.neuros$", "latent_queries"),
    (r"^encoder\.k_proj\.", "compress.key."),
    (r"^encoder\.backwardsolution\.v\.", "compress.value."),
    (r"^encoder\.backwardsolution\.proj\.", "compress.out."),
    (r"^decoder\.forwardsolution\.proj\.", "reconstruct.out."),
    (r"^quantizer\.rvq\.layers\.(\d+)\._codebook\.inited$", r"quantizer.layers.\1.initted"),
    (r"^quantizer\.rvq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1."),
)
# SEANet convolution wrappers (SConv1d -> NormConv1d -> weight-normed Conv1d) and old-style weight norm
_CONV = ((r"\.conv\.conv\.", ".conv."), (r"\.convtr\.convtr\.", ".conv."),
         (r"\.weight_g$", ".parametrizations.weight.original0"), (r"\.weight_v$", ".parametrizations.weight.original1"))
_WRAPPERS = ("module.", "model.", "_orig_mod.")


def _strip(name: str) -> str:
    # no reference BrainTokenizer name starts with a wrapper prefix, so stripping is safe
    while name.startswith(_WRAPPERS):
        name = name.split(".", 1)[1]
    return name


def brain_tokenizer_state_from_reference(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split) a reference BrainTokenizer state dict into brainfm's names.

    Parameters
    ----------
    state : mapping of str to torch.Tensor
        The reference model's ``state_dict()`` (optionally under ``module.``).

    Returns
    -------
    state : dict of str to torch.Tensor
        Loadable with ``BrainTokenizer.load_state_dict(..., strict=True)``.

    Raises
    ------
    CheckpointError
        For a name the map does not know (not a reference BrainTokenizer, or another version),
        listing the first such names.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for raw, tensor in state.items():
        name = _strip(raw)
        if name.startswith("decoder.forwardsolution.kv."):
            key, value = torch.chunk(tensor, 2, dim=0)
            leaf = name.rsplit(".", 1)[1]
            out[f"reconstruct.key.{leaf}"], out[f"reconstruct.value.{leaf}"] = key.clone(), value.clone()
            continue
        for pattern, replacement in _RENAMES:
            if re.search(pattern, name):
                name = re.sub(pattern, replacement, name)
                break
        else:
            unknown.append(raw)
            continue
        for pattern, replacement in _CONV:
            name = re.sub(pattern, replacement, name)
        if name.endswith(".initted"):
            tensor = tensor.reshape(()).to(torch.bool)
        out[name] = tensor
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} weights are not part of the reference BrainTokenizer ({', '.join(unknown[:8])}"
            f"{', ...' if len(unknown) > 8 else ''}): pass the tokenizer's own state dict "
            "(the BrainOmni stage-2 checkpoint holds it under its tokenizer's prefix)."
        )
    return out


def brain_tokenizer_config_from_reference(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """BrainTokenizer arguments read from the shapes of a (renamed) state dict.

    Parameters
    ----------
    state : mapping of str to torch.Tensor
        In brainfm's names (:func:`brain_tokenizer_state_from_reference`).

    Returns
    -------
    config : dict
        ``n_filters``, ``dim``, ``n_latents``, ``n_codes``, ``n_levels``, ``lstm_layers``, ``ratios``,
        ``kernel_size``, ``last_kernel_size``; the rest keep the published defaults.
    """
    try:
        first = state["encoder.model.0.conv.parametrizations.weight.original1"]
        queries = state["latent_queries"]
        embed0 = state["quantizer.layers.0.embed"]
    except KeyError as err:
        raise CheckpointError(f"not a BrainTokenizer state dict: {err.args[0]!r} is missing.") from None
    levels = {int(m.group(1)) for n in state if (m := re.match(r"quantizer\.layers\.(\d+)\.embed$", n))}
    lstm = {int(m.group(1)) for n in state if (m := re.match(r"encoder\.model\.\d+\.lstm\.weight_ih_l(\d+)$", n))}
    # decoder transposed convolutions have kernel 2 x ratio, in decoder order
    transposed = sorted((int(m.group(1)), t.shape[-1]) for n, t in state.items()
                        if (m := re.match(r"decoder\.model\.(\d+)\.conv\.parametrizations\.weight\.original1$", n))
                        and t.shape[-1] % 2 == 0 and t.shape[0] > t.shape[1])
    last = max((int(m.group(1)), t.shape[-1]) for n, t in state.items()
               if (m := re.match(r"decoder\.model\.(\d+)\.conv\.parametrizations\.weight\.original1$", n)))
    return {"n_filters": int(first.shape[0]), "dim": int(queries.shape[1]), "n_latents": int(queries.shape[0]),
            "n_codes": int(embed0.shape[0]), "n_levels": len(levels), "lstm_layers": len(lstm),
            "ratios": tuple(k // 2 for _, k in transposed), "kernel_size": int(first.shape[-1]),
            "last_kernel_size": int(last[1])}


def load_reference_brain_tokenizer(source: str | Path | Mapping[str, torch.Tensor], **overrides: Any) -> BrainTokenizer:
    """A :class:`BrainTokenizer` holding reference weights, loaded strictly, in evaluation mode.

    Parameters
    ----------
    source : str | pathlib.Path | mapping
        A file saved by the reference (a state dict, or a dict holding one under ``"model"``,
        ``"module"`` or ``"state_dict"``), read with ``weights_only=True``; or the state dict itself.
    **overrides
        BrainTokenizer arguments not visible in the weights (``n_heads``, ``sfreq``, ...).

    Returns
    -------
    tokenizer : BrainTokenizer

    Raises
    ------
    CheckpointError
        When the file cannot be read as weights, or names or shapes do not fit (listing them).
    """
    if isinstance(source, (str, Path)):
        try:
            loaded = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure to read is reported with the file
            raise CheckpointError(f"{source}: cannot be read as a weights-only PyTorch file ({err}).") from err
        for key in ("model", "module", "state_dict"):
            if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
        source = loaded
    state = brain_tokenizer_state_from_reference(source)
    tokenizer = BrainTokenizer(**{**brain_tokenizer_config_from_reference(state), **overrides})
    own = tokenizer.state_dict()
    missing = [n for n in own if n not in state]
    unexpected = [n for n in state if n not in own]
    shapes = [f"{n}: reference {tuple(t.shape)}, brainfm {tuple(own[n].shape)}" for n, t in state.items()
              if n in own and own[n].shape != t.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            "the reference weights do not fit BrainTokenizer: "
            + "; ".join(part for part in (
                f"missing {', '.join(missing[:8])}" if missing else "",
                f"unexpected {', '.join(unexpected[:8])}" if unexpected else "",
                f"shapes differ: {'; '.join(shapes[:8])}" if shapes else "") if part)
        )
    tokenizer.load_state_dict(state, strict=True)
    return tokenizer.eval()
