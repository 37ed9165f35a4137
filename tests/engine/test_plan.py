"""Reference plans (exact, [CLS] screening, fixed K) and the engine on their pair lists."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from codegraph_ad.config import EngineConfig, LNAMDConfig
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.mutual import pair_minima, plan_minima, refine_minima
from codegraph_ad.engine.plan import ReferencePlan, fixed_k_plan, planned_slots, screening_plan
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.methods import CoDeGraph, MuSc
from codegraph_ad.methods.codegraph import graph_and_rescore
from codegraph_ad.methods.first_pass import compute_first_pass
from tests.conftest import unit_features
from tests.graph.synthetic import make_batch, toy_graph


def _gather(dense: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """The slots of a list plan cut out of the exact plan's dense (N, N, M) array."""
    return torch.gather(dense, 1, refs.unsqueeze(2).expand(-1, -1, dense.shape[2]))


def _all_others(n: int) -> ReferencePlan:
    """Every other image as an explicit list: the sparse path on the exact plan's pairs."""
    refs = torch.stack([torch.cat([torch.arange(q), torch.arange(q + 1, n)]) for q in range(n)])
    return ReferencePlan(n, refs, "fixed-k")


def test_screening_keeps_each_querys_most_similar_share() -> None:
    cls = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    plan = screening_plan(cls, 40.0)
    keep = int(np.ceil(0.4 * 19))
    assert plan.refs.shape == (20, keep)
    unit = torch.nn.functional.normalize(cls, dim=1)
    sim = unit @ unit.T
    sim.fill_diagonal_(-float("inf"))
    want = torch.sort(torch.topk(sim, keep, dim=1).indices, dim=1).values
    assert torch.equal(plan.refs, want)
    assert screening_plan(cls, 100.0).dense


def test_fixed_k_lists_nearest_plus_seeded_random_others() -> None:
    g = torch.Generator().manual_seed(1)
    desc = torch.randn(40, 16, generator=g)
    plan = fixed_k_plan(desc, 10, 0.3, seed=5)
    assert plan.refs.shape == (40, 10) and plan.kind == "fixed-k"
    for q in range(40):
        row = plan.refs[q]
        assert q not in row.tolist()
        assert len(set(row.tolist())) == 10
        assert torch.equal(row, torch.sort(row).values)
    unit = torch.nn.functional.normalize(desc, dim=1)
    sim = unit @ unit.T
    sim.fill_diagonal_(-float("inf"))
    nearest = torch.topk(sim, 7, dim=1).indices  # 10 - round(0.3 * 10) by similarity
    assert all(set(nearest[q].tolist()) <= set(plan.refs[q].tolist()) for q in range(40))
    assert torch.equal(fixed_k_plan(desc, 10, 0.3, seed=5).refs, plan.refs)  # seeded
    assert not torch.equal(fixed_k_plan(desc, 10, 0.3, seed=6).refs, plan.refs)
    assert fixed_k_plan(desc, 39, 0.3, seed=5).dense  # K = N - 1 is the exact plan
    assert planted_slots_agree(40)


def planted_slots_agree(n: int) -> bool:
    """The memory estimate's slot count is the plan's."""
    cls = torch.randn(n, 4, generator=torch.Generator().manual_seed(2))
    return (planned_slots(n, 100.0, 10) == fixed_k_plan(cls, 10, 0.25, 0).n_slots
            and planned_slots(n, 30.0, None) == screening_plan(cls, 30.0).n_slots
            and planned_slots(n, 100.0, None) is None)


def test_unordered_pairs_serve_both_directions_once() -> None:
    plan = fixed_k_plan(torch.randn(15, 6, generator=torch.Generator().manual_seed(3)), 4, 0.5, seed=0)
    a, b, s_ab, s_ba = plan.unordered_pairs()
    assert bool((a < b).all())
    assert len(set(zip(a.tolist(), b.tolist()))) == a.numel()  # each pair once
    served = set()
    for i in range(a.numel()):
        if s_ab[i] >= 0:
            assert int(plan.refs[a[i], s_ab[i]]) == int(b[i])
            served.add((int(a[i]), int(b[i])))
        if s_ba[i] >= 0:
            assert int(plan.refs[b[i], s_ba[i]]) == int(a[i])
            served.add((int(b[i]), int(a[i])))
    listed = {(q, int(r)) for q in range(15) for r in plan.refs[q]}
    assert served == listed
    assert plan.n_pairs() < 15 * 14 // 2


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("budget", [0.05, 4096])
def test_listed_pairs_equal_the_dense_products_slots(precision: str, budget: float) -> None:
    x = unit_features(14, 32, 24, seed=4)
    plan = fixed_k_plan(torch.randn(14, 8, generator=torch.Generator().manual_seed(4)), 6, 0.5, seed=1)
    dense = pair_minima(x, precision=precision, with_argmin=True)
    got = plan_minima(x, plan, budget_mb=budget, precision=precision, with_argmin=True)
    assert got.dist.shape == (14, 6, 32) and torch.equal(got.refs, plan.refs)
    tol = 1e-6 if precision == "fp32" else 2e-2
    assert torch.allclose(got.dist, _gather(dense.dist, plan.refs), atol=tol)
    if precision == "fp32":
        assert torch.equal(got.argmin, _gather(dense.argmin, plan.refs))


