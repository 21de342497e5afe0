"""Foundation-model backbones and their pretraining objectives (DESIGN §3).

Every backbone derives from :class:`Backbone` (``features(batch, tokenizer) -> (B, N, D)``),
every objective from :class:`Objective`; recipes in ``configs/pretrain/`` compose them.
"""

from brainfm.models.barista import BaristaBackbone
from brainfm.models.barista_objective import MaskedLatentObjective
from brainfm.models.barista_readout import BaristaReadout
from brainfm.models.base import Backbone, Objective
from brainfm.models.brainomni import BrainOmni
from brainfm.models.masked_token import MaskedTokenObjective

__all__ = ["BaristaBackbone", "BaristaReadout", "Backbone", "BrainOmni", "MaskedLatentObjective",
           "MaskedTokenObjective", "Objective"]
