"""Dynamic connectomes: the acceptance checks of the method, the pipeline on stores and the CLI."""

from __future__ import annotations

import json
import tracemalloc

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from brainfm import open_store
from brainfm.cli.main import main
from brainfm.data import Identity, Recording, empty_channel_table
from brainfm.downstream.connectome import (
    ConnectomeConfig,
    adjacency_from_pairs,
    affinity_tensor,
    detect_communities,
    factor_congruence,
    load_connectome_config,
    node_signals,
    normalize_factors,
    ntf_hals,
    pair_index,
    rank_sweep,
    run_connectome,
    select_rank,
    write_connectome,
)
from brainfm.errors import ConfigError
from brainfm.store import StoreWriter


def _planted(shape, rank, noise, seed):
    rng = np.random.default_rng(seed)
    factors = [rng.random((n, rank)).astype(np.float32) for n in shape]
    # well-separated components: each pair and time loading concentrated on its own block
    for f in (factors[0], factors[2]):
        blocks = np.array_split(np.arange(f.shape[0]), rank)
        for r, block in enumerate(blocks):
            f[block, r] += 2.0
    tensor = np.einsum("tr,wr,pr->twp", *factors).astype(np.float32)
    tensor += noise * tensor.std() * np.abs(rng.standard_normal(tensor.shape)).astype(np.float32)
    return tensor, factors


# --- 1. affinities ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["coactivation", "gaussian", "sliding_corr"])
def test_affinities_are_non_negative_finite_and_one_per_unordered_pair(kind):
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal((6, 400)).astype(np.float32) for _ in range(2)]
    tensor, mask = affinity_tensor(signals, kind=kind, window_samples=64)
    assert tensor.shape == (400, 2, 15) and tensor.dtype == np.float32 and mask.all()
    assert np.isfinite(tensor).all() and (tensor >= 0).all()
    if kind != "gaussian":
        assert tensor.max() <= 1.0 + 1e-6
    # symmetric: swapping the roles of two nodes permutes pairs, and (i, j) equals (j, i)
    order = [1, 0, 2, 3, 4, 5]
    swapped, _ = affinity_tensor([s[order] for s in signals], kind=kind, window_samples=64)
    rows, cols = pair_index(6)
    lookup = {(i, j): p for p, (i, j) in enumerate(zip(rows, cols, strict=True))}
    for p, (i, j) in enumerate(zip(rows, cols, strict=True)):
        a, b = sorted((order[i], order[j]))
        np.testing.assert_allclose(swapped[:, :, p], tensor[:, :, lookup[(a, b)]], atol=1e-6)


def test_pair_index_is_a_row_major_bijection():
    rows, cols = pair_index(5)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True))[:5] == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2)]
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == 10 and (rows < cols).all()
    adjacency = adjacency_from_pairs(np.arange(10, dtype=np.float32), 5)
    np.testing.assert_array_equal(adjacency, adjacency.T)
    assert adjacency[rows, cols].tolist() == list(range(10)) and (np.diag(adjacency) == 0).all()


def test_constant_signals_give_zero_coactivation():
    signals = [np.ones((4, 100), dtype=np.float32) * np.arange(4, dtype=np.float32)[:, None]]
    tensor, _ = affinity_tensor(signals, kind="coactivation")
    assert (tensor == 0).all()


def test_coactivation_is_high_only_for_nodes_that_change_together():
    t = np.linspace(0, 4 * np.pi, 500, dtype=np.float32)
    rng = np.random.default_rng(1)
    signals = [np.stack([np.sin(t), np.sin(t), -np.sin(t), 0.01 * rng.standard_normal(500).astype(np.float32)])]
    tensor, _ = affinity_tensor(signals)
    mean = tensor[:, 0].mean(axis=0)  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert mean[0] > 0.5 and mean[1] < 0.01 and mean[3] < 0.01


# --- 2. masking --------------------------------------------------------------------------------

def test_missing_node_masks_its_pairs_and_masked_values_do_not_matter():
    rng = np.random.default_rng(2)
    signals = [rng.standard_normal((5, 300)).astype(np.float32) for _ in range(3)]
    signals[1][2] = np.nan  # node 2 missing in subject 1
    tensor, mask = affinity_tensor(signals)
    rows, cols = pair_index(5)
    involved = (rows == 2) | (cols == 2)
    assert involved.sum() == 4 and not mask[1, involved].any() and mask[1, ~involved].all() and mask[[0, 2]].all()
    assert (tensor[:, 1, involved] == 0).all()
    garbage = tensor.copy()
    garbage[:, 1, involved] = 1e3
    first = ntf_hals(tensor, 2, mask=mask, seed=3, n_iter_max=50)
    second = ntf_hals(garbage, 2, mask=mask, seed=3, n_iter_max=50)
    for a, b in zip(first.factors, second.factors, strict=True):
        torch.testing.assert_close(a, b)
    unmasked = ntf_hals(garbage, 2, seed=3, n_iter_max=50)
    assert not torch.allclose(unmasked.factors[2], first.factors[2])


