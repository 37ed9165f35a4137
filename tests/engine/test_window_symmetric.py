"""A 2D window computed as whole-image products with a -inf bias (both directions of a pair
from one product) gives the tiled kernel's minima; the rule takes it where the window is wide."""

from __future__ import annotations

import pytest
import torch

from codegraph_ad.engine import mutual
from codegraph_ad.engine.mutual import pair_minima, plan_minima, symmetric_window_is_cheaper
from codegraph_ad.engine.plan import ReferencePlan, fixed_k_plan, screening_plan
from codegraph_ad.engine.window import in_window, window_bias
from tests.conftest import unit_features

GRID = (5, 6)
N, M, C = 10, 30, 12


def take(monkeypatch: pytest.MonkeyPatch, symmetric: bool) -> None:
    """Force plan_minima's choice of the 2D window path."""
    monkeypatch.setattr(mutual, "symmetric_window_is_cheaper", lambda *args, **kwargs: symmetric)


def _brute(x: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N, M) float64 minima inside the window and the (M, M) window itself."""
    near = in_window(GRID, radius, slice(None))
    sim = torch.einsum("qmc,jpc->qjmp", x.double(), x.double()).masked_fill(~near, -float("inf"))
    dist = torch.sqrt(torch.clamp(2 - 2 * sim.amax(dim=3), min=0))
    dist[torch.arange(N), torch.arange(N)] = float("inf")
    return dist, near


def _plans() -> dict[str, ReferencePlan | None]:
    g = torch.Generator().manual_seed(3)
    return {"exact": None, "fixed_k": fixed_k_plan(torch.randn(N, 4, generator=g), 4, 0.5, seed=0),
            "screening": screening_plan(torch.randn(N, 4, generator=g), 60.0)}


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
@pytest.mark.parametrize("plan_name", ["exact", "fixed_k", "screening"])
def test_both_paths_equal_the_brute_force(radius: int, plan_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = unit_features(N, M, C, seed=11)
    want, near = _brute(x, radius)
    plan = _plans()[plan_name]
    results = []
    for symmetric in (False, True):
        take(monkeypatch, symmetric)
        results.append(plan_minima(x, plan, with_argmin=True, window=radius, grid=GRID))
    tiled, sym = results
    slots = (plan or ReferencePlan(N)).refs
    expect = want if slots is None else torch.gather(want, 1, slots[:, :, None].expand(-1, -1, M))
    for got in (tiled, sym):
        assert torch.equal(torch.isinf(got.dist), torch.isinf(expect))
        fin = torch.isfinite(expect)
        assert torch.allclose(got.dist[fin].double(), expect[fin], atol=1e-5)
    # the symmetric path's argmin lies inside the window and attains the minimum
    images = sym.slot_images()[:, :, None].expand(-1, -1, M)
    arg = sym.argmin.long()
    own = torch.arange(M).view(1, 1, M).expand_as(arg)
    assert bool(near[own, arg].all())
    d = (x[:, None] - x[images, arg]).norm(dim=-1)
    fin = torch.isfinite(sym.dist)
    assert torch.allclose(d[fin], sym.dist[fin], atol=1e-5)


def test_a_listed_plan_through_the_dense_blocks_keeps_the_window(dense_switch, monkeypatch: pytest.MonkeyPatch) -> None:
    x = unit_features(N, M, C, seed=12)
    plan = screening_plan(torch.randn(N, 4, generator=torch.Generator().manual_seed(4)), 80.0)
    assert mutual.dense_is_cheaper(plan, M, 4096)
    take(monkeypatch, True)
    got = plan_minima(x, plan, window=1, grid=GRID)
    want, _ = _brute(x, 1)
    assert torch.allclose(got.dist.double(), torch.gather(want, 1, plan.refs[:, :, None].expand(-1, -1, M)),
                          atol=1e-5)


def test_the_rule_takes_the_full_product_for_wide_windows_only() -> None:
    exact = ReferencePlan(80)
    assert not symmetric_window_is_cheaper(exact, (16, 16), 1, 4096)
    assert symmetric_window_is_cheaper(exact, (16, 16), 6, 4096)
    assert not symmetric_window_is_cheaper(exact, (32, 32), 3, 4096)
    assert symmetric_window_is_cheaper(exact, (32, 32), 12, 4096)
    listed = fixed_k_plan(torch.randn(80, 8, generator=torch.Generator().manual_seed(0)), 10, 0.2, seed=0)
    assert not symmetric_window_is_cheaper(listed, (16, 16), 1, 4096)
    assert symmetric_window_is_cheaper(listed, (16, 16), 6, 4096)
    assert not symmetric_window_is_cheaper(ReferencePlan(1), (16, 16), 6, 4096)


def test_the_bias_needs_the_fp32_product_and_the_patch_count() -> None:
    x = unit_features(4, M, C, seed=1)
    with pytest.raises(ValueError, match="fp32"):
        pair_minima(x, precision="bf16", bias=window_bias(GRID, 1))
    with pytest.raises(ValueError, match=r"\(30, 30\)"):
        pair_minima(x, bias=torch.zeros(4, 4))


def test_the_rule_on_a_3d_lattice_and_the_bias_budget() -> None:
    from codegraph_ad.features.lattice import Lattice3D

    exact = ReferencePlan(32)
    assert not symmetric_window_is_cheaper(exact, Lattice3D((12, 12, 12)), 1, 4096)
    assert symmetric_window_is_cheaper(exact, Lattice3D((12, 12, 12)), 4, 4096)
    # a (13,824)^2 bias is 764 MB, more than a sixteenth of the default budget
    assert not symmetric_window_is_cheaper(exact, Lattice3D((24, 24, 24)), 12, 4096)


def test_the_3d_bias_is_the_window_of_token_centres() -> None:
    from codegraph_ad.features.lattice import Lattice3D

    lattice = Lattice3D((3, 4, 4), True)
    bias = window_bias(lattice, 1)
    assert torch.equal(torch.isfinite(bias), in_window(lattice, 1, slice(None)))
    assert torch.equal(bias, bias.T)
