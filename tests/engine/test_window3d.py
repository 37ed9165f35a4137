"""The 3D window kernel (volumes, --window) against float64 brute force on small lattices."""

from __future__ import annotations

import itertools

import pytest
import torch

from codegraph_ad.engine.window3d import (
    Lattice3D,
    _dense,
    _Frame,
    _offsets,
    argmax_dtype,
    use_offsets,
    window_block_3d,
    window_pair_cost_3d,
)
from tests.conftest import unit_features


def centres(lattice: Lattice3D) -> torch.Tensor:
    """(M, 3) token centres in cells, in token order, written out with plain loops: the cubic
    grid's cell (i, j, k) at (i, j, k), the shifted grid's half a cell further on every axis."""
    out = [(z, y, x) for z, y, x in itertools.product(*(range(n) for n in lattice.shape))]
    if lattice.staggered:
        d, h, w = lattice.shape
        out += [(z + 0.5, y + 0.5, x + 0.5) for z, y, x in itertools.product(range(d - 1), range(h - 1), range(w - 1))]
    return torch.tensor(out, dtype=torch.float64)


def window_mask(lattice: Lattice3D, radius: int) -> torch.Tensor:
    """(M, M) bool: Chebyshev distance between token centres <= radius cells."""
    pos = centres(lattice)
    return (pos[:, None] - pos[None]).abs().amax(dim=2) <= radius


def brute(left: torch.Tensor, right: torch.Tensor, lattice: Lattice3D, radius: int):
    """Dot products by double loop over (query token, reference token) in float64, -inf
    outside the window; the max over the reference tokens."""
    n_a, m, _ = left.shape
    n_b = right.shape[0]
    mask = window_mask(lattice, radius)
    masked = torch.full((n_a, n_b, m, m), float("-inf"), dtype=torch.float64)
    for i in range(m):
        for j in range(m):
            if mask[i, j]:
                masked[:, :, i, j] = left[:, i].double() @ right[:, j].double().T
    return masked.amax(dim=3), masked


def check(best, arg, left, right, lattice, radius):
    ref, masked = brute(left, right, lattice, radius)
    assert best.dtype == torch.float32 and best.shape == ref.shape
    assert torch.allclose(best.double(), ref, atol=1e-5, rtol=0)
    assert arg.dtype == argmax_dtype(lattice.n_tokens) and arg.shape == ref.shape
    # the argmax is a token inside the window (finite there) that attains the maximum
    chosen = masked.gather(3, arg.long().unsqueeze(3)).squeeze(3)
    assert bool(torch.isfinite(chosen).all())
    assert torch.allclose(chosen, ref, atol=1e-5, rtol=0)


LATTICES = [Lattice3D((4, 4, 4)), Lattice3D((5, 5, 5)), Lattice3D((3, 4, 5)), Lattice3D((4, 4, 4), True),
            Lattice3D((3, 5, 4), True)]


def _run(path: str, left, right, lattice, radius, budget):
    n_a, m, _ = left.shape
    best = torch.empty((n_a, right.shape[0], m))
    arg = torch.empty((n_a, right.shape[0], m), dtype=argmax_dtype(m))
    if path == "dense":
        _dense(left, right, lattice, radius, best, arg, budget)
    else:
        _offsets(left, right, _Frame(lattice, radius, left.device), best, arg, budget)
    return best, arg


@pytest.mark.parametrize("lattice", LATTICES, ids=str)
@pytest.mark.parametrize("radius", [0, 1, 2])
def test_window_block_3d_matches_brute_force(lattice, radius):
    m = lattice.n_tokens
    left = unit_features(3, m, 8, seed=1)
    right = unit_features(4, m, 8, seed=2)
    best, arg = window_block_3d(left, right, lattice, radius)
    check(best, arg, left, right, lattice, radius)


@pytest.mark.parametrize("path", ["offsets", "dense"])
@pytest.mark.parametrize("lattice", LATTICES, ids=str)
@pytest.mark.parametrize("radius", [0, 1, 2, 4])
def test_both_paths_match_brute_force(path, lattice, radius):
    # window_block_3d picks one of them; each must hold on its own, borders included
    m = lattice.n_tokens
    left = unit_features(2, m, 8, seed=3)
    right = unit_features(3, m, 8, seed=4)
    best, arg = _run(path, left, right, lattice, radius, 64 << 20)
    check(best, arg, left, right, lattice, radius)


