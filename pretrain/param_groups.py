"""Optimiser parameter groups: which weights are exempt from weight decay.

The reference recipes decay most weights but not normalisation parameters or embeddings
(BrainOmni spec §4.4: no decay on norm parameters or the type embedding; §5.7: none on norms,
head, input projection or mask token). :func:`parameter_groups` splits a module's trainable
parameters into a decayed group and an exempt one; :class:`~brainfm.pretrain.module.PretrainModule`
hands both to the recipe's optimiser when ``model.no_weight_decay`` is set::

    model:
      no_weight_decay: [norm, embedding]          # BrainTokenizer, as the reference
      # no_weight_decay: [norm, bias, embedding, "backbone.head.*", "*mask_token"]

An entry is a category or a pattern:

- ``norm``: every parameter of a normalisation layer (LayerNorm, RMSNorm, GroupNorm, BatchNorm, ...);
- ``bias``: every parameter named ``bias``;
- ``embedding``: every parameter of an ``nn.Embedding``;
- anything else: an ``fnmatch`` pattern on the parameter's full name (``"tokenizer.latent_queries"``,
  ``"*.head.*"``). A pattern that matches no parameter is refused (most likely a typo).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from torch import nn

from brainfm.errors import ConfigError

__all__ = ["CATEGORIES", "exempt_from_decay", "parameter_groups"]

#: The categories ``no_weight_decay`` understands besides name patterns.
CATEGORIES = ("norm", "bias", "embedding")

_NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase)


def exempt_from_decay(module: nn.Module, rules: Sequence[str]) -> set[str]:
    """Names of the trainable parameters of ``module`` that ``rules`` exempt from weight decay.

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    rules : sequence of str
        Categories (:data:`CATEGORIES`) and ``fnmatch`` patterns on parameter names.

    Returns
    -------
    names : set of str
        Full parameter names (as ``module.named_parameters()`` gives them).

    Raises
    ------
    ConfigError
        When a pattern matches no trainable parameter.
    """
    names: set[str] = set()
    categories = {rule for rule in rules if rule in CATEGORIES}
    for prefix, sub in module.named_modules():
        for pname, p in sub.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{prefix}.{pname}" if prefix else pname
            if ("norm" in categories and isinstance(sub, _NORMS)) or ("bias" in categories and pname == "bias") \
                    or ("embedding" in categories and isinstance(sub, nn.Embedding)):
                names.add(full)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    for pattern in (rule for rule in rules if rule not in CATEGORIES):
        matched = fnmatch.filter(trainable, pattern)
        if not matched:
            raise ConfigError(
                f"no_weight_decay entry {pattern!r} is neither a category ({', '.join(CATEGORIES)}) nor a pattern "
                f"matching a trainable parameter (some are: {', '.join(trainable[:5])}, ...)."
            )
        names.update(matched)
    return names


def parameter_groups(module: nn.Module, rules: Sequence[str] | None) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` as optimiser groups: decayed, then exempt (``weight_decay=0``).

    Parameters
    ----------
    module : torch.nn.Module
        The model.
    rules : sequence of str | None
        What is exempt (see :func:`exempt_from_decay`); None or empty: one group of everything.

    Returns
    -------
    groups : list of dict
        ``[{"params": decayed, "names": [...]}, {"params": exempt, "names": [...], "weight_decay": 0.0}]``
        (an empty group is left out); the decayed group takes the optimiser's own ``weight_decay``.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    exempt = exempt_from_decay(module, rules) if rules else set()
    decayed = [(n, p) for n, p in named if n not in exempt]
    free = [(n, p) for n, p in named if n in exempt]
    groups: list[dict[str, Any]] = []
    if decayed:
        groups.append({"params": [p for _, p in decayed], "names": [n for n, _ in decayed]})
    if free:
        groups.append({"params": [p for _, p in free], "names": [n for n, _ in free], "weight_decay": 0.0})
    return groups
