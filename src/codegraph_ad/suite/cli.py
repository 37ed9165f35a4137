"""``codegraph-ad benchmark``: every category of a dataset, one or more methods, one table."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegraph_ad.errors import InputError
from codegraph_ad.options import add_run_options, config_from_args


def cmd_benchmark(a: argparse.Namespace) -> int:
    from codegraph_ad.suite.config import BenchmarkConfig
    from codegraph_ad.suite.runner import run_benchmark

    if a.single_method is not None:
        raise InputError("benchmark takes --methods (comma separated), not --method")
    methods = tuple(m.strip() for m in a.methods.split(",") if m.strip())
    from codegraph_ad.suite.config import method_order

    configs = {m: config_from_args(a, {"method": m}) for m in methods if m in method_order()}
    categories = tuple(c.strip() for c in a.categories.split(",") if c.strip()) if a.categories else None
    bench = BenchmarkConfig(a.dataset, a.root, categories, methods, a.eval_size, a.save_runs, not a.no_overlays)
    result = run_benchmark(bench, configs, a.out, overwrite=a.overwrite, progress=not a.quiet)
    print()
    print((result.out_dir / "summary.md").read_text().split("\n## Consistent")[0].strip())
    print(f"\ntables written to {result.out_dir / 'summary.md'} (also summary.csv, summary.json)")
    return 0


def register(subparsers) -> None:
    from codegraph_ad.datasets.registry import list_datasets

    p = subparsers.add_parser("benchmark", help="run methods over every category of a dataset and tabulate metrics")
    p.add_argument("--dataset", required=True, help=f"layout of --root: {', '.join(list_datasets())}")
    p.add_argument("--root", required=True, type=Path, help="dataset folder holding the categories")
    p.add_argument("--categories", default=None, help="comma-separated subset (default: all found)")
    p.add_argument("--methods", default="musc,codegraph", help="comma-separated registered batch methods (`codegraph-ad methods`)")
    p.add_argument("--eval-size", type=int, default=256, help="pixel metrics resolution")
    p.add_argument("--save-runs", action="store_true", help="keep each category's maps, overlays and scores")
    # Every run option but --method: a benchmark chooses methods with --methods instead.
    add_run_options(p, skip=("method",))
    p.add_argument("--method", default=None, dest="single_method", help=argparse.SUPPRESS)  # refused, with a hint
    p.set_defaults(func=cmd_benchmark)