# --- 3, 4. NTF recovery and monotonicity ------------------------------------------------------------

def test_ntf_recovers_planted_factors():
    tensor, planted = _planted((50, 4, 190), rank=2, noise=0.01, seed=0)
    best = min((ntf_hals(tensor, 2, seed=s, n_iter_max=500, tol=1e-9) for s in range(3)), key=lambda f: f.error)
    congruence, _ = factor_congruence(best.factors, [torch.from_numpy(f) for f in planted])
    assert congruence > 0.95
    assert best.error < 0.05


def test_hals_objective_is_non_increasing_and_factors_non_negative():
    tensor, _ = _planted((30, 5, 45), rank=3, noise=0.05, seed=1)
    x = torch.from_numpy(tensor).double()
    direct = []
    for n_iter in range(1, 31):  # the same path (same seed), stopped after 1, 2, ... iterations
        fit = ntf_hals(tensor, 3, seed=0, n_iter_max=n_iter, tol=0)
        assert all((f >= 0).all() for f in fit.factors)
        model = torch.einsum("tr,wr,pr->twp", *(f.double() for f in fit.factors))
        direct.append(float((x - model).norm() / x.norm()))
        # the error computed from Gram matrices is the reconstruction's
        assert abs(direct[-1] - fit.error) < 1e-5
    assert (np.diff(direct) <= 1e-9).all()
    assert direct[-1] < 0.5 * direct[0]


def test_normalisation_keeps_the_model_and_gives_unit_maxima():
    tensor, _ = _planted((20, 3, 28), rank=2, noise=0.0, seed=4)
    fit = ntf_hals(tensor, 2, seed=0, n_iter_max=20)
    a, b, c = normalize_factors(fit.factors)
    torch.testing.assert_close(torch.einsum("tr,wr,pr->twp", a, b, c), torch.einsum("tr,wr,pr->twp", *fit.factors),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.amax(0), torch.ones(2))
    torch.testing.assert_close(b.amax(0), torch.ones(2))


def test_ntf_refuses_negative_data_and_wrong_masks():
    with pytest.raises(ValueError, match="non-negative"):
        ntf_hals(-np.ones((3, 2, 3), np.float32), 1)
    with pytest.raises(ValueError, match="mask has shape"):
        ntf_hals(np.ones((3, 2, 3), np.float32), 1, mask=np.ones((3, 3), bool))


# --- 5. rank selection ----------------------------------------------------------------------------

@pytest.mark.slow
def test_rank_sweep_selects_the_planted_rank():
    tensor, _ = _planted((40, 4, 66), rank=3, noise=0.01, seed=5)
    sweep = rank_sweep(tensor, range(1, 7), n_restarts=10, n_iter_max=200, tol=1e-7)
    assert sweep.chosen_rank == 3
    assert sweep.stability[sweep.ranks.index(3)] >= 0.9


def test_select_rank_rule():
    # error drops to rank 3, flat after; rank 3 stable
    assert select_rank([1, 2, 3, 4, 5], [0.6, 0.3, 0.02, 0.019, 0.018], [1, 1, 0.99, 0.7, 0.6]) == 3
    # rank 3 unstable: fall back to the largest stable rank before the elbow
    assert select_rank([1, 2, 3, 4, 5], [0.6, 0.3, 0.02, 0.019, 0.018], [1, 1, 0.5, 0.7, 0.6]) == 2


# --- 6. communities --------------------------------------------------------------------------------

def _planted_partition(n=60, blocks=3, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(blocks), n // blocks)
    same = truth[:, None] == truth[None, :]
    edges = rng.random((n, n)) < np.where(same, 0.3, 0.02)
    weights = rng.exponential(np.where(same, 3.0, 1.0))
    upper = np.triu(edges * weights, k=1)
    return upper + upper.T, truth


def test_leiden_finds_planted_communities():
    adjacency, truth = _planted_partition()
    partition = detect_communities(adjacency, backend="leiden", seed=13)
    assert normalized_mutual_info_score(truth, partition.labels) > 0.9
    assert partition.backend == "leiden" and len(partition.levels) == 1


def test_graph_tool_backend_runs_when_importable_or_says_how_to_install():
    adjacency, truth = _planted_partition()
    try:
        import graph_tool  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="conda-forge"):
            detect_communities(adjacency, backend="graph_tool")
        return
    partition = detect_communities(adjacency, backend="graph_tool")  # pragma: no cover - needs graph-tool
    assert normalized_mutual_info_score(truth, partition.labels) > 0.9  # pragma: no cover


