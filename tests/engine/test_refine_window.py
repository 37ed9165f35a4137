"""CoDeGraph's refinement keeps the first pass's position window (2D grids and 3D lattices)."""

from __future__ import annotations

import itertools

import pytest
import torch

from codegraph_ad.engine.mutual import plan_minima, refine_minima
from codegraph_ad.engine.window3d import Lattice3D
from tests.conftest import unit_features
from tests.engine.test_window3d import centres


def positions(grid) -> tuple[torch.Tensor, int]:
    """Token positions in cells (the test module's own, plain-loop lattice centres)."""
    if isinstance(grid, Lattice3D):
        return centres(grid), 1
    h, w = grid
    return torch.tensor(list(itertools.product(range(h), range(w)))), 1


def brute_refined(x: torch.Tensor, excluded: torch.Tensor, grid, radius: int) -> torch.Tensor:
    """float64 loops: nearest remaining patch inside each patch's window (inf where none)."""
    n, m, _ = x.shape
    pos, unit = positions(grid)
    near = (pos[:, None] - pos[None]).abs().amax(dim=2) <= unit * radius  # (M, M)
    xd = x.double()
    out = torch.full((n, n, m), float("inf"), dtype=torch.float64)
    for q in range(n):
        for j in range(n):
            if q == j:
                continue
            d = torch.cdist(xd[q], xd[j])
            d[:, excluded[j]] = float("inf")
            d[~near] = float("inf")
            out[q, j] = d.min(dim=1).values
    return out


@pytest.mark.parametrize("grid,radius", [((5, 4), 1), ((4, 4), 0), (Lattice3D((3, 3, 3)), 1),
                                         (Lattice3D((3, 3, 3), True), 1)], ids=str)
def test_refined_minima_stay_inside_the_window(grid, radius):
    m = grid[0] * grid[1] if isinstance(grid, tuple) else grid.n_tokens
    x = unit_features(5, m, 6, seed=3)
    first = plan_minima(x, with_argmin=True, window=radius, grid=grid)
    excluded = torch.zeros(5, m, dtype=torch.bool)
    excluded[1, : m // 2] = True  # half of image 1: some windows lose every patch
    excluded[3, ::3] = True
    got = refine_minima(x, first, excluded, window=radius, grid=grid)
    want = brute_refined(x, excluded, grid, radius)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    assert torch.allclose(got[finite].double(), want[finite], atol=1e-5)
    # without the window the refinement searches the whole image: different values
    free = refine_minima(x, first, excluded)
    assert not torch.equal(torch.isinf(free), torch.isinf(want)) or not torch.allclose(free, got)
