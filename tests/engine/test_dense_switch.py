"""A listed plan that holds most pairs is computed as the exact plan's blocks, cut to its slots.

At M = 256 a listed pair costs about 1.6x an exact-plan pair, so screening at p = 80 was
slower than no screening (benchmarks/results/screening_224.md). ``dense_is_cheaper`` picks the
dense blocks there; the values are the listed path's up to float rounding.
"""

from __future__ import annotations

import pytest
import torch

from codegraph_ad.engine import mutual
from codegraph_ad.engine.mutual import SlotLayout, dense_is_cheaper, pair_minima, plan_minima
from codegraph_ad.engine.plan import screening_plan
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods import MuSc
from tests.conftest import unit_features

N, M, C = 20, 32, 24


def _plan(percent: float):
    cls = torch.randn(N, 8, generator=torch.Generator().manual_seed(2))
    return screening_plan(cls, percent)


def test_the_rule(dense_switch) -> None:
    many, few = _plan(90), _plan(20)
    assert many.n_pairs() * 1.6 > N * (N - 1) / 2 > few.n_pairs() * 1.6
    assert dense_is_cheaper(many, M, budget_mb=4096)
    assert not dense_is_cheaper(few, M, budget_mb=4096)
    assert not dense_is_cheaper(many, 1024, budget_mb=4096)  # at M = 1,024 a listed pair costs the same
    dense_mb = N * N * M * 5 / 1e6
    assert not dense_is_cheaper(many, M, budget_mb=3 * dense_mb)  # the dense minima must fit


def test_tests_keep_the_listed_path_unless_asked() -> None:
    assert not dense_is_cheaper(_plan(90), M, budget_mb=4096)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_dense_blocks_cut_to_the_slots_equal_the_listed_path(dense_switch, monkeypatch, precision) -> None:
    x = unit_features(N, M, C, seed=5)
    plan = _plan(80)
    listed = mutual._collect(mutual._listed_job(x, plan, 4096, precision, True), None, False, "")

    def refuse(*args, **kwargs):
        raise AssertionError("the listed path ran although the dense blocks are cheaper")

    monkeypatch.setattr(mutual, "_listed_job", refuse)
    got = plan_minima(x, plan, budget_mb=4096, precision=precision, with_argmin=True)
    assert got.dist.shape == (N, plan.n_slots, M) and torch.equal(got.refs, plan.refs)
    assert torch.allclose(got.dist, listed.dist, atol=1e-6 if precision == "fp32" else 2e-2)
    if precision == "fp32":
        assert torch.equal(got.argmin, listed.argmin)


def test_the_dense_switch_reads_each_querys_references_also_for_a_range_of_queries() -> None:
    x = unit_features(6, 8, 4, seed=1)
    dense = pair_minima(x, with_argmin=True)
    refs = torch.tensor([[1, 2], [0, 5], [3, 4], [0, 1], [2, 5], [3, 4]])
    job = mutual._dense_job(x, 4096, "fp32", True, None, refs=refs)
    sim, arg = job.layout.empty(6)
    mutual._run_tasks(None, job.fn, job.ctx, job.tasks, sim, arg, False, "")
    for q0, q1 in ((0, 6), (2, 5)):  # every query here, or a range held elsewhere
        cut, cut_arg = job.layout.finish(sim[q0:q1].clone(), arg[q0:q1], q0)
        for q in range(q0, q1):
            for s in range(2):
                assert torch.equal(cut[q - q0, s], dense.dist[q, refs[q, s]])
                assert torch.equal(cut_arg[q - q0, s], dense.argmin[q, refs[q, s]])
    assert isinstance(job.layout, SlotLayout) and job.layout.dense


def test_musc_with_screening_scores_alike_on_either_path(dense_switch) -> None:
    layers = torch.randn(N, 2, M, C, generator=torch.Generator().manual_seed(3))
    fs = FeatureSet(layers, torch.randn(N, 8, generator=torch.Generator().manual_seed(4)), (4, 8))
    dense = MuSc(screening_percent=80).fit_predict(fs).patch_scores
    mutual._LISTED_PAIR_COST_SMALL_M, saved = 0.0, mutual._LISTED_PAIR_COST_SMALL_M
    try:
        listed = MuSc(screening_percent=80).fit_predict(fs).patch_scores
    finally:
        mutual._LISTED_PAIR_COST_SMALL_M = saved
    assert torch.allclose(dense, listed, atol=1e-5)
