"""``codegraph-ad analyze RUN_DIR [--out DIR]``: scaling, burnout and tail analyses of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegraph_ad.analysis.config import AnalysisConfig
from codegraph_ad.options import add_config_options, config_from_args

# The names the command had before its options were generated from AnalysisConfig.
ANALYZE_ALIASES: dict[tuple[type, str], tuple[str, ...]] = {(AnalysisConfig, "repeated_images"): ("--repeated",)}
# Fields given several times add up (--repeated a --repeated b), as the hand-written option did.
ANALYZE_REPEATABLE = ("repeated_images",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("analyze", help="similarity-scaling, neighbour-burnout and tail analyses of a finished run")
    p.add_argument("run_dir", type=Path, help="a finished run folder (holds run.json)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/analysis)")
    p.add_argument("--no-figures", action="store_true", help="write analysis.json only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_options(p, AnalysisConfig, aliases=ANALYZE_ALIASES, repeatable=ANALYZE_REPEATABLE,
                       config_key="analysis_config",
                       config_help="JSON configuration: config_to_dict(AnalysisConfig) output, or an earlier "
                                   "analysis.json (its \"analysis_config\"); options given here override it")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(a: argparse.Namespace) -> int:
    from codegraph_ad.analysis.run import ANALYSIS_JSON, analyze_run
    from codegraph_ad.report.html import REPORT_NAME, write_report

    config: AnalysisConfig = config_from_args(a)
    out = a.out if a.out is not None else a.run_dir / "analysis"
    result = analyze_run(a.run_dir, out, config, progress=not a.quiet, figures=not a.no_figures)
    print(f"{'block':>5}  {'slope':>7}  {'R2':>6}  {'Hill':>6}  {'Beta a':>6}  burnout (consistent / repeated)")
    for layer in result["layers"]:
        fit = layer["scaling"]["fit"]
        slope = f"{fit['exponent']:7.3f}" if fit else "    n/a"
        r2 = f"{fit['r2']:6.3f}" if fit else "   n/a"
        hill = layer["hill"]["plateau"]
        beta = layer["beta"]["alpha"]
        burn = layer["burnout"]["consistent"]["burnout_rank"] if layer["burnout"] else None
        rep = (layer["burnout"] or {}).get("repeated", {}).get("burnout_rank")
        print(f"{layer['block']:>5}  {slope}  {r2}  {'   n/a' if hill is None else f'{hill:6.2f}'}  "
              f"{'   n/a' if beta is None else f'{beta:6.2f}'}  {'n/a' if burn is None else burn} / "
              f"{'n/a' if rep is None else rep}")
    figures = ", ".join(result["figures"].values()) or "none"
    print(f"analysis written to {out / ANALYSIS_JSON} (figures: {figures})")
    report = a.run_dir / REPORT_NAME
    if report.exists() and out.resolve() == (a.run_dir / "analysis").resolve():
        write_report(a.run_dir)  # the report shows the analysis found in its default folder
        print(f"report updated: {report}")
    return 0
