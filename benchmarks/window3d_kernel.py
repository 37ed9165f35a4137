"""3D position-window kernel (engine/window3d.py) against the full M x M product + max.

    python benchmarks/window3d_kernel.py [--threads 1] [--reps 2] [--tag TAG]

Random unit tokens (the cost does not depend on their values), fp32, maxima + argmax on
both sides. Cases: a g = 8 cubic grid (M = 512) and its staggered lattice (M = 855) with
C = 96, A = B = 8 volumes; a g = 16 grid (M = 4096, the default 224-voxel cube) with C = 384
(3 x 128, the default projection), one query against 16 references and 8 queries against
16. Radius 1 and 2. The baseline is window_kernel.py's full product + max, chunked to 32 MB.
Wall time and process CPU time, the minimum of ``--reps`` runs after a warm-up. Writes
benchmarks/results/window3d_kernel[_<tag>].json.
"""

from __future__ import annotations


import torch
from window_kernel import full_product_max, kernel_main, report, speed_row, timed

from codegraph_ad.engine.window3d import Lattice3D, use_offsets, window_block_3d, window_pair_cost_3d

CASES = [  # (g, staggered, C, A, B)
    (8, False, 96, 8, 8),
    (8, True, 96, 8, 8),
    (16, False, 384, 1, 16),
    (16, False, 384, 8, 16),
]


def case(g: int, staggered: bool, c: int, n_a: int, n_b: int, radii: list[int], reps: int) -> list[dict]:
    lattice = Lattice3D((g, g, g), staggered)
    m = lattice.n_tokens
    gen = torch.Generator().manual_seed(g * 100 + n_a)
    left = torch.nn.functional.normalize(torch.randn(n_a, m, c, generator=gen), dim=-1)
    right = torch.nn.functional.normalize(torch.randn(n_b, m, c, generator=gen), dim=-1)
    base = timed(lambda: full_product_max(left, right), max(1, reps - 1))
    rows = []
    for r in radii:
        win = timed(lambda: window_block_3d(left, right, lattice, r), reps)
        row = speed_row(base, win, window_pair_cost_3d(lattice, r), m,
                        {"grid": [g, g, g], "staggered": staggered, "M": m, "A": n_a, "B": n_b, "C": c,
                         "radius": r, "path": "offsets" if use_offsets(lattice, r, n_a) else "full product + bias"})
        rows.append(row)
        report(f"g={g} staggered={staggered} M={m} C={c} A={n_a} B={n_b} r={r}", row, row["path"])
    return rows


def main() -> None:
    def cases(reps: int) -> list[dict]:
        rows = []
        for g, staggered, c, n_a, n_b in CASES:
            rows += case(g, staggered, c, n_a, n_b, [1, 2], reps)
        return rows

    kernel_main("window3d_kernel", "window_block_3d (maxima + argmax) vs full M x M product + max, fp32, "
                "random unit tokens", 1, 2, cases)


if __name__ == "__main__":
    main()
