"""``codegraph-ad report RUN_DIR``: (re)build report.html for a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegraph_ad.options import add_config_options, config_from_args
from codegraph_ad.report.html import ReportConfig

# The names the command had before its options were generated from ReportConfig.
REPORT_ALIASES: dict[tuple[type, str], tuple[str, ...]] = {
    (ReportConfig, "inline_detail_max_images"): ("--inline-max",),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="build report.html for a finished run folder")
    p.add_argument("run_dir", type=Path, help="a finished run folder (holds run.json)")
    add_config_options(p, ReportConfig, aliases=REPORT_ALIASES,
                       config_help="JSON configuration: config_to_dict(ReportConfig) output; options given here "
                                   "override it")
    p.set_defaults(func=cmd_report)


def cmd_report(a: argparse.Namespace) -> int:
    from codegraph_ad.report.html import write_report

    config: ReportConfig = config_from_args(a)
    path = write_report(a.run_dir, config)
    print(f"report written to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
