"""CoDeGraph's first pass, refined minima and final scores against a from-scratch recomputation.

The production path stores per-pair minima with argmins from blocked matrix products and
recomputes only the queries whose stored nearest patch was removed; the twin here
(tests/brute_force.py) recomputes every distance explicitly, per (layer, degree), with the
SPEC's definition (min over the *remaining* patches of each other image, mean of the
K = max(1, ceil(q (N-1))) smallest, averaged over layers and degrees).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import codegraph_ad.engine.mutual as mutual
from codegraph_ad.engine.products import Fp32Product
from codegraph_ad.config import EngineConfig, LNAMDConfig
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.codegraph import graph_and_rescore
from codegraph_ad.methods.first_pass import FirstPass, compute_first_pass
from tests.graph.synthetic import toy_graph
from tests.brute_force import lnamd_batch_brute, minima_brute, msm_brute

N, GRID, C, LAYERS, DEGREES = 7, (4, 4), 8, 2, (1, 3)
M = GRID[0] * GRID[1]


def _features(seed: int, n: int = N) -> FeatureSet:
    """Raw tokens with a per-image offset and scale (LNAMD's standardisation must undo them)."""
    rng = np.random.default_rng(seed)
    layers = rng.standard_normal((n, LAYERS, M, C)) * rng.uniform(0.5, 2.0, (n, 1, 1, 1))
    layers += rng.uniform(-1.0, 1.0, (n, 1, 1, 1))
    return FeatureSet(torch.from_numpy(layers.astype(np.float32)),
                      torch.from_numpy(rng.standard_normal((n, 6)).astype(np.float32)), GRID)


def _brute_units(fs: FeatureSet) -> dict[tuple[int, int], np.ndarray]:
    tokens = fs.layers.double().numpy()
    return {(li, r): lnamd_batch_brute(tokens[:, li], fs.grid, r) for li in range(LAYERS) for r in DEGREES}


def _brute_scores(units: dict[tuple[int, int], np.ndarray], q: float, excluded: np.ndarray | None,
                  refs: np.ndarray | None = None) -> np.ndarray:
    per_map = [msm_brute(minima_brute(z, excluded), q, refs) for z in units.values()]
    return np.mean(per_map, axis=0)


def _excluded_cases(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    scattered = rng.random((N, M)) < 0.35
    whole = scattered.copy()
    whole[2] = True  # image 2 has no reference patch left
    return {"none": np.zeros((N, M), dtype=bool), "scattered": scattered, "whole_image": whole}


@pytest.fixture(scope="module", params=["one_block", "blocked"])
def first_and_twin(request: pytest.FixtureRequest) -> tuple[FirstPass, dict[tuple[int, int], np.ndarray]]:
    """The production first pass (one similarity block, or 2-image blocks and 3-row refinement
    chunks) and the brute-force unit features of the same batch."""
    fs = _features(0)
    if request.param == "blocked":
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Fp32Product, "cpu_block_cap", (2 * M) ** 2 * 4)  # 2 images per block side
            first = compute_first_pass(fs, LNAMDConfig(degrees=DEGREES), EngineConfig())
        first = dataclasses.replace(first, memory_budget_mb=3.5 * 4 * M / 0.25 / 1e6)  # 3 rows per chunk
    else:
        first = compute_first_pass(fs, LNAMDConfig(degrees=DEGREES), EngineConfig())
    return first, _brute_units(fs)


def test_first_pass_minima_match_explicit_distances(first_and_twin) -> None:  # noqa: ANN001
    first, units = first_and_twin
    assert first.maps == list(units)
    for key, z in units.items():
        got = first.minima[key].dist.double().numpy()
        want = minima_brute(z)
        assert np.isinf(got[np.arange(N), np.arange(N)]).all()
        off = ~np.eye(N, dtype=bool)
        np.testing.assert_allclose(got[off], want[off], atol=1e-5)


@pytest.mark.parametrize("q", [0.1, 0.3, 0.5])
def test_first_pass_scores_match_brute_force(first_and_twin, q: float) -> None:  # noqa: ANN001
    first, units = first_and_twin
    np.testing.assert_allclose(first.scores(q).double().numpy(), _brute_scores(units, q, None), atol=1e-5)


@pytest.mark.parametrize("case", ["none", "scattered", "whole_image"])
def test_refined_minima_and_scores_match_brute_force(first_and_twin, case: str) -> None:  # noqa: ANN001
    first, units = first_and_twin
    excluded = _excluded_cases(0)[case]
    dists = first.distances(excluded)
    for d, z in zip(dists, units.values()):
        got, want = d.double().numpy(), minima_brute(z, excluded)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        fin = np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], atol=1e-5)
    if case == "whole_image":
        assert np.isinf(dists[0].numpy()[:, 2]).all()
    for q in (0.1, 0.3):
        np.testing.assert_allclose(first.scores(q, excluded=excluded).double().numpy(),
                                   _brute_scores(units, q, excluded), atol=1e-5)


