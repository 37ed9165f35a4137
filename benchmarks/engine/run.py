"""Engine benchmark: straightforward loop vs the engine in fp32 vs the fast mode, one run.

    python benchmarks/engine/run.py [--sizes 50,100,200] [--ms 256,1024] [--naive-max-n 100]
writes benchmarks/results/engine.json and engine.md. Each case runs in its own process
(peak memory per case); the machine's matrix-multiply peak is measured in the same run,
so the ratios hold even on a noisy machine. Scores of one map (one layer, one degree) are
compared; a full MuSc run does 12 such maps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine_info  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"


def matmul_peak(threads: int) -> dict[str, float]:
    """GFLOP/s of a large square-ish product in fp32, bf16 and int8 (best of 5)."""
    from codegraph_ad.engine.autotune import bare_product_seconds

    torch.set_num_threads(threads)
    a = torch.nn.functional.normalize(torch.randn(2048, 384), dim=1)
    return {name: round(2 * 2048 * 2048 * 384 / s / 1e9, 1) for name, s in bare_product_seconds(a, repeats=5).items()}


def run_case(args: list[str]) -> dict:
    cmd = [sys.executable, str(HERE / "cases.py"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--ms", default="256,1024")
    ap.add_argument("--naive-max-n", type=int, default=200)
    ap.add_argument("--real", default=None, help="bottle features (.pt, (N, M, C) unit) to add as a case")
    ap.add_argument("--out", default=str(RESULTS / "engine.json"))
    a = ap.parse_args()
    threads = torch.get_num_threads()
    peak_before = matmul_peak(threads)
    cases = []
    tmp = Path(tempfile.mkdtemp())
    grid = [(int(n), int(m), None) for m in a.ms.split(",") for n in a.sizes.split(",")]
    if a.real:
        x = torch.load(a.real)
        grid.append((x.shape[0], x.shape[1], a.real))
    for n, m, real in grid:
        extra = ["--n", str(n), "--m", str(m)] + (["--real", real] if real else [])
        label = "bottle" if real else "random"
        row = {"features": label, "n": n, "m": m}
        if n <= a.naive_max_n:
            row["naive"] = run_case(["--kind", "naive", *extra, "--save", str(tmp / "naive.pt")])
        row["engine_fp32"] = run_case(["--kind", "engine", "--precision", "fp32", *extra, "--save", str(tmp / "fp32.pt")])
        row["engine_fast"] = run_case(["--kind", "engine", "--precision", "fast", *extra, "--save", str(tmp / "fast.pt")])
        fp32 = torch.load(tmp / "fp32.pt")
        fast = torch.load(tmp / "fast.pt")
        row["fast_vs_fp32_max_abs"] = float((fast - fp32).abs().max())
        if "naive" in row:
            naive = torch.load(tmp / "naive.pt")
            row["fp32_vs_naive_max_abs"] = float((fp32 - naive).abs().max())
            row["speedup_fp32"] = round(row["naive"]["seconds"] / row["engine_fp32"]["seconds"], 2)
            row["speedup_fast"] = round(row["naive"]["seconds"] / row["engine_fast"]["seconds"], 2)
        print(json.dumps(row), flush=True)
        cases.append(row)
    peak_after = matmul_peak(threads)
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}
    for row in cases:
        for key in ("naive", "engine_fp32", "engine_fast"):
            if key in row:
                prod = row[key]["product"]
                ref = peak["int8"] if "Int8" in prod else peak["bf16"] if "Bf16" in prod else peak["fp32"]
                row[key]["share_of_own_peak"] = round(row[key]["gflops"] / ref, 3)
                # against the same product type's peak measured in the case's own process
                # right before and after it (robust to the machine's speed drifting)
                row[key]["share_of_local_peak"] = round(row[key]["gflops"] / row[key]["local_peak_gflops"], 3)
                row[key]["share_of_best_peak"] = round(row[key]["gflops"] / max(peak.values()), 3)
    out = {"machine": machine_info(), "threads": threads, "matmul_peak_gflops": peak, "peak_before": peak_before, "peak_after": peak_after,
           "cases": cases}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    write_markdown(out, Path(a.out).with_suffix(".md"))


def write_markdown(out: dict, path: Path) -> None:
    p = out["matmul_peak_gflops"]
    mach = out.get("machine", {})
    best = max(p, key=p.get)
    lines = [f"Machine: {mach.get('cpu', '?')}, torch CPU capability {mach.get('torch_cpu_capability', '?')}, "
             f"extensions {', '.join(mach.get('extensions', [])) or 'none listed'}.", "",
             f"Matrix-multiply peak this run ({out['threads']} threads): fp32 {p['fp32']}, bf16 {p['bf16']}, "
             f"int8 {p['int8']} GFLOP/s; the fastest product here is {best}.", "",
             "| features | N | M | loop s | engine fp32 s | fast s (mode) | speed-up fp32 / fast | fp32 GFLOP/s (share of local fp32 peak) | fast GFLOP/s (share of its run peak / local peak / best product's run peak) | fp32 vs loop max abs | fast vs fp32 max abs | peak RSS MB loop / fp32 / fast |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["cases"]:
        nv = r.get("naive", {})
        f32, fast = r["engine_fp32"], r["engine_fast"]
        lines.append(
            f"| {r['features']} | {r['n']} | {r['m']} | {nv.get('seconds', '-')} | {f32['seconds']} | "
            f"{fast['seconds']} ({fast['product'].replace('Product', '')}) | {r.get('speedup_fp32', '-')} / "
            f"{r.get('speedup_fast', '-')} | {f32['gflops']} ({f32['share_of_local_peak']:.0%}) | "
            f"{fast['gflops']} ({fast['share_of_own_peak']:.0%} / {fast['share_of_local_peak']:.0%} / "
            f"{fast['share_of_best_peak']:.0%}) | "
            f"{r.get('fp32_vs_naive_max_abs', float('nan')):.1e} | {r['fast_vs_fp32_max_abs']:.1e} | "
            f"{nv.get('peak_rss_mb', '-')} / {f32['peak_rss_mb']} / {fast['peak_rss_mb']} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
