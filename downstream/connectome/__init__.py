"""Dynamic functional connectomes: pairwise affinities -> non-negative tensor factorisation -> communities.

After Dyballa et al. (ICLR 2024, arXiv:2402.14102), generalised from *C. elegans* neurons to
EEG/MEG channels, source parcels and iEEG regions. Adaptations: the affinity kernels, the
HALS solver (written in torch), the rank selection rule and the ``leiden`` fallback for
community detection are brainfm's choices where the paper leaves them open (see
``docs/connectome.md``).
"""

from brainfm.downstream.connectome.affinity import (
    AFFINITY_KINDS,
    affinity_tensor,
    node_derivatives,
    pair_index,
    pair_mask,
)
from brainfm.downstream.connectome.communities import (
    COMMUNITY_BACKENDS,
    Partition,
    adjacency_from_pairs,
    detect_communities,
)
from brainfm.downstream.connectome.nodes import NodeSignals, node_signals
from brainfm.downstream.connectome.ntf import (
    NTFResult,
    factor_congruence,
    normalize_factors,
    ntf_hals,
    random_init,
)
from brainfm.downstream.connectome.pipeline import (
    ConnectomeConfig,
    ConnectomeResult,
    load_connectome_config,
    run_connectome,
    write_connectome,
)
from brainfm.downstream.connectome.rank_selection import RankSweep, rank_sweep, select_rank

__all__ = [
    "AFFINITY_KINDS",
    "COMMUNITY_BACKENDS",
    "ConnectomeConfig",
    "ConnectomeResult",
    "NTFResult",
    "NodeSignals",
    "Partition",
    "RankSweep",
    "adjacency_from_pairs",
    "affinity_tensor",
    "detect_communities",
    "factor_congruence",
    "load_connectome_config",
    "node_derivatives",
    "node_signals",
    "normalize_factors",
    "ntf_hals",
    "pair_index",
    "pair_mask",
    "random_init",
    "rank_sweep",
    "run_connectome",
    "select_rank",
    "write_connectome",
]
