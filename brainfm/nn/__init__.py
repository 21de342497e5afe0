"""Building blocks shared by tokenizers and models (attention, RoPE, RVQ, conv encoders, heads).

Layer 4 of DESIGN §1: imports torch and ``brainfm.loading`` only.
"""

from brainfm.nn.config import Configurable, class_path_of
from brainfm.nn.data_facts import DataFacts

__all__ = ["Configurable", "DataFacts", "class_path_of"]
