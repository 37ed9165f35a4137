"""Ray backend overhead (issue 25): bottle at 224 px, the local engine against a local Ray instance.

Same process, same features, same machine: feature extraction local vs on Ray (the features
must be equal bit for bit), then MuSc and CoDeGraph scoring local vs on Ray (equal scores), then
``detect`` end to end with each engine (scores.csv equal byte for byte). Wall times are the
median of ``--repeats`` runs, local and Ray interleaved; the Ray instance is started and its
workers warmed up before any timing (a cluster is started once, not per run), and the time
that took is recorded on its own. The acceptance bound: Ray scoring at most 1.5x local.

    PYTHONPATH=src python3 benchmarks/ray_overhead.py                 # all 83 test images
    PYTHONPATH=src python3 benchmarks/ray_overhead.py --limit 12 --tag smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BOTTLE, machine_info, peak_rss_mb, write_result  # noqa: E402

from codegraph_ad import CoDeGraph, FeatureExtractor, MuSc  # noqa: E402
from codegraph_ad.api import detect, versions  # noqa: E402
from codegraph_ad.config import EngineConfig, FeatureConfig, RunConfig  # noqa: E402
from codegraph_ad.io.images import discover_images  # noqa: E402

BOUND = 1.5
METHODS = {"musc": MuSc, "codegraph": CoDeGraph}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def paired(local: Callable[[], Any], remote: Callable[[], Any], repeats: int) -> tuple[Any, Any, dict[str, Any]]:
    """Both, ``repeats`` times interleaved; their last results and the wall times."""
    tl, tr = [], []
    for _ in range(repeats):
        a, t = timed(local)
        tl.append(t)
        b, t = timed(remote)
        tr.append(t)
    ml, mr = statistics.median(tl), statistics.median(tr)
    return a, b, {"local_s": [round(t, 3) for t in tl], "ray_s": [round(t, 3) for t in tr],
                  "local_median_s": round(ml, 3), "ray_median_s": round(mr, 3), "ratio": round(mr / ml, 3)}


def start_ray(workers: int) -> dict[str, float]:
    """A local instance of ``workers`` CPUs, its workers started and codegraph_ad imported in them."""
    import ray

    from codegraph_ad.engine.ray_executor import RayExecutor, executor_for

    _, t_init = timed(lambda: ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False))
    probe = unit_rows(workers * 4)
    _, t_warm = timed(lambda: list(RayExecutor(batches_per_worker=1).map(_echo, probe, list(range(workers * 4)))))
    # MuSc's query shards and CoDeGraph's first-pass shards (actors kept by the run's executor
    # between maps and runs)
    from codegraph_ad.methods.sharded_first_pass import FirstPassShard

    executor = executor_for(EngineConfig(backend="ray"))

    def warm() -> None:
        for kind in (None, FirstPassShard):
            ray.get([a.__ray_ready__.remote() for a in executor.query_shards(10**6, kind=kind)[0]])
    _, t_shards = timed(warm)
    return {"ray_init_s": round(t_init, 3), "worker_warmup_s": round(t_warm, 3), "shard_warmup_s": round(t_shards, 3)}


def unit_rows(n: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 8), dim=1)


def _echo(shared: torch.Tensor, task: int) -> float:
    time.sleep(0.2)  # holds the slot, so every worker process starts
    return float(shared[task].sum())


def write_markdown(path: Path, out: dict[str, Any]) -> None:
    rows = [("feature extraction", out["features"])]
    rows += [(f"{m} scoring", r) for m, r in out["scoring"].items()]
    rows += [(f"{m} detect (end to end, cached features)", r) for m, r in out["end_to_end"].items()]
    lines = [f"# Ray overhead: bottle {out['size']} px, {out['n_images']} images, {out['workers']} workers",
             "", f"CPU: {out['machine']['cpu']} ({out['machine']['torch_cpu_capability']}); "
             f"Ray start {out['ray']['ray_init_s']} s, worker warm-up {out['ray']['worker_warmup_s']} s, "
             f"query-shard start {out['ray'].get('shard_warmup_s')} s "
             "(once per cluster, not in the times below).", "",
             "| step | local (s) | Ray (s) | Ray / local | identical |", "|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['local_median_s']} | {r['ray_median_s']} | {r['ratio']} | {r['identical']} |")
    acc = out["acceptance"]
    lines += ["", f"Acceptance (scoring at most {BOUND}x local, identical): {acc['passed']} "
              f"(worst ratio {acc['worst_scoring_ratio']})."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(BOTTLE), help="the bottle category folder (holds test/)")
    ap.add_argument("--size", type=int, default=224, help="image side in px")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--methods", default="musc,codegraph")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each engine (median reported)")
    ap.add_argument("--tag", default="", help="results file suffix (ray_overhead_<tag>.json)")
    a = ap.parse_args(argv)

    paths = discover_images(Path(a.data) / "test")
    paths = paths[: a.limit] if a.limit else paths
    feature_cfg = FeatureConfig(image_size=a.size)
    out: dict[str, Any] = {"size": a.size, "n_images": len(paths), "workers": a.workers, "repeats": a.repeats,
                           "bound": BOUND, "ray": start_ray(a.workers)}
    from codegraph_ad.engine.ray_features import RayFeatureExtractor

    local_ex = FeatureExtractor.from_config(feature_cfg, cache=False, threads=a.workers)
    ray_ex = RayFeatureExtractor.from_config(feature_cfg, cache=False)
    batch = local_ex.read(paths)
    fl, fr, rec = paired(lambda: local_ex.transform_batch(batch), lambda: ray_ex.transform_batch(batch), 1)
    rec["identical"] = bool(torch.equal(fl.layers, fr.layers) and torch.equal(fl.cls, fr.cls))
    out["features"] = rec
    print("features", rec)

    out["scoring"] = {}
    for name in a.methods.split(","):
        cls = METHODS[name]
        sl, sr, rec = paired(lambda: cls(threads=a.workers).fit_predict(fl),
                             lambda: cls(threads=a.workers, backend="ray").fit_predict(fl), a.repeats)
        rec["identical"] = bool(torch.equal(sl.patch_scores, sr.patch_scores)
                                and np.array_equal(sl.image_scores, sr.image_scores))
        out["scoring"][name] = rec
        print(name, rec)

    out["end_to_end"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "cache"
        RayFeatureExtractor.from_config(feature_cfg, cache=True, cache_dir=cache_dir).transform_batch(batch)
        for name in a.methods.split(","):
            def run(backend: str, name: str = name) -> bytes:
                engine = EngineConfig(backend=backend, threads=a.workers)
                cfg = RunConfig(method=name, features=feature_cfg, engine=engine)
                folder = Path(tmp) / f"{name}_{backend}"
                detect(paths, folder, cfg, overwrite=True, progress=False, overlays=False, cache=True,
                       cache_dir=cache_dir, root=Path(a.data))
                return (folder / "scores.csv").read_bytes()

            cl, cr, rec = paired(lambda: run("local"), lambda: run("ray"), 1)
            rec["identical"] = cl == cr
            out["end_to_end"][name] = rec
            print(name, "detect", rec)

    worst = max(r["ratio"] for r in out["scoring"].values())
    identical = all(r["identical"] for part in ("scoring", "end_to_end") for r in out[part].values())
    out["acceptance"] = {"worst_scoring_ratio": worst, "identical": identical and out["features"]["identical"],
                         "passed": bool(worst <= BOUND and identical and out["features"]["identical"])}
    out.update(peak_rss_mb=round(peak_rss_mb(), 1), versions=versions(), machine=machine_info())
    path = write_result("ray_overhead", a.tag, out)
    write_markdown(path.with_suffix(".md"), out)
    return 0 if out["acceptance"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