@pytest.mark.parametrize("path", ["offsets", "dense"])
@pytest.mark.parametrize("lattice", [Lattice3D((5, 4, 4)), Lattice3D((4, 5, 4), True)], ids=str)
@pytest.mark.parametrize("budget", [1, 3000, 40000])
def test_tiny_budget_chunks_give_the_same_result(path, lattice, budget):
    m = lattice.n_tokens
    left = unit_features(5, m, 8, seed=5)
    right = unit_features(7, m, 8, seed=6)
    best, arg = _run(path, left, right, lattice, 1, budget)
    check(best, arg, left, right, lattice, 1)
    whole, _ = _run(path, left, right, lattice, 1, 64 << 20)
    assert torch.allclose(best, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("lattice", [Lattice3D((4, 4, 4)), Lattice3D((3, 5, 4)), Lattice3D((4, 4, 4), True)], ids=str)
def test_radius_covering_the_lattice_gives_unrestricted_maxima(lattice):
    m = lattice.n_tokens
    left = unit_features(2, m, 16, seed=9)
    right = unit_features(3, m, 16, seed=10)
    full = torch.einsum("amc,bnc->abmn", left.double(), right.double()).amax(dim=3)
    for radius in (max(lattice.shape) - 1, max(lattice.shape), 100):
        best, _ = window_block_3d(left, right, lattice, radius)
        assert torch.allclose(best.double(), full, atol=1e-5, rtol=0)
    # one cell less leaves some pairs out, and the maxima may drop
    assert window_pair_cost_3d(lattice, max(lattice.shape) - 2) < m * m


def test_staggered_radius_zero_keeps_each_token_on_its_own_cell():
    # centres of the two grids are half a cell apart: at radius 0 a token meets its own
    # position only, in its own grid
    lattice = Lattice3D((3, 3, 3), True)
    m = lattice.n_tokens
    left = unit_features(2, m, 8, seed=11)
    right = unit_features(2, m, 8, seed=12)
    best, arg = window_block_3d(left, right, lattice, 0)
    assert torch.equal(arg.long(), torch.arange(m).expand(2, 2, m))
    assert torch.allclose(best, torch.einsum("amc,bmc->abm", left, right), atol=1e-6)


def test_ties_resolve_to_a_token_inside_the_window():
    lattice = Lattice3D((4, 4, 4), True)
    m = lattice.n_tokens
    left = unit_features(2, m, 8, seed=13)
    two = unit_features(1, 2, 8, seed=14)[0]
    right = two[torch.arange(m) % 2].expand(3, m, 8).contiguous()
    for radius in (0, 1, 2):
        best, arg = window_block_3d(left, right, lattice, radius)
        check(best, arg, left, right, lattice, radius)


def test_values_only_tuple_grid_and_input_dtypes():
    left = unit_features(2, 60, 16, seed=15)
    right = unit_features(3, 60, 16, seed=16)
    best, arg = window_block_3d(left, right, (3, 4, 5), 1, with_argmax=False)
    assert arg is None
    ref, _ = brute(left, right, Lattice3D((3, 4, 5)), 1)
    assert torch.allclose(best.double(), ref, atol=1e-5, rtol=0)
    best64, arg64 = window_block_3d(left.double(), right.double(), (3, 4, 5), 1)
    assert best64.dtype == torch.float32 and arg64.dtype == torch.int16
    left_t = left.transpose(0, 1).contiguous().transpose(0, 1)  # non-contiguous
    assert torch.allclose(window_block_3d(left_t, right, (3, 4, 5), 1)[0], best, atol=1e-6, rtol=0)


def test_empty_image_lists():
    best, arg = window_block_3d(unit_features(0, 27, 4), unit_features(3, 27, 4), (3, 3, 3), 1)
    assert best.shape == (0, 3, 27) and arg.shape == (0, 3, 27)


@pytest.mark.parametrize("lattice", [Lattice3D((1, 1, 1)), Lattice3D((4, 4, 4)), Lattice3D((3, 5, 4)),
                                     Lattice3D((4, 4, 4), True), Lattice3D((2, 3, 4), True)], ids=str)
@pytest.mark.parametrize("radius", [0, 1, 2, 5])
def test_window_pair_cost_counts_the_mask(lattice, radius):
    assert window_pair_cost_3d(lattice, radius) == int(window_mask(lattice, radius).sum())


def test_cost_is_window_cubed_per_token_far_from_the_borders():
    assert window_pair_cost_3d((16, 16, 16), 15) == 4096 ** 2
    assert 0.7 * 4096 * 27 < window_pair_cost_3d((16, 16, 16), 1) < 4096 * 27


def test_offsets_chosen_for_small_windows_full_product_for_large():
    assert use_offsets((16, 16, 16), 1, 1)
    assert not use_offsets((16, 16, 16), 15, 8)  # the whole lattice
    assert not use_offsets((8, 8, 8), 4, 8)


def test_argmax_dtype_widens_past_int16():
    assert argmax_dtype(32 ** 3) == torch.int16
    assert argmax_dtype(32 ** 3 + 31 ** 3) == torch.int32


@pytest.mark.parametrize(
    ("left_shape", "right_shape", "grid", "radius", "message"),
    [
        ((2, 27, 8), (3, 27, 4), (3, 3, 3), 1, "channels"),
        ((2, 26, 8), (3, 27, 8), (3, 3, 3), 1, "tokens per volume"),
        ((2, 27, 8), (3, 35, 8), Lattice3D((3, 3, 3), True), 1, "tokens per volume"),
        ((27, 8), (3, 27, 8), (3, 3, 3), 1, "channels\\)"),
        ((2, 27, 8), (3, 27, 8), (3, 3, 3), -1, "non-negative"),
        ((2, 27, 8), (3, 27, 8), (3, 3, 3), 1.5, "non-negative"),
        ((2, 27, 8), (3, 27, 8), (3, 0, 9), 1, "positive sides"),
    ],
)
def test_bad_inputs_are_refused(left_shape, right_shape, grid, radius, message):
    with pytest.raises(ValueError, match=message):
        window_block_3d(torch.zeros(left_shape), torch.zeros(right_shape), grid, radius)


def test_staggered_needs_two_cells_per_axis():
    with pytest.raises(ValueError, match="at least 2"):
        Lattice3D((1, 3, 3), True)


# -- the engine: plan_minima on a 3D lattice, every reference plan ------------------------


def _window_minima_brute(x: torch.Tensor, lattice: Lattice3D, radius: int) -> torch.Tensor:
    """(N, N, M) minima of the exact plan when token m only meets tokens within ``radius`` cells."""
    sim = torch.einsum("qmc,jpc->qjmp", x.double(), x.double()).masked_fill(~window_mask(lattice, radius),
                                                                           -float("inf"))
    dist = torch.sqrt(torch.clamp(2 - 2 * sim.amax(dim=3), min=0))
    dist[torch.arange(x.shape[0]), torch.arange(x.shape[0])] = float("inf")
    return dist.float()


@pytest.mark.parametrize("lattice", [Lattice3D((4, 4, 4)), Lattice3D((3, 4, 4), True)], ids=str)
@pytest.mark.parametrize("radius", [0, 1, 3])
@pytest.mark.parametrize("path", ["rule", "kernel", "symmetric"])
def test_plan_minima_with_a_3d_window_equal_the_brute_force(lattice, radius, path, monkeypatch):
    from codegraph_ad.engine import mutual
    from codegraph_ad.engine.mutual import argmin_dtype, pair_minima, plan_minima
    from codegraph_ad.engine.plan import fixed_k_plan, screening_plan

    if path != "rule":  # the 3D kernel, or whole-volume products with the window's bias
        monkeypatch.setattr(mutual, "symmetric_window_is_cheaper", lambda *a, **k: path == "symmetric")
    m = lattice.n_tokens
    x = unit_features(8, m, 12, seed=21)
    want = _window_minima_brute(x, lattice, radius)
    fin = torch.isfinite(want)
    dense = plan_minima(x, None, with_argmin=True, window=radius, grid=lattice)
    assert torch.equal(torch.isinf(dense.dist), torch.isinf(want))
    assert torch.allclose(dense.dist[fin], want[fin], atol=1e-5)
    assert dense.argmin.dtype == argmin_dtype(m)
    g = torch.Generator().manual_seed(21)
    for plan in (fixed_k_plan(torch.randn(8, 4, generator=g), 3, 0.5, seed=0),
                 screening_plan(torch.randn(8, 4, generator=g), 50.0)):
        listed = plan_minima(x, plan, with_argmin=True, window=radius, grid=lattice)
        expect = torch.gather(want, 1, plan.refs.unsqueeze(2).expand(-1, -1, m))
        assert torch.allclose(listed.dist, expect, atol=1e-5)
        # the argmin is a token inside the window that attains the minimum
        chosen = x[plan.refs[:, :, None].expand(-1, -1, m), listed.argmin.long()]
        assert torch.allclose((x[:, None] - chosen).norm(dim=-1), listed.dist, atol=1e-5)
        assert bool(window_mask(lattice, radius)[torch.arange(m), listed.argmin.long()].all())
    if radius >= max(lattice.shape) - 1:  # the window covers the lattice: the unrestricted minima
        assert torch.allclose(dense.dist[fin], pair_minima(x).dist[fin], atol=1e-5)


def test_a_3d_tuple_grid_is_the_cubic_lattice_and_must_hold_the_tokens():
    from codegraph_ad.engine.mutual import plan_minima

    x = unit_features(4, 27, 8, seed=22)
    by_tuple = plan_minima(x, None, window=1, grid=(3, 3, 3))
    by_lattice = plan_minima(x, None, window=1, grid=Lattice3D((3, 3, 3)))
    assert torch.equal(by_tuple.dist, by_lattice.dist)
    with pytest.raises(ValueError, match="holds 35"):
        plan_minima(x, None, window=1, grid=Lattice3D((3, 3, 3), True))
    # the flattened (3, 9) layout is a 2D grid: accepted, but it is a different window
    flat = plan_minima(x, None, window=1, grid=(3, 9))
    assert not torch.allclose(flat.dist, by_tuple.dist)