# --- 7, 8. end to end and determinism ----------------------------------------------------------

def _motif_signals(seed=0):
    """Two motifs, each of two communities of three nodes driven by their own signal: nodes
    0-2 and 3-5 in the first half in subjects 0-2, nodes 6-8 and 9-11 in the second half in
    subjects 2-4; weak noise elsewhere."""
    rng = np.random.default_rng(seed)
    n_nodes, n_times, n_subjects = 12, 600, 5
    signals = []
    for w in range(n_subjects):
        x = 0.05 * rng.standard_normal((n_nodes, n_times)).astype(np.float32)
        drives = np.cumsum(rng.standard_normal((4, n_times)), axis=1).astype(np.float32)
        drives = (drives - drives.mean(1, keepdims=True)) / drives.std(1, keepdims=True)
        if w in (0, 1, 2):
            x[0:3, :300] += drives[0, :300]
            x[3:6, :300] += drives[1, :300]
        if w in (2, 3, 4):
            x[6:9, 300:] += drives[2, 300:]
            x[9:12, 300:] += drives[3, 300:]
        signals.append(x)
    return signals


def test_end_to_end_recovers_planted_motifs_and_is_deterministic():
    tensor, _ = affinity_tensor(_motif_signals())
    fits = [min((ntf_hals(tensor, 2, seed=s, n_iter_max=300) for s in range(5)), key=lambda f: f.error) for _ in range(2)]
    for a, b in zip(fits[0].factors, fits[1].factors, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # determinism
    time_loading, subject_loading, pair_loading = (f.numpy() for f in normalize_factors(fits[0].factors))
    first = int(np.argmax(time_loading[:300].mean(0) - time_loading[300:].mean(0)))
    second = 1 - first
    assert time_loading[:300, first].mean() > 3 * time_loading[300:, first].mean()
    assert time_loading[300:, second].mean() > 3 * time_loading[:300, second].mean()
    assert subject_loading[[0, 1, 2], first].min() > 2 * subject_loading[[3, 4], first].max()
    assert subject_loading[[2, 3, 4], second].min() > 2 * subject_loading[[0, 1], second].max()
    truth = np.repeat([0, 1], 3)
    # each motif's graph splits its six nodes into the two planted communities
    for r, nodes in ((first, slice(0, 6)), (second, slice(6, 12))):
        adjacency = adjacency_from_pairs(pair_loading[:, r], 12)
        partitions = [detect_communities(adjacency, seed=13) for _ in range(2)]
        np.testing.assert_array_equal(partitions[0].labels, partitions[1].labels)
        assert normalized_mutual_info_score(truth, partitions[0].labels[nodes]) > 0.9


# --- 9. scale --------------------------------------------------------------------------------------

def test_large_tensor_built_in_float32_chunks_without_float64_copy():
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal((300, 100)).astype(np.float32) for _ in range(2)]
    nbytes = 100 * 2 * (300 * 299 // 2) * 4  # the float32 tensor: 35.9 MB
    tracemalloc.start()
    tensor, _ = affinity_tensor(signals)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert tensor.dtype == np.float32 and tensor.nbytes == nbytes
    assert peak < 1.6 * nbytes  # a float64 copy alone would be 2x


# --- the pipeline on stores ---------------------------------------------------------------------

def _write_motif_store(path, time_mode_events=False):
    writer = StoreWriter(path)
    signals = _motif_signals(seed=3)
    names = [f"E{i}" for i in range(12)]
    for w, signal in enumerate(signals):
        channels = empty_channel_table(names, ["eeg"] * 12)
        angle = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        channels[["x", "y", "z"]] = np.column_stack([0.08 * np.cos(angle), 0.08 * np.sin(angle), np.zeros(12)])
        channels["frame"] = "head"
        if w == 4:
            channels.loc[11, ["status", "status_reason"]] = ["bad", "flat"]
        events = pd.DataFrame({"onset_s": [0.5], "duration_s": [0.0], "description": ["go"]})
        writer.write(Recording(
            signal=signal * 1e-5, sfreq=100.0, identity=Identity("motif", f"{w:02d}", task="rest"),
            channels=channels, events=events, source={"path": f"/x/{w}.fif", "sha256": str(w)},
            provenance={"recipe": "test", "config_hash": "h"},
        ))
    return path


def test_pipeline_on_a_store_writes_readable_hdf5(tmp_path):
    store = _write_motif_store(tmp_path / "s.zarr")
    config = ConnectomeConfig(time_mode="concatenated", rank=2, n_restarts=3, max_seconds=None)
    result = run_connectome(open_store(store), config)
    assert result.nodes.node_mask.shape == (5, 12) and not result.nodes.node_mask[4, 11]
    assert result.factors[0].shape == (3000, 2) and result.factors[1].shape == (5, 2)
    out = write_connectome(result, tmp_path / "c.h5")
    with h5py.File(out, "r") as h5:  # plain h5py, no brainfm
        assert h5["factors/pair"].shape == (66, 2) and h5["adjacency"].shape == (2, 12, 12)
        assert [n.decode() for n in h5["nodes/names"][:]] == [f"E{i}" for i in range(12)]
        assert json.loads(h5.attrs["config"])["rank"] == 2
        assert h5["communities/0/level_0"].shape == (12,)
        assert h5["subjects/segments"][:].tolist()[1] == [600, 1200]
    # the subject loading follows the planted subject sets
    subject_loading = result.factors[1]
    first = int(np.argmax(subject_loading[0] - subject_loading[4]))
    assert subject_loading[0, first] > subject_loading[4, first]


def test_shared_timeline_averages_event_locked_epochs(tmp_path):
    store = open_store(_write_motif_store(tmp_path / "s.zarr"))
    nodes = node_signals(store, time_mode="shared", events=["go"], tmin=-0.2, tmax=1.0)
    assert len(nodes.signals) == 5 and nodes.signals[0].shape == (12, 121) and nodes.tmin == -0.2
    expected = np.asarray(store[next(iter(store))].signal[:, 30:151])
    standardised = (expected - expected.mean(1, keepdims=True)) / expected.std(1, keepdims=True)
    np.testing.assert_allclose(nodes.signals[0], standardised, atol=1e-4)
    with pytest.raises(ConfigError, match="needs the events"):
        node_signals(store, time_mode="shared")


def test_regions_need_region_labels(tmp_path):
    store = open_store(_write_motif_store(tmp_path / "s.zarr"))
    with pytest.raises(ConfigError, match="region label"):
        node_signals(store, nodes="regions", channel_types=["eeg"])


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="affinity"):
        load_connectome_config(None, affinity="pearson")
    with pytest.raises(ConfigError, match="tmax"):
        load_connectome_config(None, tmin=1.0, tmax=0.5)