@pytest.mark.parametrize("case", ["scattered", "whole_image"])
def test_refinement_on_a_list_plan_equals_the_dense_refinement(case: str) -> None:
    x = unit_features(12, 20, 16, seed=5)
    plan = screening_plan(torch.randn(12, 8, generator=torch.Generator().manual_seed(5)), 50.0)
    excluded = torch.zeros(12, 20, dtype=torch.bool)
    if case == "scattered":
        excluded[2, ::3] = True
        excluded[7, :5] = True
    else:
        excluded[int(plan.refs[0, 0])] = True
    dense = refine_minima(x, pair_minima(x, with_argmin=True), excluded)
    got = refine_minima(x, plan_minima(x, plan, with_argmin=True), excluded)
    want = _gather(dense, plan.refs)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    fin = torch.isfinite(want)
    assert torch.allclose(got[fin], want[fin], atol=1e-6)


def test_msm_on_a_screened_plan_equals_masked_dense_msm() -> None:
    x = unit_features(16, 24, 16, seed=6)
    plan = screening_plan(torch.randn(16, 8, generator=torch.Generator().manual_seed(6)), 60.0)
    dense = pair_minima(x).dist
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask.scatter_(1, plan.refs, True)
    got = msm_scores(plan_minima(x, plan).dist, 0.3, refs=plan.refs)
    assert torch.allclose(got, msm_scores(dense, 0.3, mask), atol=1e-6)
    images = torch.ones(16, dtype=torch.bool)
    images[[1, 4, 9]] = False
    sub = mask & images.view(1, -1)
    got = msm_scores(plan_minima(x, plan).dist, 0.3, images, refs=plan.refs)
    assert torch.allclose(got, msm_scores(dense, 0.3, sub), atol=1e-6)


def _features(n: int = 24, planted: tuple[int, ...] = (2, 9, 15, 21), seed: int = 0) -> tuple[FeatureSet, np.ndarray]:
    """A constructed batch (tests/graph/synthetic.py) and its planted patches; random [CLS]."""
    batch = make_batch(n=n, m=64, c=32, n_layers=2, planted_images=planted, seed=seed)
    layers = torch.from_numpy(np.stack(batch.feats, axis=1))  # (N, L, M, C)
    cls = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    return FeatureSet(layers, cls, (8, 8)), batch.planted_mask


def test_sparse_path_with_every_other_image_reproduces_the_exact_scores() -> None:
    """K = N - 1 as an explicit pair list: MuSc and CoDeGraph scores equal the dense engine's."""
    feats, _ = _features(30, (3, 7, 11, 19, 25))
    lnamd_cfg, engine = LNAMDConfig(degrees=(1, 3)), EngineConfig()
    dense = compute_first_pass(feats, lnamd_cfg, engine)
    listed = compute_first_pass(feats, lnamd_cfg, engine, plan=_all_others(30))
    assert torch.allclose(listed.scores(0.3), dense.scores(0.3), atol=1e-5)
    graph = toy_graph()
    s_dense, ex_dense, _ = graph_and_rescore(dense, graph)
    s_list, ex_list, _ = graph_and_rescore(listed, graph)
    assert torch.equal(ex_list, ex_dense) and bool(ex_dense.any())
    assert torch.allclose(s_list, s_dense, atol=1e-5)


