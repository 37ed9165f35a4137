"""Scale on one machine (issue 27): time per image and peak memory against N, and the cost model.

    python benchmarks/scale.py [--sizes 100,250,500,1000,2000] [--modes exact,screening,fixed]
        [--references 100] [--screening 30] [--category bottle] [--threads 2] [--out FILE.json]

Batches: the first N images of one category's sequence (benchmarks/scale_data.py: the
category's images, then seeded augmented copies; a batch is one product), features at
``--size`` px extracted once and cached outside the repository. Every (mode, N, method) cell
runs in a fresh process of this script (``--cell``), so its peak RSS is its own; it loads the
cached features and times ``fit_predict`` alone. Modes: ``exact`` (every pair; CoDeGraph and
MuSc; cells over ``--max-exact-n`` are skipped, and a cell the memory check refuses is
recorded as refused), ``screening`` ([CLS] screening at ``--screening`` percent) and
``fixed`` (``--references`` K per image). The same run measures the machine's
matrix-multiply peak (benchmarks/engine/run.py) and the engine's per-pair time on random
unit features at M = 256 and 1,024 (benchmarks/engine/cases.py), from which the cost model
extrapolates the engine time of N = 10^3 to 10^5. Peak memory is the cell process's VmHWM
(its own address space; see ``own_peak_rss_mb``). Writes the JSON and a .md next to it, and
prints the issue's acceptance checks as PASS / FAIL lines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, machine_info, peak_rss_mb  # noqa: E402
from scale_data import CATEGORIES, ScaleCache, default_cache_dir  # noqa: E402

MODES = ("exact", "screening", "fixed")
MODEL_NS = (1_000, 10_000, 100_000)
MODEL_MS = (256, 1024)
C_TOKENS = 384  # ViT-S channels: the cost model's C
PAIR_KEYS = ("pairs", "pairs_computed", "image_pairs", "block_pairs")
TIME_RATIO_LIMIT = 1.3  # fixed K: time per image at N = 1,000 over N = 250
PEAK_LIMIT_GB = 4.0  # fixed K: peak memory at N = 1,000 (10^9 bytes)


# ---- one cell, in its own process ---------------------------------------------------------
def own_peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space (VmHWM). Not ru_maxrss: a
    child started by subprocess (vfork + exec) inherits the parent's peak in ru_maxrss, so a
    cell would report the driver's peak (measured: 1,091 MB for every small cell)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def pairs_computed(diag: Any) -> int | None:
    """Image pairs the engine computed, if the result's diagnostics say (read defensively:
    the key is the engine's to name; several subsets are summed)."""
    if not isinstance(diag, dict):
        return None
    for key in PAIR_KEYS:
        v = diag.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
        if isinstance(v, dict):
            for sub in ("computed", "total", "blocks"):
                if isinstance(v.get(sub), (int, float)):
                    return int(v[sub])
    found = pairs_computed(diag.get("engine"))
    if found is not None:
        return found
    subsets = diag.get("subsets")
    if isinstance(subsets, list) and subsets:
        parts = [pairs_computed(s) for s in subsets]
        if all(p is not None for p in parts):
            return int(sum(parts))  # type: ignore[arg-type]
    return None


def engine_params(mode: str, a: argparse.Namespace) -> dict[str, Any]:
    """The EngineConfig fields of a mode (flat estimator parameters)."""
    params: dict[str, Any] = {"threads": a.threads, "precision": a.precision, "seed": a.seed}
    if a.budget_mb:
        params["memory_budget_mb"] = a.budget_mb
    if mode == "screening":
        params["screening_percent"] = float(a.screening)
    elif mode == "fixed":
        params.update(references=int(a.references), random_references=float(a.random_references))
    elif mode != "exact":
        raise ValueError(f"unknown mode {mode!r}")
    return params


