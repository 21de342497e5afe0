"""Tokenizers: signal windows <-> discrete tokens (DESIGN §3).

Every tokenizer derives from :class:`Tokenizer` (``encode``, ``decode``, ``loss``,
``get_config``) and is trained or fitted by ``brainfm pretrain fit`` (see
``docs/pretraining.md``).
"""

from brainfm.tokenizers.base import SampleTokenizer, Tokenizer, percent_variance_explained
from brainfm.tokenizers.brain_tokenizer import BrainTokenizer
from brainfm.tokenizers.brain_tokenizer_reference import load_reference_brain_tokenizer
from brainfm.tokenizers.mulaw import MuLawTokenizer
from brainfm.tokenizers.quantile import QuantileTokenizer
from brainfm.tokenizers.sample_tokenizer import SampleLevelTokenizer

__all__ = ["BrainTokenizer", "MuLawTokenizer", "QuantileTokenizer", "SampleLevelTokenizer", "SampleTokenizer", "Tokenizer", "load_reference_brain_tokenizer",
           "percent_variance_explained"]
