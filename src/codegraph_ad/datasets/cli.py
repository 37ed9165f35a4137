"""Subcommands that build or list datasets: ``make-synca``, ``make-consistad``, ``datasets``."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegraph_ad.datasets.consistad import ConsistADConfig
from codegraph_ad.datasets.manta import MantaConfig
from codegraph_ad.datasets.synca import SynCAConfig
from codegraph_ad.errors import InputError
from codegraph_ad.options import add_config_options, config_from_args

# make-consistad's --mvtec/--loco/--manta are the source roots; the config fields of those
# names (the classes taken from each root) get these flags instead.
CONSISTAD_NAMES = {"mvtec": "--mvtec-classes", "loco": "--loco-classes", "manta": "--manta-classes"}
CONSISTAD_PREFIXES: dict[type | str, str] = {MantaConfig: "manta"}  # --manta-n-views, --manta-axis


def cmd_make_synca(a: argparse.Namespace) -> int:
    from codegraph_ad.datasets.synca import build_synca, build_synca_dataset

    config: SynCAConfig = config_from_args(a)
    if a.all_categories:
        if a.source is not None:
            raise InputError("--source names one image and cannot be combined with --all-categories")
        results = build_synca_dataset(a.category_dir, a.out, a.copies, a.seed, config, overwrite=a.overwrite)
    else:
        results = [build_synca(a.category_dir, a.out, a.copies, a.source, a.seed, config, overwrite=a.overwrite)]
    for r in results:
        what = f"{len(r.copies)} copies of {r.source}" if r.source else "no copies (kept unchanged)"
        print(f"{r.out_dir}: {r.n_original} originals + {what} ({r.seconds:.1f} s)")
    return 0


def cmd_make_consistad(a: argparse.Namespace) -> int:
    from codegraph_ad.datasets.consistad import build_consistad

    config: ConsistADConfig = config_from_args(a)
    r = build_consistad(a.mvtec_root, a.loco_root, a.manta_root, a.out, a.seed, config, overwrite=a.overwrite)
    for name, info in r.classes.items():
        print(f"{name:<14} {info['source']:<6} {info['n_normal']:4d} normal {info['n_anomalous']:4d} anomalous")
    print(f"ConsistAD written to {r.out_dir} ({r.seconds:.1f} s)")
    return 0


def cmd_datasets(a: argparse.Namespace) -> int:
    from codegraph_ad.datasets.registry import get_reader, list_datasets

    for name in list_datasets():
        print(f"{name:<11} {get_reader(name).description}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("make-synca", help="build MVTec-SynCA: add perturbed copies of one anomalous image")
    p.add_argument("category_dir", type=Path, help="MVTec-layout category (or dataset root with --all-categories)")
    p.add_argument("--out", required=True, type=Path, help="output folder (a full MVTec-layout category)")
    p.add_argument("--copies", type=int, default=None,
                   help="number of copies (default: --copies-fraction of the test images)")
    p.add_argument("--source", default=None, help="image to copy as defect/stem, e.g. broken_large/000 "
                   "(default: a seeded choice among anomalous images)")
    p.add_argument("--seed", type=int, default=0, help="seed of the source choice and of the copies' perturbations")
    p.add_argument("--all-categories", action="store_true",
                   help="CATEGORY_DIR is a dataset root: build every category (metal_nut kept unchanged)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    # --copies, --source and --seed choose what is built, not how a copy is perturbed: they
    # are arguments of build_synca, not SynCAConfig fields, and the manifest records them apart.
    add_config_options(p, SynCAConfig,
                       config_help="JSON configuration: config_to_dict(SynCAConfig) output, or the manifest of "
                                   "an earlier build (its \"config\"); options given here override it")
    p.set_defaults(func=cmd_make_synca)

    p = subparsers.add_parser("make-consistad", help="build ConsistAD from MVTec AD, MVTec LOCO and MANTA")
    p.add_argument("--mvtec", dest="mvtec_root", required=True, type=Path,
                   help="MVTec AD root (holding cable/, metal_nut/, pill/)")
    p.add_argument("--loco", dest="loco_root", required=True, type=Path,
                   help="MVTec LOCO AD root (breakfast_box/, pushpins/)")
    p.add_argument("--manta", dest="manta_root", required=True, type=Path,
                   help="MANTA root (capsule/, coated_tablet/, coffee_bean/, red_tablet/, possibly one level down)")
    p.add_argument("--out", required=True, type=Path, help="output root")
    p.add_argument("--seed", type=int, default=0, help="seed of the MANTA samples")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    add_config_options(p, ConsistADConfig, prefixes=CONSISTAD_PREFIXES, names=CONSISTAD_NAMES,
                       config_help="JSON configuration: config_to_dict(ConsistADConfig) output, or the manifest "
                                   "of an earlier build (its \"config\"); options given here override it")
    p.set_defaults(func=cmd_make_consistad)

    p = subparsers.add_parser("datasets", help="list the dataset layouts `benchmark --dataset` reads")
    p.set_defaults(func=cmd_datasets)