def run_cell(a: argparse.Namespace) -> dict[str, Any]:
    """Load the first N cached images, time one fit_predict; one JSON line on stdout."""
    import torch

    from codegraph_ad import CoDeGraph, MuSc
    from codegraph_ad.errors import CodegraphError, MemoryBudgetError
    from codegraph_ad.features.extract import resolve_token_dtype
    from codegraph_ad.metrics import image_metrics

    torch.set_num_threads(a.threads)
    cache = ScaleCache(Path(a.cache_dir), a.category, CATEGORIES[a.category], a.size, a.seed)
    rss_start = own_peak_rss_mb()
    t0 = time.perf_counter()
    params = engine_params(a.mode, a)
    held = resolve_token_dtype(a.token_dtype, a.n, params.get("references"))  # as api.features_for_batch
    feats, labels = cache.load(a.n, held)
    row: dict[str, Any] = {
        "mode": a.mode, "method": a.method, "n": a.n, "m": int(feats.layers.shape[2]),
        "maps": int(feats.layers.shape[1]) * 3, "load_s": round(time.perf_counter() - t0, 2),
        "rss_start_mb": round(rss_start, 1), "rss_loaded_mb": round(own_peak_rss_mb(), 1),
        "features_mb": round(feats.layers.numel() * feats.layers.element_size() / 2**20, 1),
        "token_dtype": held, "params": params,
    }
    cls = CoDeGraph if a.method == "codegraph" else MuSc
    try:
        est = cls(**row["params"])
        row["maps"] = int(feats.layers.shape[1]) * len(est.get_params()["degrees"])
        t0 = time.perf_counter()
        res = est.fit_predict(feats)
        wall = time.perf_counter() - t0
    except MemoryBudgetError as exc:
        row["refused"] = str(exc)
    except CodegraphError as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    else:
        diag = res.diagnostics or {}
        row.update(
            wall_s=round(wall, 3), s_per_image=round(wall / a.n, 4), pairs=pairs_computed(diag),
            scores_finite=bool(torch.isfinite(res.patch_scores).all()),
            image_auroc=image_metrics(res.image_scores, labels)["auroc"],
            diagnostics={k: v for k, v in diag.items() if isinstance(v, (int, float, str, bool))
                         or k in PAIR_KEYS},
        )
    row["peak_rss_mb"] = round(own_peak_rss_mb(), 1)
    return row


# ---- the driver ---------------------------------------------------------------------------
def cell_command(a: argparse.Namespace, mode: str, n: int, method: str) -> list[str]:
    keep = ["--category", a.category, "--size", a.size, "--seed", a.seed, "--cache-dir", a.cache_dir,
            "--threads", a.threads, "--precision", a.precision, "--references", a.references,
            "--random-references", a.random_references, "--screening", a.screening, "--budget-mb", a.budget_mb or 0,
            "--token-dtype", a.token_dtype]
    return [sys.executable, str(Path(__file__).resolve()), "--cell", "--mode", mode, "--n", str(n),
            "--method", method, *map(str, keep)]


def spawn_cell(a: argparse.Namespace, mode: str, n: int, method: str) -> dict[str, Any]:
    """One cell in a fresh process; a crash or a timeout is a row, not the end of the run."""
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    try:
        res = subprocess.run(cell_command(a, mode, n, method), capture_output=True, text=True, env=env,
                             timeout=a.cell_timeout or None)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "method": method, "n": n, "timeout": f"over {a.cell_timeout} s"}
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        return {"mode": mode, "method": method, "n": n,
                "error": f"exit {res.returncode}: {res.stderr.strip()[-1500:]}"}
    return json.loads(lines[-1])


def planned_cells(a: argparse.Namespace, sizes: list[int]) -> list[tuple[str, int, str, str | None]]:
    """(mode, N, method, reason to skip or None), in run order."""
    out = []
    musc_modes = {m for m in a.musc_modes.split(",") if m}
    for mode in [m for m in a.modes.split(",") if m]:
        if mode not in MODES:
            sys.exit(f"--modes: unknown mode {mode!r} (one of {', '.join(MODES)})")
        for n in sizes:
            skip = None
            if mode == "exact" and n > a.max_exact_n:
                skip = f"N > --max-exact-n {a.max_exact_n}"
            if mode == "screening" and n > a.max_screening_n:
                skip = f"N > --max-screening-n {a.max_screening_n}"
            for method in ["codegraph"] + (["musc"] if mode in musc_modes else []):
                out.append((mode, n, method, skip))
    return out


def engine_pair_times(a: argparse.Namespace) -> dict[str, dict]:
    """Per-pair time of one map at M = 256 and 1,024 (random unit features, the engine's
    pair_minima in a process of its own: benchmarks/engine/cases.py)."""
    from engine.run import run_case

    out = {}
    for m, n in ((256, a.micro_n_256), (1024, a.micro_n_1024)):
        row = run_case(["--kind", "engine", "--precision", a.precision, "--n", str(n), "--m", str(m)])
        blocks = n * (n + 1) // 2  # pair_minima: one M x M block per unordered pair, diagonal included
        row["blocks"] = blocks
        row["s_per_pair_map"] = row["seconds"] / blocks
        out[str(m)] = row
        print(f"engine M={m}: {row['s_per_pair_map'] * 1e3:.3f} ms per pair and map, "
              f"{row['gflops']} GFLOP/s ({row['product']})", flush=True)
    return out