def test_scores_against_a_reduced_reference_set(first_and_twin) -> None:  # noqa: ANN001
    """The dependency ratio's s(x; B minus c): K follows the number of references left."""
    first, units = first_and_twin
    refs = np.ones(N, dtype=bool)
    refs[[1, 4]] = False
    excluded = _excluded_cases(0)["scattered"]
    got = first.scores(0.5, reference_images=refs, excluded=excluded).double().numpy()
    np.testing.assert_allclose(got, _brute_scores(units, 0.5, excluded, refs), atol=1e-5)


def _planted_features(seed: int = 0, n: int = 12) -> FeatureSet:
    """Per-position prototypes plus noise; images 1, 5, 8 share an odd vector at positions 5, 6."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, LAYERS, M, C))
    for li in range(LAYERS):
        out[:, li] = rng.standard_normal((M, C))[None] + 0.6 * rng.standard_normal((n, M, C))
        odd = 3.0 * rng.standard_normal((2, C))
        for q in (1, 5, 8):
            out[q, li, [5, 6]] = odd + 0.05 * rng.standard_normal(odd.shape)
    return FeatureSet(torch.from_numpy(out.astype(np.float32)), torch.zeros(n, 4), GRID)


def test_graph_and_rescore_final_scores_are_msm_against_the_refined_base() -> None:
    """Final scores = MSM (q = final_q) against every image, each image's distance taken over
    its patches *not* in the returned excluded mask. kappa = 0.5 makes sure the 12-image batch
    flags a community, so the check covers a real refinement, not the first pass."""
    fs = _planted_features()
    graph = toy_graph(kappa=0.5)
    first = compute_first_pass(fs, LNAMDConfig(degrees=DEGREES), EngineConfig())
    final, excluded, diag = graph_and_rescore(first, graph)
    ex = excluded.numpy()
    assert ex.any(), f"nothing excluded, the check would be vacuous: {diag['quartiles']}"
    units = _brute_units(fs)
    want = _brute_scores(units, graph.final_q, ex)
    np.testing.assert_allclose(final.double().numpy(), want, atol=1e-5)
    # and it is not the unrefined score: the exclusions changed some patches' scores
    assert np.abs(want - _brute_scores(units, graph.final_q, None)).max() > 1e-3


def test_fast_runs_the_first_pass_in_fp32_or_bf16x3_and_an_explicit_reduced_precision_warns(monkeypatch):
    """The graph stages read the first pass; quantisation noise in its small distances reads
    as endurance cliffs (docs/codegraph.md), so ``fast`` chooses between fp32 and bf16x3 only
    (timed with argmins), never MuSc's int8 or bf16, and an explicit int8 runs with a warning."""
    from codegraph_ad.methods import first_pass as fp_module

    rng = np.random.default_rng(4)
    layers = torch.from_numpy(rng.standard_normal((6, 1, 24, 16)).astype(np.float32))
    # 24 patches per image: int8 needs a multiple of 8 above 16 (else it falls back to fp32)
    fs = FeatureSet(layers, torch.from_numpy(rng.standard_normal((6, 4)).astype(np.float32)), (4, 6))
    monkeypatch.setattr(mutual, "fastest_reduced_precision", lambda *a, **k: "int8")  # MuSc's pick
    asked = []

    def first_pass_pick(pick):
        def choose(n_patches, engine, device, modes):
            asked.append((n_patches, engine, modes))
            return pick
        return choose

    lnamd_cfg = LNAMDConfig(degrees=(1,))
    exact = compute_first_pass(fs, lnamd_cfg, EngineConfig(precision="fp32"))
    monkeypatch.setattr(fp_module, "fastest_reduced_precision", first_pass_pick("fp32"))
    fast = compute_first_pass(fs, lnamd_cfg, EngineConfig(precision="fast"))
    assert torch.equal(fast.minima[(0, 1)].dist, exact.minima[(0, 1)].dist)
    assert asked == [(24, mutual.pair_minima_with_argmins, ("fp32", "bf16x3"))]
    monkeypatch.setattr(fp_module, "fastest_reduced_precision", first_pass_pick("bf16x3"))
    fast = compute_first_pass(fs, lnamd_cfg, EngineConfig(precision="fast"), exact_degrees=(1,))
    err = (fast.minima[(0, 1)].dist - exact.minima[(0, 1)].dist).abs()
    assert float(err[torch.isfinite(err)].max()) < 2e-3 and not torch.equal(fast.minima[(0, 1)].dist,
                                                                           exact.minima[(0, 1)].dist)
    assert fast.exact_degrees is None  # bf16x3 keeps every map's small distances
    with pytest.warns(RuntimeWarning, match="Tukey fence"):
        int8 = compute_first_pass(fs, lnamd_cfg, EngineConfig(precision="int8"))
    assert not torch.equal(int8.minima[(0, 1)].dist, exact.minima[(0, 1)].dist)  # int8 did run (d > 0.2 here)


