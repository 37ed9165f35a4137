"""Command line: a thin shell over the Python API (``codegraph-ad --help``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from codegraph_ad.config import EngineConfig, FeatureConfig, GraphConfig, MSMConfig, RsCINConfig, RunConfig
from codegraph_ad.errors import CodegraphError

_DEFAULTS = RunConfig()
# Each area of the package adds its own subcommands through ``register(subparsers)``;
# their functions take the parsed namespace and return an exit code.
_COMMAND_MODULES: tuple[str, ...] = ("codegraph_ad.report.cli", "codegraph_ad.analysis.cli", "codegraph_ad.datasets.cli",
                                     "codegraph_ad.suite.cli", "codegraph_ad.volumes.cli",
                                     "codegraph_ad.distill.commands")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that scores a batch."""
    f, e, g = _DEFAULTS.features, _DEFAULTS.engine, _DEFAULTS.graph
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--method", choices=["codegraph", "musc"], default=_DEFAULTS.method)
    p.add_argument("--backbone", default=f.backbone, help="backbone name (see `codegraph-ad backbones`)")
    p.add_argument("--checkpoint", default=None, help="local weights file for official backbones")
    p.add_argument("--image-size", type=int, default=f.image_size, help="square input side, multiple of the patch size")
    p.add_argument("--layers", default=",".join(map(str, f.layers)), help="1-based blocks, comma separated")
    p.add_argument("--final-norm", action="store_true", help="apply the final LayerNorm to block tokens")
    p.add_argument("--q", type=float, default=None, help="MSM share q (default 0.3, for musc and for codegraph's final scoring; the thesis used 0.1 for codegraph)")
    p.add_argument("--rscin", action="store_true",
                   help="re-weight image scores by [CLS] similarity (RsCIN, k = 1,2,3); off by default")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8", "fast"], default=e.precision,
                   help="block-product precision; fast times fp32, bf16 and int8 on this CPU and keeps the fastest (int8 keeps distances to about 1e-3)")
    p.add_argument("--memory-mb", type=int, default=e.memory_budget_mb,
                   help="memory budget for scoring in MB (default: 70%% of physical memory)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--subsets", type=int, default=e.subsets, help="subset division s")
    p.add_argument("--screening", type=float, default=e.screening_percent, help="[CLS] screening p in percent")
    p.add_argument("--seed", type=int, default=e.seed)
    p.add_argument("--batch-size", type=int, default=f.batch_size, help="images per backbone call")
    p.add_argument("--no-overlays", action="store_true", help="skip heatmap overlay PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the per-image feature cache")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache folder (default: $CODEGRAPH_AD_CACHE/features or ~/.cache/codegraph-ad/features)")
    p.add_argument("--k-fraction", type=float, default=g.k_fraction)
    p.add_argument("--alpha", type=float, default=g.alpha)
    p.add_argument("--coverage", type=float, default=g.target_coverage)
    p.add_argument("--kappa", type=float, default=g.kappa)
    p.add_argument("--min-community-size", type=int, default=g.min_community_size,
                   help="smallest community that enters the Tukey quartiles and may be flagged")
    p.add_argument("--dependency-percentile", type=float, default=g.dependency_percentile)
    p.add_argument("--community-density", choices=["per_pair", "per_member"], default=g.community_density,
                   help="community density: internal weight per image pair (SPEC) or per member")
    p.add_argument("--resolution-percentile", type=float, default=g.resolution_percentile,
                   help="CPM resolution = this percentile of the positive edge weights")
    p.add_argument("--joint-filtering", action=argparse.BooleanOptionalAction, default=g.joint_filtering,
                   help="judge all outlier communities at once (a repeated group split by Leiden stays "
                        "filterable) instead of one by one")
    p.add_argument("--graph-degree", type=int, default=g.graph_degree,
                   help="LNAMD degree r whose minima feed the graph (one of the run's degrees)")
    p.add_argument("--graph-layers", default=None,
                   help="comma-separated 0-based indices of --layers whose minima feed the graph "
                        "(default: all, averaged; docs/codegraph.md)")


