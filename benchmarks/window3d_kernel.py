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

import argparse
import os

import torch
from common import machine_info, write_result
from window_kernel import full_product_max, timed

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
        row = {"grid": [g, g, g], "staggered": staggered, "M": m, "A": n_a, "B": n_b, "C": c, "radius": r,
               "path": "offsets" if use_offsets(lattice, r, n_a) else "full product + bias",
               "pair_share": round(window_pair_cost_3d(lattice, r) / m**2, 4),
               "full_product": base, "window": win,
               "speedup_wall": round(base["wall_s"] / win["wall_s"], 2),
               "speedup_cpu": round(base["cpu_s"] / win["cpu_s"], 2)}
        rows.append(row)
        print(f"g={g} staggered={staggered} M={m} C={c} A={n_a} B={n_b} r={r}: full {base['wall_s']:.3f} s, "
              f"window {win['wall_s']:.3f} s, x{row['speedup_wall']} wall, x{row['speedup_cpu']} cpu "
              f"({row['path']}, pairs {100 * row['pair_share']:.1f}% of M^2)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    for g, staggered, c, n_a, n_b in CASES:
        rows += case(g, staggered, c, n_a, n_b, [1, 2], args.reps)
    write_result("window3d_kernel", args.tag, {
        "what": "window_block_3d (maxima + argmax) vs full M x M product + max, fp32, random unit tokens",
        "threads": torch.get_num_threads(), "reps": args.reps,
        # the 2 cores are shared: the 1-minute load average says how contended the run was
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