def test_a_reduced_first_pass_recomputes_small_distances_on_the_graph_degree_only():
    """In bf16 CoDeGraph's first pass recomputes the small distances in fp32 only on the maps
    of its graph degree (the endurance ratios divide those); the other maps keep bf16's, and a
    rescore that would build the graph from them is refused."""
    from codegraph_ad.config import GraphConfig
    from codegraph_ad.errors import ConfigError
    from codegraph_ad.methods import CoDeGraph

    rng = np.random.default_rng(5)
    base = rng.standard_normal((1, 1, M, 64))
    layers = base + 0.003 * rng.standard_normal((6, 1, M, 64))  # near-duplicate images
    fs = FeatureSet(torch.from_numpy(layers.astype(np.float32)),
                    torch.from_numpy(rng.standard_normal((6, 4)).astype(np.float32)), GRID)
    lnamd_cfg = LNAMDConfig(degrees=(1, 3))
    exact = compute_first_pass(fs, lnamd_cfg, EngineConfig(precision="fp32"))
    with pytest.warns(RuntimeWarning):
        bf16 = compute_first_pass(fs, lnamd_cfg, EngineConfig(precision="bf16"), exact_degrees=(1,))
    assert bf16.exact_degrees == (1,) and exact.small_distances_exact == (1, 3)
    off = ~torch.eye(6, dtype=torch.bool)
    error = {r: float((bf16.minima[(0, r)].dist[off] - exact.minima[(0, r)].dist[off]).abs().max()) for r in (1, 3)}
    assert float(exact.minima[(0, 3)].dist[off].max()) < 0.2  # every distance is small here
    assert error[1] < 1e-4 and error[3] > 1e-3  # r = 3: bf16's own error (0.05 here)
    # a window runs in fp32 whatever the precision: every degree is exact
    with pytest.warns(RuntimeWarning):
        windowed = compute_first_pass(fs, lnamd_cfg, EngineConfig(precision="bf16", window=1), exact_degrees=(1,))
    assert windowed.exact_degrees is None and windowed.small_distances_exact == (1, 3)
    # the estimator asks for its own graph degree, and refuses another one's graph
    with pytest.warns(RuntimeWarning):
        stored = CoDeGraph(precision="bf16", degrees=(1, 3), graph_degree=3).first_pass(fs)
    assert stored.exact_degrees == (3,)
    with pytest.raises(ConfigError, match="graph_degree 1"):
        CoDeGraph(precision="bf16", degrees=(1, 3), graph_degree=1).rescore(stored)
