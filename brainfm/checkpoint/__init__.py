"""Self-describing checkpoints (DESIGN §3): atomic writes, verified ``weights_only`` reads, strict loading.

See :mod:`brainfm.checkpoint.format` for what a checkpoint holds.
"""

from brainfm.checkpoint.format import CHECKPOINT_FORMAT_VERSION, state_digest, verify_checkpoint
from brainfm.checkpoint.frozen import FrozenTokenizer
from brainfm.checkpoint.io import BrainfmCheckpointIO, atomic_save, read_checkpoint
from brainfm.checkpoint.load import (
    CheckpointInfo,
    build_module,
    load_state_strict,
    load_tokenizer,
    module_spec,
)
from brainfm.checkpoint.pretrained import PretrainedModel, load_model

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "BrainfmCheckpointIO",
    "CheckpointInfo",
    "FrozenTokenizer",
    "PretrainedModel",
    "atomic_save",
    "build_module",
    "load_state_strict",
    "load_model",
    "load_tokenizer",
    "module_spec",
    "read_checkpoint",
    "state_digest",
    "verify_checkpoint",
]
