"""Concept retrieval (BrainFLORA): brain features aligned with concept embeddings.

See ``docs/retrieval.md``. The evaluator :func:`k_way_accuracy` implements the k-way
protocol of the BrainFLORA reference evaluation; :class:`ModalityAdapter` (Medformer, TSConv,
projection), :class:`SharedProjection` (soft mixture of experts over frozen adapters),
:class:`ContrastiveLoss` and :class:`RoundRobinModalitySampler` are the model parts.
"""

from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter, zero_pad_voxels
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.evaluation import k_way_accuracy
from brainfm.downstream.retrieval.paired_data import load_concept_embeddings, load_paired_trials
from brainfm.downstream.retrieval.sampler import RoundRobinModalitySampler
from brainfm.downstream.retrieval.shared_projection import SharedProjection, SoftMoE
from brainfm.downstream.retrieval.synthetic import make_synthetic_retrieval
from brainfm.downstream.retrieval.things_meg_split import things_meg_split
from brainfm.downstream.retrieval.training import encode, seeded_init, train_contrastive

__all__ = [
    "AdapterConfig",
    "ContrastiveLoss",
    "ModalityAdapter",
    "RoundRobinModalitySampler",
    "SharedProjection",
    "SoftMoE",
    "encode",
    "k_way_accuracy",
    "load_concept_embeddings",
    "load_paired_trials",
    "make_synthetic_retrieval",
    "seeded_init",
    "things_meg_split",
    "train_contrastive",
    "zero_pad_voxels",
]