def product_peak_name(product: str) -> str:
    return "int8" if "Int8" in product else "bf16" if "Bf16" in product else "fp32"


def nominal_pairs(mode: str, n: int, refs: float) -> float:
    """Pairs a mode asks for with no pair serving both directions: exact N(N-1)/2; screening
    N ceil(p (N-1)); fixed K: N min(K, N-1); never more than exact."""
    exact = n * (n - 1) / 2
    if mode == "exact":
        return exact
    per_query = math.ceil(refs / 100.0 * (n - 1)) if mode == "screening" else min(refs, n - 1)
    return min(n * per_query, exact)


def reuse_factor(cells: list[dict], mode: str, refs: float) -> tuple[float, str]:
    """Reported pairs / nominal pairs at the largest N measured, else 1 (an upper bound)."""
    done = [c for c in cells if c.get("mode") == mode and c.get("method") == "codegraph" and c.get("pairs")]
    if not done:
        return 1.0, "no pair count reported: nominal pairs, no pair serving both directions (upper bound)"
    c = max(done, key=lambda r: r["n"])
    return c["pairs"] / nominal_pairs(mode, c["n"], refs), f"reported pairs / nominal at N = {c['n']}"


def cost_model(pair_times: dict[str, dict], cells: list[dict], a: argparse.Namespace, maps: int) -> dict:
    """Engine time of N = 10^3..10^5 at M = 256 and 1,024: pairs x maps x measured s per pair."""
    columns = [("exact", "exact", 0.0, (1.0, "exact: N(N-1)/2 pairs, each serving both directions")),
               (f"screening {a.screening:g}%", "screening", float(a.screening),
                reuse_factor(cells, "screening", float(a.screening))),
               (f"K = {a.model_references}", "fixed", float(a.model_references),
                reuse_factor(cells, "fixed", float(a.references)))]
    rows = []
    for m in MODEL_MS:
        t_pair = pair_times[str(m)]["s_per_pair_map"]
        for n in MODEL_NS:
            row: dict[str, Any] = {"m": m, "n": n}
            for label, kind, refs, (factor, _) in columns:
                pairs = nominal_pairs(kind, n, refs) * factor
                row[label] = {"pairs": pairs, "pflop": pairs * maps * 2 * m * m * C_TOKENS / 1e15,
                              "seconds": pairs * maps * t_pair}
            rows.append(row)
    return {"maps": maps, "c": C_TOKENS, "precision": a.precision, "threads": a.threads,
            "s_per_pair_map": {m: pair_times[str(m)]["s_per_pair_map"] for m in MODEL_MS},
            "pair_basis": {c[0]: c[3][1] for c in columns}, "reuse_factor": {c[0]: c[3][0] for c in columns},
            "rows": rows}


def engine_share_of_cells(cells: list[dict], pair_times: dict[str, dict]) -> None:
    """Per cell: the modelled engine seconds (pairs x maps x per-pair time) over the wall time."""
    for c in cells:
        if "wall_s" not in c or str(c.get("m")) not in pair_times:
            continue
        pairs = c.get("pairs")
        if pairs is None and c["mode"] == "exact":
            pairs = c["n"] * (c["n"] + 1) // 2  # today's engine: every unordered pair and the diagonal
        if pairs:
            model = pairs * c["maps"] * pair_times[str(c["m"])]["s_per_pair_map"]
            c["engine_model_s"] = round(model, 2)
            c["engine_share_of_wall"] = round(model / c["wall_s"], 3)


def acceptance(cells: list[dict]) -> list[str]:
    """The issue's two fixed-K checks, as printed lines."""
    fixed = {c["n"]: c for c in cells if c.get("mode") == "fixed" and c.get("method") == "codegraph"}
    lines = []
    a, b = fixed.get(1000, {}), fixed.get(250, {})
    if "s_per_image" in a and "s_per_image" in b:
        ratio = a["s_per_image"] / b["s_per_image"]
        verdict = "PASS" if ratio <= TIME_RATIO_LIMIT else "FAIL"
        lines.append(f"{verdict} fixed K: time per image N=1000 / N=250 = {a['s_per_image']:.3f} / "
                     f"{b['s_per_image']:.3f} s = {ratio:.2f} (limit {TIME_RATIO_LIMIT})")
    else:
        lines.append("NOT MEASURED fixed K: time per image N=1000 / N=250 (both cells needed)")
    if "wall_s" in a:
        gb = a["peak_rss_mb"] * 2**20 / 1e9
        verdict = "PASS" if gb <= PEAK_LIMIT_GB else "FAIL"
        lines.append(f"{verdict} fixed K: peak memory at N=1000 = {gb:.2f} GB = {a['peak_rss_mb'] / 1024:.2f} GiB "
                     f"(limit {PEAK_LIMIT_GB} GB, 10^9 bytes)")
    else:
        lines.append("NOT MEASURED fixed K: peak memory at N=1000")
    if a and a.get("wall_s") is not None and a.get("pairs") is None:
        lines.append("NOTE the engine reported no pair count: check that references=K is honoured")
    return lines


