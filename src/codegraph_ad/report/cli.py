"""``codegraph-ad report RUN_DIR``: (re)build report.html for a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegraph_ad.report.html import ReportConfig

_DEFAULTS = ReportConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="build report.html for a finished run folder")
    p.add_argument("run_dir", type=Path, help="a finished run folder (holds run.json)")
    p.add_argument("--thumb-size", type=int, default=_DEFAULTS.thumb_size, help="thumbnail long side in px")
    p.add_argument("--detail-size", type=int, default=_DEFAULTS.detail_size, help="detail view long side in px")
    p.add_argument("--inline-max", type=int, default=_DEFAULTS.inline_detail_max_images,
                   help="inline the detail views up to this many images (else report_assets/)")
    p.set_defaults(func=cmd_report)


def cmd_report(a: argparse.Namespace) -> int:
    from codegraph_ad.report.html import write_report

    config = ReportConfig(thumb_size=a.thumb_size, detail_size=a.detail_size, inline_detail_max_images=a.inline_max)
    path = write_report(a.run_dir, config)
    print(f"report written to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
