"""ConsistAD: nine classes with consistent anomalies, gathered from MVTec AD, MVTec LOCO and MANTA.

Thesis appendix A.2 / SPEC section 11:

- MVTec AD (cable, metal_nut, pill) and MVTec LOCO (breakfast_box, pushpins): the original
  test images, unchanged. LOCO's per-region mask folders are united into one
  ``<stem>_mask.png`` so that every class has the MVTec AD layout.
- MANTA (capsule, coated_tablet, coffee_bean, red_tablet): one view per tiled image (normal:
  the middle view; anomalous: the view with the largest mask), then a seeded sample of 100
  normal and 50 anomalous images, 20 of the anomalous ones being those with the largest
  masks (consistent anomalies in MANTA tend to be large) and the rest drawn at random.

The output root holds one MVTec-layout folder per class and ``manifest.json`` (written
last): sources, seed, counts and, for MANTA, every chosen file with its view and mask area.
"""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codegraph_ad._version import __version__
from codegraph_ad.config import documented
from codegraph_ad.datasets._layout import check_build_folder, resolve_category, save_png
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.loco import read_loco_category
from codegraph_ad.datasets.manta import MantaConfig, MantaView, extract_manta_views
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.io.atomic import write_bytes, write_json
from codegraph_ad.io.masks import mvtec_mask_file, union_mask

MANIFEST = "manifest.json"
_WORK = ".views"


@dataclass(frozen=True)
class ConsistADConfig:
    """Which classes come from which source, and the MANTA sample sizes [thesis]."""

    mvtec: tuple[str, ...] = documented(("cable", "metal_nut", "pill"), "classes taken from MVTec AD")
    loco: tuple[str, ...] = documented(("breakfast_box", "pushpins"), "classes taken from MVTec LOCO AD")
    manta: tuple[str, ...] = documented(
        ("capsule", "coated_tablet", "coffee_bean", "red_tablet"), "classes taken from MANTA")
    manta_normal: int = documented(100, "normal images sampled per MANTA class")
    manta_anomalous: int = documented(50, "anomalous images sampled per MANTA class")
    manta_largest: int = documented(  # of the anomalous images, this many are the largest-mask ones
        20, "of the sampled anomalous MANTA images, this many are the largest-mask ones")
    manta_views: MantaConfig = documented(MantaConfig, "how a MANTA image is split into views", factory=True)


@dataclass
class ConsistADResult:
    out_dir: Path
    classes: dict[str, dict]
    seconds: float


def sample_manta(views: list[MantaView], config: ConsistADConfig,
                 rng: np.random.Generator) -> list[tuple[MantaView, str]]:
    """Seeded selection: ``(view, why)`` with why in {"normal", "largest", "random"}.

    Largest = the ``manta_largest`` anomalous views with the largest mask area (ties broken by
    file order); the remaining anomalous slots are drawn without replacement from the rest.
    """
    normal = [v for v in views if v.sample.label == 0]
    anomalous = [v for v in views if v.sample.label == 1]
    n_norm = min(config.manta_normal, len(normal))
    n_anom = min(config.manta_anomalous, len(anomalous))
    if n_norm < config.manta_normal or n_anom < config.manta_anomalous:
        warnings.warn(f"MANTA class has {len(normal)} normal / {len(anomalous)} anomalous images; "
                      f"taking {n_norm} / {n_anom} instead of {config.manta_normal} / {config.manta_anomalous}",
                      stacklevel=3)
    picked_normal = sorted(rng.choice(len(normal), n_norm, replace=False).tolist()) if n_norm else []
    order = sorted(range(len(anomalous)), key=lambda i: (-anomalous[i].mask_area, i))
    n_large = min(config.manta_largest, n_anom)
    largest = order[:n_large]
    rest = order[n_large:]
    extra = rng.choice(len(rest), n_anom - n_large, replace=False).tolist() if n_anom > n_large else []
    chosen = [(normal[i], "normal") for i in picked_normal]
    chosen += [(anomalous[i], "largest") for i in sorted(largest)]
    chosen += [(anomalous[rest[j]], "random") for j in sorted(extra)]
    return chosen