@pytest.mark.slow
def test_cli_on_a_real_store(tmp_path, shared_data):
    from brainfm.preprocessing.run import preprocess

    folder = shared_data / "eeg" / "eegmat"
    files = sorted(folder.glob("Subject0[0-2]_*.edf"))
    if len(files) < 6:
        pytest.skip("eegmat recordings not found")
    subset = tmp_path / "eegmat"
    subset.mkdir()
    for f in files:
        (subset / f.name).symlink_to(f)
    store = tmp_path / "s.zarr"
    preprocess(subset, store, recipe="default", pattern=r"Subject(?P<subject>\d+)_(?P<run>\d)", progress=False)
    out = tmp_path / "c.h5"
    code = main(["connectome", str(store), str(out), "--ranks", "2", "3", "--restarts", "2", "--json", "-q"])
    assert code == 0
    with h5py.File(out, "r") as h5:
        assert h5["nodes/names"].shape[0] >= 19 and h5["subjects/names"].shape == (3,)
        assert 2 <= h5.attrs["rank"] <= 3 and h5["sweep/ranks"][:].tolist() == [2, 3]
    assert sorted(p.name for p in (tmp_path / "c_figures").iterdir()) == [
        "adjacency.png", "node_map.png", "subject_loadings.png", "time_courses.png"]
    assert main(["connectome", str(tmp_path / "missing.zarr"), str(out)]) == 2


def test_error_from_gram_matrices_is_exact_on_millions_of_entries():
    # torch's float32 norm of ~5M entries is off by 1e-3 relative: the fit once took that for
    # a residual of zero and stopped early (found against tensorly in bench/connectome_ntf.py).
    rng = np.random.default_rng(0)
    factors = [rng.random((n, 4)).astype(np.float32) ** 4 for n in (2000, 4, 600)]
    tensor = np.einsum("tr,wr,pr->twp", *factors).astype(np.float32)
    tensor += 0.05 * tensor.std() * np.abs(rng.standard_normal(tensor.shape, dtype=np.float32))
    fit = ntf_hals(tensor, 4, seed=0, n_iter_max=15, tol=0)
    model = np.einsum("tr,wr,pr->twp", *(f.numpy().astype(np.float64) for f in fit.factors))
    direct = np.linalg.norm((tensor - model).ravel()) / np.linalg.norm(tensor.astype(np.float64).ravel())
    assert abs(fit.error - direct) < 2e-3 * direct
