"""Run one or more methods over the categories of a dataset, one batch per category.

Output folder:

    categories/<category>.json   one record per category (all methods), written when it is done
    runs/<category>/<method>/    full run folders, only with ``save_runs``
    work/<category>/             files a reader had to write (MANTA single views)
    summary.json|csv|md          per-category rows, per-method means, published numbers

A category whose record exists is not run again (resume after an interruption) unless
``overwrite``; a record made with another configuration is an error rather than silently
mixed into the tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codegraph_ad.api import EvaluationResult, evaluate, load_backbone, versions
from codegraph_ad.config import MSMConfig, RunConfig, config_to_dict
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.registry import get_reader, list_categories, read_category
from codegraph_ad.errors import InputError
from codegraph_ad.evaluation import consistency_rates
from codegraph_ad.io.atomic import write_json, write_text
from codegraph_ad.suite.config import BenchmarkConfig, method_order
from codegraph_ad.suite.consistency import patch_mask_fractions
from codegraph_ad.suite.published import published_for
from codegraph_ad.suite.tables import category_rows, markdown, mean_rows, to_csv


@dataclass
class BenchmarkResult:
    out_dir: Path
    records: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    means: list[dict[str, Any]]
    ran: list[str]  # categories computed by this call (the others were resumed)


def run_benchmark(
    bench: BenchmarkConfig,
    configs: dict[str, RunConfig],
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> BenchmarkResult:
    """Evaluate ``configs`` (method name -> RunConfig) on every category of ``bench``."""
    methods = _check_methods(bench, configs)
    reader = get_reader(bench.dataset)
    categories = list(bench.categories) if bench.categories else list_categories(reader.name, bench.root)
    out = Path(out_dir)
    stored_configs = {m: _jsonable(config_to_dict(configs[m])) for m in methods}
    backbones: dict[str, Any] = {}
    records, ran = [], []
    for category in categories:
        path = out / "categories" / f"{_safe(category)}.json"
        if path.is_file() and not overwrite:
            record = json.loads(path.read_text())
            _check_resumable(path, record, stored_configs, bench)
            log(f"{category}: done earlier, reusing {path}")
            records.append(record)
            continue
        t0 = time.perf_counter()
        samples = read_category(reader.name, bench.root, category, out / "work" / _safe(category))
        runs = {}
        for m in methods:
            backbone = _backbone(backbones, configs[m])
            run_dir = out / "runs" / _safe(category) / m if bench.save_runs else None
            t_m = time.perf_counter()
            runs[m] = evaluate(_naming_root(samples), run_dir, configs[m], eval_size=bench.eval_size, overwrite=True,
                               progress=progress, overlays=bench.overlays, backbone=backbone, samples=samples)
            runs[m].run.timings["wall_s"] = time.perf_counter() - t_m
        record = category_record(reader.name, category, samples, runs, stored_configs, bench)
        write_json(path, record)
        records.append(record)
        ran.append(category)
        log(_progress_line(record, time.perf_counter() - t0))
    rows = [r for rec in records for r in category_rows(rec)]
    means = mean_rows(rows)
    _write_summary(out, bench, methods, configs, records, rows, means)
    return BenchmarkResult(out, records, rows, means, ran)


def category_record(dataset: str, category: str, samples: list[LabelledSample], runs: dict[str, EvaluationResult],
                    stored_configs: dict[str, Any], bench: BenchmarkConfig) -> dict[str, Any]:
    """Everything measured on one category, JSON-ready."""
    first = next(iter(runs.values())).run
    fractions = patch_mask_fractions(samples, first.original_sizes, first.scores.grid)
    musc = _default_musc_scores(runs)
    labels = np.array([s.label for s in samples])
    methods = {}
    for m, ev in runs.items():
        s = ev.run.scores
        excluded = s.excluded.numpy().astype(bool) if s.excluded is not None else None
        t = ev.run.timings
        methods[m] = {
            "image": ev.metrics["image"],
            "pixel": ev.metrics["pixel"],
            "consistency": consistency_rates(musc, excluded, fractions, labels, bench.consistency),
            "timings": {"features_s": t.get("features_s"), "scoring_s": t.get("scoring_s"),
                        "wall_s": t["wall_s"], "s_per_image": t["wall_s"] / len(samples), "all": t},
            "backbone": ev.run.config.features.backbone,
            "image_size": ev.run.config.features.image_size,
            "diagnostics": s.diagnostics,
        }
    return {
        "dataset": dataset,
        "category": category,
        "n_images": len(samples),
        "n_anomalous": int(sum(s.label for s in samples)),
        "n_with_mask": int(sum(bool(s.mask_paths) for s in samples)),
        "eval_size": bench.eval_size,
        "consistency_config": _consistency_record(bench),
        "configs": stored_configs,
        "methods": methods,
        "versions": versions(),
    }


def _default_musc_scores(runs: dict[str, EvaluationResult]) -> np.ndarray | None:
    """MuSc patch scores at MuSc's default q: what "MuSc score" means in the capture rate.

    None (no capture rate) without a MuSc run, or when the MuSc run was given another q
    (``--q``): a capture rate against other scores would not be the one definition.
    """
    ev = runs.get("musc")
    if ev is None or ev.run.config.msm.q != MSMConfig().q:
        return None
    return ev.run.scores.patch_scores.numpy()


def _consistency_record(bench: BenchmarkConfig) -> dict[str, Any]:
    """The consistent-anomaly settings a record was made with. The two rule fields (normal
    population, MuSc q) are absent from records made under the older rule, so those are
    refused on resume instead of being mixed with the current definition."""
    return {**asdict(bench.consistency), "normal_population": "patches of normal images",
            "musc_q": MSMConfig().q}


def _check_methods(bench: BenchmarkConfig, configs: dict[str, RunConfig]) -> list[str]:
    if not bench.methods:
        raise InputError(f"no method given; choose from {', '.join(method_order())}")
    order = method_order()
    unknown = [m for m in bench.methods if m not in order]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(order)}")
    missing = [m for m in bench.methods if m not in configs]
    if missing:
        raise InputError(f"no configuration given for method(s) {', '.join(missing)}")
    for m in bench.methods:
        if configs[m].method != m:
            raise InputError(f"configuration for {m!r} has method={configs[m].method!r}")
    return [m for m in order if m in bench.methods]


def _check_resumable(path: Path, record: dict, stored_configs: dict, bench: BenchmarkConfig) -> None:
    same = (record.get("configs") == stored_configs and record.get("eval_size") == bench.eval_size
            and record.get("consistency_config") == _jsonable(_consistency_record(bench)))
    if not same:
        raise InputError(f"{path}: computed with other methods or settings than this run; "
                         "pass --overwrite to recompute, or choose another --out")


def _backbone(cache: dict[str, Any], config: RunConfig):
    """One loaded backbone per feature configuration, shared by methods and categories."""
    key = json.dumps([config_to_dict(config.features), config.engine.threads])
    if key not in cache:
        cache[key] = load_backbone(config)
    return cache[key]


def _naming_root(samples: list[LabelledSample]) -> Path:
    """The category folder when the samples sit in ``<category>/test/<defect>/``, so run names
    read ``defect__stem``; else their common folder (names are then file stems)."""
    parents = {s.image_path.parent.parent for s in samples}
    if len(parents) == 1:
        (test_dir,) = parents
        if test_dir.name == "test":
            return test_dir.parent
    return Path(*_common_parts([s.image_path.parent.parts for s in samples]))


def _common_parts(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    common = parts[0]
    for p in parts[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[n] == p[n]:
            n += 1
        common = common[:n]
    return common or ("/",)


def _write_summary(out: Path, bench: BenchmarkConfig, methods: list[str], configs: dict[str, RunConfig],
                   records: list[dict], rows: list[dict], means: list[dict]) -> None:
    first = configs[methods[0]].features
    matching, others = published_for(get_reader(bench.dataset).name, first.backbone)
    meta = {"dataset": bench.dataset, "root": str(bench.root), "categories": [r["category"] for r in records],
            "methods": methods, "eval_size": bench.eval_size,
            "configs": {m: config_to_dict(configs[m]) for m in methods}, "versions": versions()}
    write_json(out / "summary.json", {**meta, "rows": rows, "means": means,
                                      "published_same_backbone": [asdict(r) for r in matching]})
    write_text(out / "summary.csv", to_csv(rows + means))
    intro = [f"Dataset `{bench.dataset}` at `{bench.root}`; methods {', '.join(methods)}; backbone "
             f"`{first.backbone}` at {first.image_size} px; pixel metrics at {bench.eval_size} px.",
             f"codegraph_ad {meta['versions']['codegraph_ad']}, torch {meta['versions']['torch']}; "
             f"full configuration in summary.json."]
    write_text(out / "summary.md", markdown(f"Benchmark: {bench.dataset}", intro, rows, means, matching, others))


def _progress_line(record: dict, seconds: float) -> str:
    parts = []
    for m, res in record["methods"].items():
        img, pix = res["image"]["auroc"], res["pixel"]["f1_max"]
        parts.append(f"{m} AUROC-cls {_fmt(img)} F1-seg {_fmt(pix)}")
    return f"{record['category']}: {record['n_images']} images; " + "; ".join(parts) + f" ({seconds:.1f} s)"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _safe(category: str) -> str:
    return category.replace("/", "__")


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_default))


def _default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
