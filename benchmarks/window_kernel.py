"""Position-window kernel (engine/window.py) against the full M x M product + max, per image pair.

    python benchmarks/window_kernel.py [--threads 2] [--reps 3] [--tag TAG]

A = B = 16 images of random unit tokens (the cost does not depend on their values), C = 384,
grids 16 x 16 (M = 256, 224 px) and 32 x 32 (M = 1024, 448 px), radius 1-4, fp32. Both sides
return the maxima and their argmax (int16), the output the engine needs; the baseline is one
(A M) x (B M) matrix product per chunk of reference images followed by a max over each
reference image's M patches, chunked like the kernel (the engine's pair_minima also gets the
reverse direction from the same product: the "mutual" figure counts that). One query
against K = 64 references (A = 1) is timed too. Wall time and process CPU time, the minimum
of ``--reps`` runs after a warm-up. Writes benchmarks/results/window_kernel[_<tag>].json.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import machine_info, write_result

from codegraph_ad.engine.window import choose_tile, window_block, window_pair_cost

C = 384
CHUNK_BYTES = 32 << 20


def full_product_max(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unrestricted maxima and argmax: (A M) x (B M) products, references chunked to CHUNK_BYTES."""
    n_a, m, c = left.shape
    n_b = right.shape[0]
    best = torch.empty((n_a, n_b, m))
    arg = torch.empty((n_a, n_b, m), dtype=torch.int16)
    step = max(1, CHUNK_BYTES // (n_a * m * m * 4))
    flat = left.reshape(n_a * m, c)
    for b0 in range(0, n_b, step):
        b1 = min(b0 + step, n_b)
        sim = (flat @ right[b0:b1].reshape(-1, c).T).view(n_a, m, b1 - b0, m)
        val, idx = sim.max(dim=3)
        best[:, b0:b1] = val.permute(0, 2, 1)
        arg[:, b0:b1] = idx.permute(0, 2, 1)
    return best, arg


def timed(fn, reps: int) -> dict:
    """Minimum wall and CPU seconds over ``reps`` runs after one warm-up run."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": round(min(wall), 4), "cpu_s": round(min(cpu), 4)}


def speed_row(base: dict, win: dict, pairs: int, m: int, fields: dict) -> dict:
    """One results row: the case's ``fields``, both timings and the window's speed-up."""
    return {**fields, "pair_share": round(pairs / m**2, 4), "full_product": base, "window": win,
            "speedup_wall": round(base["wall_s"] / win["wall_s"], 2),
            "speedup_cpu": round(base["cpu_s"] / win["cpu_s"], 2)}


def case(side: int, n_a: int, n_b: int, radii: list[int], reps: int) -> list[dict]:
    g = torch.Generator().manual_seed(side * 100 + n_a)
    left = torch.nn.functional.normalize(torch.randn(n_a, side * side, C, generator=g), dim=-1)
    right = torch.nn.functional.normalize(torch.randn(n_b, side * side, C, generator=g), dim=-1)
    m = side * side
    base = timed(lambda: full_product_max(left, right), max(1, reps - 1))
    # sanity: a radius covering the grid reproduces the baseline's maxima
    full, _ = window_block(left, right, (side, side), side)
    assert torch.allclose(full, full_product_max(left, right)[0], atol=1e-5)
    rows = []
    for r in radii:
        win = timed(lambda: window_block(left, right, (side, side), r), reps)
        row = speed_row(base, win, window_pair_cost((side, side), r), m,
                        {"grid": [side, side], "M": m, "A": n_a, "B": n_b, "C": C, "radius": r,
                         "tile": choose_tile(n_a, side, side, r)})
        rows.append(row)
        report(f"M={m:5d} A={n_a:2d} B={n_b:2d} r={r}", row, f"tile {row['tile']}")
    return rows


def report(label: str, row: dict, how: str) -> None:
    """One printed line per row: both timings, the speed-up and how the window ran."""
    print(f"{label}: full {row['full_product']['wall_s']:.3f} s, window {row['window']['wall_s']:.3f} s, "
          f"x{row['speedup_wall']} wall, x{row['speedup_cpu']} cpu "
          f"({how}, pairs {100 * row['pair_share']:.1f}% of M^2)", flush=True)


def kernel_main(name: str, what: str, threads: int, reps: int, run_cases) -> None:
    """Parse the shared options, time ``run_cases(reps) -> rows`` and write the results file."""
    ap = argparse.ArgumentParser(description=what)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = run_cases(args.reps)
    write_result(name, args.tag, {
        "what": what, "threads": torch.get_num_threads(), "reps": args.reps,
        # the 2 cores are shared: the 1-minute load average says how contended the run was
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": machine_info(), "rows": rows})


def main() -> None:
    def cases(reps: int) -> list[dict]:
        rows = []
        for side in (16, 32):
            rows += case(side, 16, 16, [1, 2, 3, 4], reps)
            rows += case(side, 1, 64, [1, 2, 3], reps)
        return rows

    kernel_main("window_kernel", "window_block (maxima + int16 argmax) vs full M x M product + max, fp32, "
                "random unit tokens", 2, 3, cases)


if __name__ == "__main__":
    main()
