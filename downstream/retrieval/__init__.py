"""Concept retrieval (BrainFLORA): brain features aligned with concept embeddings.

See ``docs/retrieval.md``. The evaluator :func:`k_way_accuracy` implements the k-way
protocol of the BrainFLORA reference evaluation; :class:`ModalityAdapter` (Medformer, TSConv,
projection), :class:`SharedProjection` (soft mixture of experts over frozen adapters),
:class:`ContrastiveLoss` and :class:`RoundRobinModalitySampler` are the model parts.
"""

from brainfm.downstream.retrieval.adapter import AdapterConfig, ModalityAdapter, zero_pad_voxels
from brainfm.downstream.retrieval.backbone_adapter import BackboneAdapter, load_pretrained
from brainfm.downstream.retrieval.contrastive_loss import ContrastiveLoss
from brainfm.downstream.retrieval.evaluation import k_way_accuracy
from brainfm.downstream.retrieval.paired_data import load_concept_embeddings, load_paired_trials
from brainfm.downstream.retrieval.run_config import RunConfig, load_run_config
from brainfm.downstream.retrieval.sampler import RoundRobinModalitySampler
from brainfm.downstream.retrieval.shared_projection import SharedProjection, SoftMoE
from brainfm.downstream.retrieval.synthetic import make_synthetic_retrieval
from brainfm.downstream.retrieval.text_embeddings import embed_concept_names
from brainfm.downstream.retrieval.things_layouts import load_things, read_pickled_arrays
from brainfm.downstream.retrieval.things_meg_split import things_meg_split
from brainfm.downstream.retrieval.training import encode, seeded_init, train_contrastive

__all__ = [
    "AdapterConfig",
    "BackboneAdapter",
    "ContrastiveLoss",
    "ModalityAdapter",
    "RoundRobinModalitySampler",
    "RunConfig",
    "SharedProjection",
    "SoftMoE",
    "embed_concept_names",
    "encode",
    "k_way_accuracy",
    "load_concept_embeddings",
    "load_paired_trials",
    "load_pretrained",
    "load_run_config",
    "load_things",
    "make_synthetic_retrieval",
    "read_pickled_arrays",
    "seeded_init",
    "things_meg_split",
    "train_contrastive",
    "zero_pad_voxels",
]