def fmt_seconds(s: float) -> str:
    """Seconds in the unit a reader compares: s under 100 s, then min, h (from 2 h), d, y."""
    for unit, size, start in (("y", 365 * 86400, 2 * 365 * 86400), ("d", 86400, 2 * 86400),
                              ("h", 3600, 2 * 3600), ("min", 60, 100)):
        if s >= start:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"


def write_markdown(out: dict, path: Path) -> None:
    mach, data, peak = out["machine"], out["data"], out["matmul_peak_gflops"]
    lines = [f"# Scale on one machine: {out['category']} at {out['size']} px", "",
             f"Machine: {mach.get('cpu', '?')}, torch CPU capability {mach.get('torch_cpu_capability', '?')}, "
             f"{out['threads']} threads, precision {out['precision']}. Matrix-multiply peak this run: "
             + ", ".join(f"{k} {v}" for k, v in peak.items()) + " GFLOP/s.", "",
             f"Batch: the first N of {data['n_sources']} {out['category']} images and their copies; "
             f"{data['augmentation']}. Features cached ({data['layers_dtype']}), "
             f"{data['extract_s_per_image']} s per image to extract (not in the times below); the cells hold "
             f"the tokens as `--token-dtype {out.get('token_dtype', 'float32')}` (FeatureConfig.token_dtype; auto, the "
             "library's default: float16 in the fixed-K cells, float32 elsewhere; each cell's dtype is in its row "
             "of the JSON; the scores are the "
             "same either way, the values being float16 in the cache).", "",
             "| mode | method | N | wall s | s / image | peak RSS MB (features MB) | pairs | engine share of wall | image AUROC | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in out["cells"]:
        note = c.get("skipped") or c.get("refused") or c.get("error") or c.get("timeout") or ""
        note = note.replace("\n", " ").replace("|", "/")[:160]
        auroc = c.get("image_auroc")
        lines.append(
            f"| {c['mode']} | {c['method']} | {c['n']} | {c.get('wall_s', '-')} | {c.get('s_per_image', '-')} | "
            f"{c.get('peak_rss_mb', '-')} ({c.get('features_mb', '-')}) | {c.get('pairs') or '-'} | "
            f"{c.get('engine_share_of_wall', '-')} | {'-' if auroc is None else f'{100 * auroc:.2f}'} | {note} |")
    pt = out["engine_pairs"]
    lines += ["", "Engine per pair and map (random unit features, C = 384, one process each): "
              + "; ".join(f"M = {m}: {r['s_per_pair_map'] * 1e3:.3f} ms, {r['gflops']} GFLOP/s = "
                          f"{r['share_of_run_peak']:.0%} of the run's {product_peak_name(r['product'])} peak "
                          f"({r['share_of_local_peak']:.0%} of the peak taken in its own process)"
                          for m, r in pt.items()) + ".", ""]
    cm = out["cost_model"]
    labels = [k for k in cm["rows"][0] if k not in ("m", "n")]
    lines += [f"Cost model, engine only ({cm['maps']} maps, C = {cm['c']}, {cm['precision']}, "
              f"{cm['threads']} threads): PFLOP / time at the measured per-pair time. Pairs: "
              + "; ".join(f"{k}: {v}" for k, v in cm["pair_basis"].items()) + ".", "",
              "| M, N | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for r in cm["rows"]:
        lines.append(f"| {r['m']}, {r['n']:.0e} | " + " | ".join(
            f"{r[k]['pflop']:.3g} / {fmt_seconds(r[k]['seconds'])}" for k in labels) + " |")
    lines += ["", "Acceptance:", ""] + [f"- {x}" for x in out["acceptance"]]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,250,500,1000,2000")
    ap.add_argument("--modes", default="exact,screening,fixed")
    ap.add_argument("--musc-modes", default="exact", help="modes that also time MuSc (comma list; '' for none)")
    ap.add_argument("--references", type=int, default=100, help="fixed K of the fixed mode")
    ap.add_argument("--random-references", type=float, default=0.25, help="share of the K drawn at random")
    ap.add_argument("--screening", type=float, default=30.0, help="screening percent of the screening mode")
    ap.add_argument("--max-exact-n", type=int, default=500)
    ap.add_argument("--max-screening-n", type=int, default=1000,
                    help="screening at 30%% costs up to 0.3 N^2 pairs: N = 2,000 is hours on 2 cores")
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--budget-mb", type=int, default=0, help="engine memory budget (0: the library default)")
    ap.add_argument("--cell-timeout", type=int, default=0, help="seconds per cell (0: none)")
    ap.add_argument("--model-references", type=int, default=200, help="K of the cost model's fixed-K column")
    ap.add_argument("--micro-n-256", type=int, default=64, help="images of the per-pair timing at M = 256")
    ap.add_argument("--micro-n-1024", type=int, default=24, help="images of the per-pair timing at M = 1,024")
    ap.add_argument("--cache-dir", default=str(default_cache_dir()))
    ap.add_argument("--out", default=None, help="default benchmarks/results/scale_<cpu capability>.json")
    ap.add_argument("--token-dtype", choices=("auto", "float16", "float32"), default="auto",
                    help="dtype the cell holds the (float16-cached) tokens in, as FeatureConfig.token_dtype "
                         "(auto: float16 in fixed-K cells, float32 otherwise); same scores either way")
    ap.add_argument("--cell", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="exact", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--method", default="codegraph", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.category not in CATEGORIES:
        sys.exit(f"--category must be one of {', '.join(CATEGORIES)}")
    if a.cell:
        print(json.dumps(run_cell(a)))
        return
    run(a)


def run(a: argparse.Namespace) -> None:
    import torch

    from codegraph_ad.api import versions
    from codegraph_ad.io.atomic import write_json
    from engine.run import matmul_peak

    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # the engine cases inherit it
    mach = machine_info()
    out_path = Path(a.out) if a.out else RESULTS / f"scale_{mach['torch_cpu_capability'].lower()}.json"
    sizes = sorted(int(s) for s in a.sizes.split(",") if s)
    cache = ScaleCache(Path(a.cache_dir), a.category, CATEGORIES[a.category], a.size, a.seed)
    cache.ensure(max(sizes), a.threads)
    out: dict[str, Any] = {
        "benchmark": "scale", "command": " ".join(sys.argv[1:]), "category": a.category, "size": a.size,
        "threads": a.threads, "precision": a.precision, "references": a.references,
        "random_references": a.random_references, "screening_percent": a.screening, "token_dtype": a.token_dtype,
        "data": cache.describe(), "machine": mach, "versions": versions(), "complete": False,
    }
    peak_before = matmul_peak(a.threads)
    print(f"matmul peak: {peak_before} GFLOP/s", flush=True)
    cells: list[dict] = []
    out["cells"] = cells
    given_up: set[tuple[str, str]] = set()
    for mode, n, method, skip in planned_cells(a, sizes):
        if skip is None and (mode, method) in given_up:
            skip = "a smaller N of this mode timed out or failed"
        if skip is not None:
            row: dict[str, Any] = {"mode": mode, "method": method, "n": n, "skipped": skip}
        else:
            row = spawn_cell(a, mode, n, method)
            if "timeout" in row or "error" in row:
                given_up.add((mode, method))
        cells.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("diagnostics", "params")}), flush=True)
        write_json(out_path, out)
    pair_times = engine_pair_times(a)
    peak_after = matmul_peak(a.threads)
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}
    for r in pair_times.values():
        r["share_of_run_peak"] = round(r["gflops"] / peak[product_peak_name(r["product"])], 3)
        r["share_of_local_peak"] = round(r["gflops"] / r["local_peak_gflops"], 3)
    maps = next((c["maps"] for c in cells if "maps" in c), 12)
    engine_share_of_cells(cells, pair_times)
    out.update(matmul_peak_gflops=peak, peak_before=peak_before, peak_after=peak_after, engine_pairs=pair_times,
               cost_model=cost_model(pair_times, cells, a, maps), acceptance=acceptance(cells),
               torch_threads=torch.get_num_threads(), complete=True)
    write_json(out_path, out)
    print(f"wrote {out_path}")
    write_markdown(out, out_path.with_suffix(".md"))
    for line in out["acceptance"]:
        print(line)


if __name__ == "__main__":
    main()