def test_fixed_k_estimators_score_only_their_pairs_and_find_the_planted_group() -> None:
    feats, planted = _features()
    full = MuSc(degrees=(1,)).fit_predict(feats)
    fixed = MuSc(degrees=(1,), references=12, random_references=0.25).fit_predict(feats)
    assert fixed.diagnostics["image_pairs"] < full.diagnostics["image_pairs"] == 24 * 23 // 2
    assert fixed.diagnostics["references"][0]["references_per_image"] == 12
    # the planted copies are among each other's references here; the graph stages on the
    # K-long vectors find them (a constructed case: on real data see benchmarks/scale.py)
    cg = CoDeGraph(degrees=(1,), references=12, random_references=0.25, **asdict(toy_graph())).fit_predict(feats)
    assert cg.excluded is not None and cg.diagnostics["image_pairs"] == fixed.diagnostics["image_pairs"]
    assert cg.excluded.numpy()[planted].mean() > 0.5
    assert cg.excluded.numpy()[~planted].mean() < 0.05
    gain = cg.patch_scores.numpy()[planted].mean() - fixed.patch_scores.numpy()[planted].mean()
    assert gain > 0


def test_screening_computes_fewer_pairs_for_both_methods() -> None:
    feats, _ = _features(seed=2)
    musc = MuSc(degrees=(1,), screening_percent=40.0).fit_predict(feats)
    cg = CoDeGraph(degrees=(1,), screening_percent=40.0, **asdict(toy_graph())).fit_predict(feats)
    assert musc.diagnostics["image_pairs"] == cg.diagnostics["image_pairs"] < 24 * 23 // 2
    assert cg.diagnostics["subsets"][0]["references"]["plan"] == "screening"


def _window_brute(x: torch.Tensor, grid: tuple[int, int], radius: int) -> torch.Tensor:
    """(N, N, M) minima when patch m only meets patches within ``radius`` cells (Chebyshev)."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near = ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)
    sim = torch.einsum("qmc,jpc->qjmp", x.double(), x.double()).masked_fill(~near, -float("inf"))
    dist = torch.sqrt(torch.clamp(2 - 2 * sim.amax(dim=3), min=0))
    dist[torch.arange(x.shape[0]), torch.arange(x.shape[0])] = float("inf")
    return dist.float()


@pytest.mark.parametrize("radius", [0, 1, 2, 9])
def test_window_minima_on_exact_and_listed_plans_equal_the_brute_force(radius: int) -> None:
    grid = (5, 6)
    x = unit_features(10, 30, 12, seed=7)
    want = _window_brute(x, grid, radius)
    dense = plan_minima(x, None, with_argmin=True, window=radius, grid=grid)
    assert torch.equal(torch.isinf(dense.dist), torch.isinf(want))
    fin = torch.isfinite(want)
    assert torch.allclose(dense.dist[fin], want[fin], atol=1e-5)
    plan = fixed_k_plan(torch.randn(10, 4, generator=torch.Generator().manual_seed(7)), 4, 0.5, seed=0)
    listed = plan_minima(x, plan, with_argmin=True, window=radius, grid=grid)
    assert torch.allclose(listed.dist, _gather(want, plan.refs), atol=1e-5)
    # the argmin is a patch inside the window that attains the minimum
    ref_img = plan.refs[:, :, None].expand(-1, -1, 30)
    chosen = x[ref_img, listed.argmin.long()]  # (N, K, M, C)
    d = (x[:, None] - chosen).norm(dim=-1)
    assert torch.allclose(d, listed.dist, atol=1e-5)
    if radius >= 5:  # the window covers the grid: the unrestricted minima
        assert torch.allclose(dense.dist[fin], pair_minima(x).dist[fin], atol=1e-5)


def test_window_needs_the_patch_grid() -> None:
    with pytest.raises(ValueError, match="grid"):
        plan_minima(unit_features(4, 12, 8), None, window=1, grid=(5, 5))


def test_estimators_with_a_window_score_like_the_window_minima() -> None:
    feats, _ = _features(seed=3)
    got = MuSc(degrees=(1,), window=1).fit_predict(feats)
    want = sum(msm_scores(_window_brute(lnamd(feats.layers[:, li], (8, 8), 1), (8, 8), 1), 0.3)
               for li in range(2)) / 2
    assert torch.allclose(got.patch_scores, want, atol=1e-5)
    cg = CoDeGraph(degrees=(1,), window=1, references=10, **asdict(toy_graph())).fit_predict(feats)
    assert np.isfinite(cg.image_scores).all()


def test_volumes_refuse_a_2d_window() -> None:
    from codegraph_ad.config import RunConfig
    from codegraph_ad.errors import ConfigError
    from codegraph_ad.volumes.scoring import score_volume_features

    feats, _ = _features()
    with pytest.raises(ConfigError, match="3D grid"):
        score_volume_features(feats, np.ones((24, 64), dtype=bool), RunConfig(engine=EngineConfig(window=2)))
