"""Subcommands ``volumes``, ``evaluate-volumes`` and ``make-cohort`` (registered by cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegraph_ad.errors import InputError
from codegraph_ad.graph.groups import repeated_defect_groups
from codegraph_ad.options import add_config_options, add_run_options, config_from_args
from codegraph_ad.report.console import print_repeated_defects, print_score_rows
from codegraph_ad.volumes.config import CohortConfig, LesionConfig, VolumeConfig

_VOL = VolumeConfig()
_COHORT = CohortConfig()
# The names make-cohort had before its options were generated.
_COHORT_ALIASES = {(CohortConfig, "sources"): ("--source",), (CohortConfig, "n_healthy"): ("--healthy",),
                   (CohortConfig, "n_random"): ("--random",), (CohortConfig, "n_consistent"): ("--consistent",)}


def add_volume_options(p: argparse.ArgumentParser) -> None:
    """Every field of ``VolumeConfig`` (its ``run`` with the 2D option names, volume defaults)."""
    add_run_options(p, VolumeConfig, _VOL)  # --image-size is ignored for volumes: slices are fed at --size
    p.add_argument("--no-mosaics", action="store_true", help="skip the PNG mosaics")


def volume_config_from_args(a: argparse.Namespace) -> VolumeConfig:
    """The volume configuration of a parsed volume command (defaults < --config < options)."""
    return config_from_args(a)


def cmd_volumes(a: argparse.Namespace) -> int:
    from codegraph_ad.volumes.api import detect_volumes

    result = detect_volumes(a.folder, a.out, volume_config_from_args(a), brain_masks=a.brain_masks,
                            overwrite=a.overwrite, progress=not a.quiet, mosaics=not a.no_mosaics)
    print_score_rows(result.table(), item="volume")
    print_repeated_defects(repeated_defect_groups(result.scores.diagnostics, result.names), item="volume",
                           unit="cubes")
    print(f"results written to {a.out}")
    return 0


def _fmt(v: object) -> str:
    return "n/a" if v is None else f"{100 * float(v):6.2f}"  # type: ignore[arg-type]


def cmd_evaluate_volumes(a: argparse.Namespace) -> int:
    from codegraph_ad.volumes.api import evaluate_volumes

    res = evaluate_volumes(a.cohort_dir, a.out, volume_config_from_args(a), overwrite=a.overwrite,
                           progress=not a.quiet, mosaics=not a.no_mosaics)
    m = res.metrics
    print(f"patient AUROC    {_fmt(m['patient']['auroc'])}")
    print(f"patient F1-max   {_fmt(m['patient']['f1_max'])}")
    print(f"voxel AUROC      {_fmt(m['voxel_auroc'])}")
    print(f"Dice (all)       {_fmt(m['dice_mean'])}")
    print(f"Dice (lesioned)  {_fmt(m['dice_lesioned'])}")
    for group, d in m.get("dice_by_group", {}).items():
        print(f"Dice {group:<11} {_fmt(d)}")
    print(f"metrics written to {a.out / 'metrics.json'}")
    return 0


def cmd_make_cohort(a: argparse.Namespace) -> int:
    from codegraph_ad.volumes.cohort import build_cohort

    cfg = config_from_args(a)
    if not cfg.sources:
        raise InputError("make-cohort needs at least one --source (a healthy, skull-stripped NIfTI volume)")
    manifest = build_cohort(a.out, cfg, overwrite=a.overwrite, progress=not a.quiet)
    print(f"cohort of {cfg.n_healthy + cfg.n_random + cfg.n_consistent} volumes written to {a.out} ({manifest.name})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("volumes", help="score a folder of skull-stripped, co-registered NIfTI volumes as one batch")
    p.add_argument("folder", type=Path)
    p.add_argument("--brain-masks", type=Path, default=None,
                   help="folder of brain masks named like the volumes (default: voxels > 0)")
    add_volume_options(p)
    p.set_defaults(func=cmd_volumes)

    p = sub.add_parser("evaluate-volumes", help="score a cohort folder (volumes/ + masks/) and compute 3D metrics")
    p.add_argument("cohort_dir", type=Path)
    add_volume_options(p)
    p.set_defaults(func=cmd_evaluate_volumes)

    p = sub.add_parser("make-cohort", help="build a synthetic lesion cohort from healthy skull-stripped volumes")
    p.add_argument("--out", type=Path, required=True)
    # Every CohortConfig field; ranges and --source take space-separated values as before.
    add_config_options(p, CohortConfig, _COHORT, prefixes={LesionConfig: "lesion"}, aliases=_COHORT_ALIASES,
                       token_lists=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_make_cohort)
