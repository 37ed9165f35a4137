"""The engine's two window paths, per plan and radius: which one ``plan_minima`` should take.

    python benchmarks/window_symmetric.py [--threads 2] [--reps 2] [--tag TAG]

The kernels (engine/window.py: 2D tiles; engine/window3d.py: 3D offsets) compute each
direction of an image pair on their own, about (2r+1)^2 (3D: (2r+1)^3) pairs per patch; the
symmetric path is the engine's whole-image product (M^2 patch pairs, both directions) with a
-inf bias outside the window. Both are timed through
``plan_minima`` with the choice forced, on random unit tokens (C = 384): the exact plan
(N = 40 at M = 256, N = 16 at M = 1,024 and on the 12^3 token lattice of D = 168 volumes) and
a fixed-K plan (K = 10 / 5), r = 1..8 (3D: 1..4), with
argmins. Each row says which path the rule (``symmetric_window_is_cheaper``) takes and
checks that both paths return the same minima. Writes
benchmarks/results/window_symmetric[_<tag>].json.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from window_kernel import kernel_main, timed

import codegraph_ad.engine.mutual as mutual
from codegraph_ad.engine.plan import ReferencePlan, fixed_k_plan
from codegraph_ad.features.lattice import Lattice3D

C = 384
# (grid, N, K, radii): 224 px and 448 px patch grids, and the volume tokens of D = 168
CASES = (((16, 16), 40, 10, range(1, 7)), ((32, 32), 16, 5, range(1, 9)),
         (Lattice3D((12, 12, 12)), 16, 5, range(1, 5)))


@contextmanager
def forced(symmetric: bool):
    """``plan_minima`` with the path chosen instead of the rule."""
    rule = mutual.symmetric_window_is_cheaper
    mutual.symmetric_window_is_cheaper = lambda *args, **kwargs: symmetric
    try:
        yield
    finally:
        mutual.symmetric_window_is_cheaper = rule


def both_paths(feats: torch.Tensor, plan: ReferencePlan, grid: tuple[int, int] | Lattice3D, r: int,
               reps: int) -> dict:
    def run(symmetric: bool):
        with forced(symmetric):
            return mutual.plan_minima(feats, plan, window=r, grid=grid, with_argmin=True)

    kernel, sym = run(False), run(True)
    finite = torch.isfinite(kernel.dist)
    same = (torch.equal(finite, torch.isfinite(sym.dist))
            and float((kernel.dist[finite] - sym.dist[finite]).abs().max()) < 1e-5)
    t_kernel, t_sym = timed(lambda: run(False), reps), timed(lambda: run(True), reps)
    rule = mutual.symmetric_window_is_cheaper(plan, grid, r, 4096)
    faster = "symmetric" if t_sym["wall_s"] < t_kernel["wall_s"] else "kernel"
    return {"radius": r, "kernel": t_kernel, "symmetric": t_sym,
            "symmetric_over_kernel": round(t_sym["wall_s"] / t_kernel["wall_s"], 2),
            "rule": "symmetric" if rule else "kernel", "faster": faster, "same_minima": same}


def cases(reps: int) -> list[dict]:
    rows = []
    for grid, n, k, radii in CASES:
        m = grid.n_tokens if isinstance(grid, Lattice3D) else grid[0] * grid[1]
        g = torch.Generator().manual_seed(m)
        feats = torch.nn.functional.normalize(torch.randn(n, m, C, generator=g), dim=-1)
        plans = {"exact": ReferencePlan(n), f"fixed K={k}": fixed_k_plan(feats.mean(1), k, 0.2, 0)}
        shape = list(grid.shape) if isinstance(grid, Lattice3D) else list(grid)
        for name, plan in plans.items():
            for r in radii:
                row = {"grid": shape, "M": m, "N": n, "plan": name, **both_paths(feats, plan, grid, r, reps)}
                rows.append(row)
                print(f"M={row['M']:5d} {name:10s} r={r}: kernel {row['kernel']['wall_s']:.2f} s, symmetric "
                      f"{row['symmetric']['wall_s']:.2f} s (x{row['symmetric_over_kernel']}), rule -> "
                      f"{row['rule']}, faster {row['faster']}, same minima {row['same_minima']}", flush=True)
    return rows


if __name__ == "__main__":
    kernel_main("window_symmetric", "plan_minima's window paths (2D tiled / 3D offset kernel vs symmetric "
                "full product with a bias), fp32 with argmins, random unit tokens", 2, 2, cases)
