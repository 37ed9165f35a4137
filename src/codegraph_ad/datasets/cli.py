"""Subcommands that build or list datasets: ``make-synca``, ``make-consistad``, ``datasets``."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegraph_ad.errors import InputError


def cmd_make_synca(a: argparse.Namespace) -> int:
    from codegraph_ad.datasets.synca import build_synca, build_synca_dataset

    if a.all_categories:
        if a.source is not None:
            raise InputError("--source names one image and cannot be combined with --all-categories")
        results = build_synca_dataset(a.category_dir, a.out, a.copies, a.seed, overwrite=a.overwrite)
    else:
        results = [build_synca(a.category_dir, a.out, a.copies, a.source, a.seed, overwrite=a.overwrite)]
    for r in results:
        what = f"{len(r.copies)} copies of {r.source}" if r.source else "no copies (kept unchanged)"
        print(f"{r.out_dir}: {r.n_original} originals + {what} ({r.seconds:.1f} s)")
    return 0


def cmd_make_consistad(a: argparse.Namespace) -> int:
    from codegraph_ad.datasets.consistad import build_consistad

    r = build_consistad(a.mvtec, a.loco, a.manta, a.out, a.seed, overwrite=a.overwrite)
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
    p.add_argument("--copies", type=int, default=None, help="number of copies (default: 15%% of the test images)")
    p.add_argument("--source", default=None, help="image to copy as defect/stem, e.g. broken_large/000 "
                   "(default: a seeded choice among anomalous images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all-categories", action="store_true",
                   help="CATEGORY_DIR is a dataset root: build every category (metal_nut kept unchanged)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    p.set_defaults(func=cmd_make_synca)

    p = subparsers.add_parser("make-consistad", help="build ConsistAD from MVTec AD, MVTec LOCO and MANTA")
    p.add_argument("--mvtec", required=True, type=Path, help="MVTec AD root (holding cable/, metal_nut/, pill/)")
    p.add_argument("--loco", required=True, type=Path, help="MVTec LOCO AD root (breakfast_box/, pushpins/)")
    p.add_argument("--manta", required=True, type=Path,
                   help="MANTA root (capsule/, coated_tablet/, coffee_bean/, red_tablet/, possibly one level down)")
    p.add_argument("--out", required=True, type=Path, help="output root")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    p.set_defaults(func=cmd_make_consistad)

    p = subparsers.add_parser("datasets", help="list the dataset layouts `benchmark --dataset` reads")
    p.set_defaults(func=cmd_datasets)
