"""The engine against MuSc's own MSM procedure, in one process, on the same random unit features.

    python benchmarks/engine/peer_msm.py [--n 51] [--m 1024] [--c 384] [--repeats 3]
writes benchmarks/results/peer_msm_<cpu capability>.json and .md.

The peer is the procedure of MuSc's public `models/modules/_MSM.py` (its default,
`compute_scores_fast`), written here from its description: for each query image, `torch.cdist`
from its patches to every patch of all other images, the minimum over each image's patches,
then the mean of the `int(q (N - 1))` smallest per-image minima. Our side is one (layer,
degree) map of the engine: `pair_minima` then `msm_scores`, in fp32, bf16 and int8. The peer
averages int(q (N - 1)) images and the engine ceil(q (N - 1)) (SPEC section 3): the same at
the default N = 51, q = 0.3 (15), so the scores can be compared there.
Runs are interleaved (peer, fp32, bf16, int8, peer, ...) and the best of `--repeats` is kept,
so a drift of the machine's speed hits all modes alike; `fast` is whichever of them the
engine's own calibration picks on this machine. The matrix-multiply peaks are measured in the
same process before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine_info  # noqa: E402

from codegraph_ad.engine.msm import msm_scores  # noqa: E402
from codegraph_ad.engine.mutual import pair_minima, resolve_precision  # noqa: E402
from codegraph_ad.engine.products import Bf16Product, Fp32Product, Int8Product  # noqa: E402
from run import matmul_peak  # noqa: E402  (benchmarks/engine/run.py: the same peak as the engine benchmark)

RESULTS = Path(__file__).resolve().parents[1] / "results"


def peer_msm(z: torch.Tensor, q: float) -> torch.Tensor:
    """MuSc's MSM as published: per query, cdist to all other images' patches, min per image,
    mean of the int(q (N - 1)) smallest (its interval average with topmin_min = 0)."""
    n, m, c = z.shape
    k = int((n - 1) * q)
    rows = []
    for i in range(n):
        ref = torch.cat((z[:i], z[i + 1 :]), dim=0)
        d = torch.cdist(z[i : i + 1], ref.reshape(-1, c)).reshape(m, n - 1, m)
        per_image = torch.min(d, -1)[0]
        vals = torch.topk(per_image.float(), k, largest=False, sorted=True)[0]
        rows.append(vals.mean(dim=1))
    return torch.stack(rows)


def engine_msm(z: torch.Tensor, q: float, precision: str) -> torch.Tensor:
    return msm_scores(pair_minima(z, precision=precision).dist, q)


def timed(fn, times: list[float]) -> torch.Tensor:
    """Run ``fn``, append its wall time to ``times``, return its output."""
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=51)
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--c", type=int, default=384)
    ap.add_argument("--q", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="results stem (default peer_msm_<capability>)")
    ap.add_argument("--cpu-block-side", type=int, default=None,
                    help="force every product's CPU block to this side in patches (default: each product's own cap)")
    a = ap.parse_args()
    if a.cpu_block_side:  # the block-size comparison: the same run with another cap
        for product in (Fp32Product, Bf16Product, Int8Product):
            product.cpu_block_cap = a.cpu_block_side**2 * 4
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(a.n, a.m, a.c, generator=g), dim=-1)
    peak_before = matmul_peak(torch.get_num_threads())
    fast_mode = resolve_precision("fast", a.m)  # calibration happens here, outside the timings
    modes = ["fp32", "bf16", "int8"]
    times: dict[str, list[float]] = {k: [] for k in ["peer", *modes]}
    outs: dict[str, torch.Tensor] = {}
    for _ in range(a.repeats):  # interleaved: a drift of the machine's speed hits every mode alike
        outs["peer"] = timed(lambda: peer_msm(z, a.q), times["peer"])
        for mode in modes:
            outs[mode] = timed(lambda: engine_msm(z, a.q, mode), times[mode])
        print(json.dumps({k: round(v[-1], 3) for k, v in times.items()}), flush=True)
    peak_after = matmul_peak(torch.get_num_threads())
    best = {k: min(v) for k, v in times.items()}
    gflop_engine = 2.0 * (a.n * (a.n + 1) / 2) * a.m * a.m * a.c / 1e9
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}
    result = {
        "machine": machine_info(),
        "threads": torch.get_num_threads(),
        "n": a.n, "m": a.m, "c": a.c, "q": a.q, "repeats": a.repeats,
        "cpu_block_cap_bytes": {p.__name__: p.cpu_block_cap for p in (Fp32Product, Bf16Product, Int8Product)},
        "fast_mode": fast_mode,
        "seconds_all": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "seconds_best": {k: round(v, 3) for k, v in best.items()},
        "speedup": {k: round(best["peer"] / best[k], 2) for k in modes},
        "speedup_fast": round(best["peer"] / best[fast_mode], 2),
        "max_abs_vs_peer": {k: float((outs[k] - outs["peer"]).abs().max()) for k in modes},
        "matmul_peak_gflops_before": peak_before,
        "matmul_peak_gflops_after": peak_after,
        "engine_gflops": {k: round(gflop_engine / best[k], 1) for k in modes},
        "engine_share_of_own_peak": {k: round(gflop_engine / best[k] / peak[k], 3) for k in modes},
    }
    cap = result["machine"].get("torch_cpu_capability", "cpu")
    stem = a.out or f"peer_msm_{str(cap).lower()}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"# Engine vs MuSc's MSM (N = {a.n}, M = {a.m}, C = {a.c}, q = {a.q})",
        "",
        f"Machine: {result['machine']}; {result['threads']} threads; `fast` picks {fast_mode} here.",
        f"Matrix-multiply peak (before / after, GFLOP/s): {peak_before} / {peak_after}.",
        "",
        "| | best of " + str(a.repeats) + " s | speed-up vs peer | max abs vs peer | share of its product's peak |",
        "|---|---|---|---|---|",
        f"| peer (cdist loop, fp32) | {best['peer']:.3f} | 1 | 0 | - |",
        *(f"| engine {k}{' (fast)' if k == fast_mode else ''} | {best[k]:.3f} | {result['speedup'][k]} "
          f"| {result['max_abs_vs_peer'][k]:.1e} | {result['engine_share_of_own_peak'][k]:.0%} |" for k in modes),
        "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