def _int_tuple(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else tuple(int(x) for x in str(text).split(",") if x.strip())


def config_from_args(a: argparse.Namespace) -> RunConfig:
    layers = _int_tuple(a.layers)
    features = FeatureConfig(a.backbone, a.image_size, layers, a.final_norm, a.checkpoint, a.batch_size)
    engine = EngineConfig(a.precision, a.memory_mb, a.threads, a.subsets, a.screening, a.seed)
    msm = MSMConfig(q=a.q) if (a.q is not None and a.method == "musc") else MSMConfig()
    graph = GraphConfig(k_fraction=a.k_fraction, alpha=a.alpha, target_coverage=a.coverage, kappa=a.kappa,
                        min_community_size=a.min_community_size, dependency_percentile=a.dependency_percentile,
                        graph_degree=a.graph_degree, graph_layers=_int_tuple(a.graph_layers),
                        community_density=a.community_density, resolution_percentile=a.resolution_percentile,
                        joint_filtering=a.joint_filtering)
    if a.q is not None and a.method == "codegraph":
        graph = replace(graph, final_q=a.q)
    rscin = RsCINConfig(enabled=a.rscin)
    return RunConfig(a.method, features, _DEFAULTS.lnamd, msm, rscin, engine, graph)


def print_score_rows(rows: list[dict], item: str = "image", limit: int = 20) -> None:
    """The highest-scoring rows first, as every scoring command prints them."""
    rows = sorted(rows, key=lambda r: -r["score"])
    print(f"{'score':>10}  {item}")
    for r in rows[:limit]:
        print(f"{r['score']:10.4f}  {r['name']}")
    if len(rows) > limit:
        print(f"... {len(rows) - limit} more in scores.csv")


def print_repeated_defects(diagnostics: dict | None, names: list[str], item: str = "image",
                           unit: str = "patches") -> None:
    """One line per repeated-defect group (CoDeGraph's outlier communities); nothing when none.

    Said in the summary because a repeated defect is the finding MuSc alone would miss.
    """
    from codegraph_ad.graph.groups import describe_group, repeated_defect_groups

    for group in repeated_defect_groups(diagnostics, names) or []:
        print(describe_group(group, item, unit))


def cmd_detect(a: argparse.Namespace) -> int:
    from codegraph_ad.api import detect

    result = detect(a.folder, a.out, config_from_args(a), overwrite=a.overwrite,
                    on_error="skip" if a.skip_bad else "stop", progress=not a.quiet,
                    overlays=not a.no_overlays, cache=False if a.no_cache else None, cache_dir=a.cache_dir)
    print_score_rows(result.table())
    print_repeated_defects(result.scores.diagnostics, result.names)
    print(f"results written to {a.out}")
    return 0


def format_metrics_table(metrics: dict) -> str:
    rows = []
    for group in ("image", "pixel"):
        for k, v in metrics.get(group, {}).items():
            rows.append(f"{group + ' ' + k:<16} {'n/a' if v is None else f'{100 * v:6.2f}'}")
    return "\n".join(rows)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from codegraph_ad.api import evaluate

    res = evaluate(a.category_dir, a.out, config_from_args(a), eval_size=a.eval_size, overwrite=a.overwrite,
                   progress=not a.quiet, overlays=not a.no_overlays,
                   cache=False if a.no_cache else None, cache_dir=a.cache_dir)
    print(format_metrics_table(res.metrics))
    print_repeated_defects(res.run.scores.diagnostics, res.run.names)
    print(f"metrics written to {a.out / 'metrics.json'}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from codegraph_ad.api import detect
    from codegraph_ad.demo import make_demo_images

    folder = a.out / "demo_images"
    make_demo_images(folder)
    print(f"wrote demo images to {folder} (3 with synthetic defects: defect_*.png)")
    cfg = config_from_args(a)
    result = detect(folder, a.out / "run", cfg, overwrite=True, progress=not a.quiet, overlays=not a.no_overlays)
    print_score_rows(result.table())
    print_repeated_defects(result.scores.diagnostics, result.names)
    print(f"results written to {a.out / 'run'}")
    return 0


def cmd_backbones(a: argparse.Namespace) -> int:
    from codegraph_ad.backbones import list_backbones

    for name in list_backbones():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codegraph-ad", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("detect", help="score every image of a folder as one batch")
    p.add_argument("folder", type=Path)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning instead of stopping")
    add_run_options(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("evaluate", help="run on an MVTec-layout category and compute metrics")
    p.add_argument("category_dir", type=Path)
    p.add_argument("--eval-size", type=int, default=256, help="pixel metrics resolution")
    add_run_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="generate demo images and run detect on them")
    add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("backbones", help="list the known backbones")
    p.set_defaults(func=cmd_backbones)

    for module in _COMMAND_MODULES:
        try:
            importlib.import_module(module).register(sub)
        except ImportError as exc:  # one broken optional area must not take detect down with it
            print(f"warning: commands of {module} unavailable ({exc})", file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.version:
        from codegraph_ad import __version__

        print(__version__)
        return 0
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.simplefilter("default")
    from codegraph_ad.io.signals import terminate_as_interrupt

    try:
        with terminate_as_interrupt():  # SIGTERM cleans up like Ctrl-C, for every command
            return int(a.func(a))
    except CodegraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished outputs are complete, unfinished ones were not written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