def build_consistad(
    mvtec_root: str | Path,
    loco_root: str | Path,
    manta_root: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    config: ConsistADConfig = ConsistADConfig(),
    overwrite: bool = False,
) -> ConsistADResult:
    """Build ConsistAD under ``out_dir`` from local copies of the three source datasets."""
    t0 = time.perf_counter()
    out = _prepare_out(Path(out_dir), overwrite, [Path(mvtec_root), Path(loco_root), Path(manta_root)])
    # Find every class first so a missing one fails before anything is written.
    sources = {c: ("mvtec", resolve_category(Path(mvtec_root), c)) for c in config.mvtec}
    sources |= {c: ("loco", resolve_category(Path(loco_root), c)) for c in config.loco}
    sources |= {c: ("manta", resolve_category(Path(manta_root), c)) for c in config.manta}
    classes: dict[str, dict] = {}
    for i, (name, (kind, folder)) in enumerate(sources.items()):
        dst = out / name
        if kind == "mvtec":
            classes[name] = _copy_samples(read_mvtec_category(folder), dst, unite_masks=False)
        elif kind == "loco":
            classes[name] = _copy_samples(read_loco_category(folder), dst, unite_masks=True)
        else:
            views = extract_manta_views(folder, out / _WORK / name, config.manta_views)
            chosen = sample_manta(views, config, np.random.default_rng([seed, i]))
            classes[name] = _copy_manta(chosen, dst)
        classes[name] |= {"source": kind, "folder": str(folder)}
    shutil.rmtree(out / _WORK, ignore_errors=True)
    write_json(out / MANIFEST, {"kind": "consistad", "seed": seed, "config": asdict(config),
                                "sources": {"mvtec": str(mvtec_root), "loco": str(loco_root),
                                            "manta": str(manta_root)},
                                "classes": classes, "versions": {"codegraph_ad": __version__}})
    return ConsistADResult(out, classes, time.perf_counter() - t0)


def _copy_samples(samples: list[LabelledSample], dst: Path, unite_masks: bool) -> dict:
    """Copy images unchanged; masks copied (MVTec AD) or united into one PNG (LOCO)."""
    for s in samples:
        image = dst / "test" / s.defect / s.image_path.name
        write_bytes(image, s.image_path.read_bytes())
        if not s.mask_paths:
            continue
        mask_out = mvtec_mask_file(dst, s.defect, s.image_path.stem)
        if unite_masks or len(s.mask_paths) > 1:
            save_png(mask_out, _union(s).astype(np.uint8) * 255)
        else:
            write_bytes(mask_out.parent / s.mask_paths[0].name, s.mask_paths[0].read_bytes())
    return {"n_normal": sum(s.label == 0 for s in samples), "n_anomalous": sum(s.label == 1 for s in samples)}


def _copy_manta(chosen: list[tuple[MantaView, str]], dst: Path) -> dict:
    files = []
    for view, why in chosen:
        s = view.sample
        write_bytes(dst / "test" / s.defect / s.image_path.name, s.image_path.read_bytes())
        for m in s.mask_paths:
            write_bytes(dst / "ground_truth" / s.defect / m.name, m.read_bytes())
        files.append({"name": s.name, "source": str(view.source.image_path), "view": view.view,
                      "mask_area": view.mask_area, "why": why})
    return {"n_normal": sum(w == "normal" for _, w in chosen), "n_anomalous": sum(w != "normal" for _, w in chosen),
            "files": files}


def _union(s: LabelledSample) -> np.ndarray:
    from PIL import Image

    with Image.open(s.image_path) as img:
        shape = (img.height, img.width)
    return union_mask(s.mask_paths, shape)


def _prepare_out(out: Path, overwrite: bool, sources: list[Path]) -> Path:
    if check_build_folder(out, sources, "consistad", "ConsistAD", overwrite):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out
