"""Command line: a thin shell over the Python API (``codegraph-ad --help``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from codegraph_ad.errors import CodegraphError, InputError
from codegraph_ad.options import add_output_options, add_run_options, config_from_args, read_json_file
from codegraph_ad.report.console import (
    TOP_SCORES,
    format_metrics_table,
    print_flags,
    print_repeated_defects,
    print_run_summary,
    print_score_rows,
)

# Each area of the package adds its own subcommands through ``register(subparsers)``;
# their functions take the parsed namespace and return an exit code.
_COMMAND_MODULES: tuple[str, ...] = ("codegraph_ad.report.cli", "codegraph_ad.analysis.cli", "codegraph_ad.datasets.cli",
                                     "codegraph_ad.suite.cli", "codegraph_ad.volumes.cli",
                                     "codegraph_ad.distill.commands")


def replay_inputs(manifest: dict, source: Path) -> tuple[list[Path], Path | None]:
    """The inputs of a finished run: its manifest's paths, and the root folder that names
    them as the run did (the paths' common parent or one of its ancestors, else none)."""
    from codegraph_ad.io.batch import unique_names

    try:
        paths = [Path(p) for p in manifest["paths"]]
        names = list(manifest["names"])
    except (KeyError, TypeError):
        raise InputError(f"{source}: not a run folder's run.json (no \"paths\" and \"names\"); "
                         "give the images' folder") from None
    if not paths:
        raise InputError(f"{source}: the run has no inputs")
    parent = Path(os.path.commonpath([p.parent for p in paths]))
    for root in (parent, *parent.parents, None):
        if unique_names(paths, root) == names:
            return paths, root
    raise InputError(f"{source}: no root folder reproduces the run's image names")


def flagged_count(result: Any) -> int | None:
    """How many images a run flagged as anomalous without labels (its ``decision``), or None,
    for which the summary says nothing about flags."""
    decision = getattr(result, "decision", None)
    return None if decision is None else int(decision.n_flagged)


def print_detect_summary(result: Any, seconds: float) -> None:
    """detect's and demo's terminal output: the top scores, repeated defects, then the summary."""
    print_score_rows(result.table(), limit=TOP_SCORES)
    groups = result.groups()
    print_repeated_defects(groups)
    print_flags(None if result.decision is None else result.decision.to_dict())
    print_run_summary(len(result.names), seconds, result.out_dir, flagged=flagged_count(result),
                      groups=groups, skipped=len(result.skipped))


def cmd_detect(a: argparse.Namespace) -> int:
    from codegraph_ad.api import detect

    inputs, root = a.folder, None
    if inputs is None:
        if a.config is None:
            raise InputError("detect needs a FOLDER of images, or --config RUN_DIR/run.json to replay a run")
        inputs, root = replay_inputs(read_json_file(a.config), a.config)
    t0 = time.perf_counter()
    result = detect(inputs, a.out, config_from_args(a), overwrite=a.overwrite,
                    on_error="skip" if a.skip_bad else "stop", progress=not a.quiet,
                    overlays=not a.no_overlays, cache=False if a.no_cache else None, cache_dir=a.cache_dir,
                    root=root, masks=not a.no_masks)
    print_detect_summary(result, time.perf_counter() - t0)
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from codegraph_ad.api import score_new

    t0 = time.perf_counter()
    result = score_new(a.run_dir, a.images, a.out, overwrite=a.overwrite, on_error="skip" if a.skip_bad else "stop",
                       progress=not a.quiet, overlays=not a.no_overlays,
                       cache=False if a.no_cache else None, cache_dir=a.cache_dir, masks=not a.no_masks)
    print_score_rows(result.table(), limit=TOP_SCORES)
    print(f"scored against the {result.scores.diagnostics['reference']['images']} images of {a.run_dir}")
    print_flags(None if result.decision is None else result.decision.to_dict())
    print_run_summary(len(result.names), time.perf_counter() - t0, result.out_dir, flagged=flagged_count(result),
                      skipped=len(result.skipped))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from codegraph_ad.api import evaluate

    t0 = time.perf_counter()
    res = evaluate(a.category_dir, a.out, config_from_args(a), eval_size=a.eval_size, overwrite=a.overwrite,
                   progress=not a.quiet, overlays=not a.no_overlays,
                   cache=False if a.no_cache else None, cache_dir=a.cache_dir, masks=not a.no_masks)
    print(format_metrics_table(res.metrics))
    print_flags(res.run.decision.to_dict())
    run = res.run
    groups = run.groups()
    print_repeated_defects(groups)
    print_run_summary(len(run.names), time.perf_counter() - t0, run.out_dir, flagged=flagged_count(run),
                      groups=groups)
    print(f"metrics: {a.out / 'metrics.json'}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from codegraph_ad.api import detect
    from codegraph_ad.demo import make_demo_images

    folder = a.out / "demo_images"
    make_demo_images(folder)
    print(f"wrote demo images to {folder} (3 with synthetic defects: defect_*.png)")
    cfg = config_from_args(a)
    t0 = time.perf_counter()
    result = detect(folder, a.out / "run", cfg, overwrite=True, progress=not a.quiet, overlays=not a.no_overlays,
                    masks=not a.no_masks)
    print_detect_summary(result, time.perf_counter() - t0)
    return 0


def cmd_backbones(a: argparse.Namespace) -> int:
    from codegraph_ad.backbones import backbone_spec, list_backbones

    for name in list_backbones():
        print(f"{name:<32} {backbone_spec(name).description}")
    return 0


def cmd_methods(a: argparse.Namespace) -> int:
    """Registered methods, with what they take: batch methods score backbone features."""
    from codegraph_ad.registry import METHODS

    for name in METHODS.names():
        entry = METHODS.get(name)
        doc = (entry.__doc__ or "").strip().splitlines()
        print(f"{name:<12} {getattr(entry, 'input', 'features'):<9} {doc[0] if doc else ''}")
    return 0


def add_masks_option(p: argparse.ArgumentParser) -> None:
    """``--no-masks``, beside ``--no-overlays``: the image commands write a mask per flagged image."""
    p.add_argument("--no-masks", action="store_true",
                   help="skip masks/<name>.png, the pixels of each flagged image above the pixel threshold")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codegraph-ad", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("detect", help="score every image of a folder as one batch")
    p.add_argument("folder", type=Path, nargs="?",
                   help="images to score (recursive); optional with --config RUN_DIR/run.json, which replays that run")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning instead of stopping")
    add_run_options(p)
    add_masks_option(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("score", help="score new images against a finished detect run, without recomputing it")
    p.add_argument("run_dir", type=Path, help="a finished run folder that stored its reference set")
    p.add_argument("images", type=Path, help="new images to score (a folder, recursive, or one file)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning instead of stopping")
    add_output_options(p)  # the run's own configuration and backbone are used
    add_masks_option(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("evaluate", help="run on an MVTec-layout category and compute metrics")
    p.add_argument("category_dir", type=Path)
    p.add_argument("--eval-size", type=int, default=256, help="pixel metrics resolution")
    add_run_options(p)
    add_masks_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="generate demo images and run detect on them")
    add_run_options(p)
    add_masks_option(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("backbones", help="list the known backbones")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("methods", help="list the registered scoring methods and their input")
    p.set_defaults(func=cmd_methods)

    for module in _COMMAND_MODULES:
        try:
            importlib.import_module(module).register(sub)
        except ImportError as exc:  # one broken optional area must not take detect down with it
            print(f"warning: commands of {module} unavailable ({exc})", file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    from codegraph_ad.registry import load_plugins

    try:  # before the parser: registered backbones and methods are its choices
        load_plugins()
    except CodegraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.version:
        from codegraph_ad._version import __version__

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
