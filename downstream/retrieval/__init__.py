"""Concept retrieval (BrainFLORA): brain features aligned with concept embeddings.

See ``docs/retrieval.md``. The evaluator :func:`k_way_accuracy` implements the k-way
protocol of the BrainFLORA reference evaluation.
"""

from brainfm.downstream.retrieval.evaluation import k_way_accuracy

__all__ = ["k_way_accuracy"]
