"""The engine's two 2D window paths, per plan and radius: which one ``plan_minima`` should take.

    python benchmarks/window_symmetric.py [--threads 2] [--reps 2] [--tag TAG]

The tiled kernel (engine/window.py) computes each direction of an image pair on its own,
about (2r+1)^2 patch pairs per patch; the symmetric path is the engine's whole-image product
(M^2 patch pairs, both directions) with a -inf bias outside the window. Both are timed through
``plan_minima`` with the choice forced, on random unit tokens (C = 384): the exact plan
(N = 40 at M = 256, N = 16 at M = 1,024) and a fixed-K plan (K = 10 / 5), r = 1..8, with
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

C = 384
CASES = ((16, 40, 10, range(1, 7)), (32, 16, 5, range(1, 9)))  # (side, N, K, radii)


@contextmanager
def forced(symmetric: bool):
    """``plan_minima`` with the path chosen instead of the rule."""
    rule = mutual.symmetric_window_is_cheaper
    mutual.symmetric_window_is_cheaper = lambda *args, **kwargs: symmetric
    try:
        yield
    finally:
        mutual.symmetric_window_is_cheaper = rule


def both_paths(feats: torch.Tensor, plan: ReferencePlan, grid: tuple[int, int], r: int,
               reps: int) -> dict:
    def run(symmetric: bool):
        with forced(symmetric):
            return mutual.plan_minima(feats, plan, window=r, grid=grid, with_argmin=True)

    tiled, sym = run(False), run(True)
    finite = torch.isfinite(tiled.dist)
    same = (torch.equal(finite, torch.isfinite(sym.dist))
            and float((tiled.dist[finite] - sym.dist[finite]).abs().max()) < 1e-5)
    t_tiled, t_sym = timed(lambda: run(False), reps), timed(lambda: run(True), reps)
    rule = mutual.symmetric_window_is_cheaper(plan, grid, r, 4096)
    faster = "symmetric" if t_sym["wall_s"] < t_tiled["wall_s"] else "tiled"
    return {"radius": r, "tiled": t_tiled, "symmetric": t_sym,
            "symmetric_over_tiled": round(t_sym["wall_s"] / t_tiled["wall_s"], 2),
            "rule": "symmetric" if rule else "tiled", "faster": faster, "same_minima": same}


def cases(reps: int) -> list[dict]:
    rows = []
    for side, n, k, radii in CASES:
        g = torch.Generator().manual_seed(side)
        feats = torch.nn.functional.normalize(torch.randn(n, side * side, C, generator=g), dim=-1)
        plans = {"exact": ReferencePlan(n), f"fixed K={k}": fixed_k_plan(feats.mean(1), k, 0.2, 0)}
        for name, plan in plans.items():
            for r in radii:
                row = {"M": side * side, "N": n, "plan": name, **both_paths(feats, plan, (side, side), r, reps)}
                rows.append(row)
                print(f"M={row['M']:5d} {name:10s} r={r}: tiled {row['tiled']['wall_s']:.2f} s, symmetric "
                      f"{row['symmetric']['wall_s']:.2f} s (x{row['symmetric_over_tiled']}), rule -> "
                      f"{row['rule']}, faster {row['faster']}, same minima {row['same_minima']}", flush=True)
    return rows


if __name__ == "__main__":
    kernel_main("window_symmetric", "plan_minima's 2D window paths (tiled kernel vs symmetric full product "
                "with a bias), fp32 with argmins, random unit tokens", 2, 2, cases)
