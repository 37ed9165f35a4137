"""MVTec-SynCA: plant a consistent anomaly by adding perturbed copies of one anomalous image.

Thesis appendix A.2 / SPEC section 11: one anomalous image of a category and its mask are
copied with a random rotation and translation (reflection padding, the same geometry for
the mask, nearest-neighbour for the mask), brightness/contrast/saturation jitter on 80% of
the copies and Gaussian plus 1% salt-and-pepper noise on 20%; about 15% of the category's
image count is added. The text copy of the thesis lost the rotation, translation, jitter and
noise magnitudes: those defaults are marked [reconstructed] and recorded in every manifest.

Output: a complete MVTec-layout category (the originals' ``test/`` and ``ground_truth/``
copied, plus ``test/<defect>/synca_XXX.png`` and ``ground_truth/<defect>/synca_XXX_mask.png``)
and ``manifest.json``, written last, with the source, the seed and every copy's parameters.
The same inputs and seed give byte-identical files.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codegraph_ad._version import __version__
from codegraph_ad.config import documented
from codegraph_ad.datasets._layout import check_build_folder, category_dirs, save_png
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.datasets.transforms import add_noise, jitter, sampling_grid, warp
from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_bytes, write_json
from codegraph_ad.io.images import load_image_rgb
from codegraph_ad.io.masks import mvtec_mask_file, union_mask

MANIFEST = "manifest.json"
COPIED_FOLDERS = ("test", "ground_truth")


@dataclass(frozen=True)
class SynCAConfig:
    """Perturbation ranges; each copy draws its values uniformly within them."""

    copies_fraction: float = documented(  # [thesis]
        0.15, "copies = round(fraction * test images), at least 1, when --copies is not given")
    max_rotation_deg: float = documented(10.0, "rotation angle in [-r, r] degrees")  # [reconstructed]
    max_translation: float = documented(  # [reconstructed]
        0.05, "shift in [-t, t] as a fraction of width and height")
    jitter_share: float = documented(0.8, "share of copies with photometric jitter")  # [thesis]
    max_jitter: float = documented(  # [reconstructed]
        0.2, "brightness/contrast/saturation factors in [1-j, 1+j]")
    noise_share: float = documented(0.2, "share of copies with noise")  # [thesis]
    noise_sigma: float = documented(0.02, "Gaussian noise std as a fraction of 255")  # [reconstructed]
    salt_pepper: float = documented(0.01, "share of pixels of a noisy copy set to black/white")  # [thesis]
    prefix: str = documented("synca", "file-name prefix of the copies (<prefix>_000.png, ...)")


@dataclass(frozen=True)
class CopyPlan:
    """Everything needed to rebuild one copy from the source image."""

    index: int
    name: str
    angle_deg: float
    shift: tuple[float, float]  # (dx, dy) as fractions of width and height
    jitter: tuple[float, float, float] | None  # (brightness, contrast, saturation) factors
    noise_sigma: float | None
    salt_pepper: float | None
    noise_seed: tuple[int, ...] | None


@dataclass
class SynCAResult:
    out_dir: Path
    source: str
    n_original: int
    copies: list[CopyPlan]
    seconds: float


def default_copies(n_images: int, config: SynCAConfig = SynCAConfig()) -> int:
    """round(copies_fraction * n_images), at least 1."""
    return max(1, int(round(config.copies_fraction * n_images)))


def plan_copies(n: int, seed: int, config: SynCAConfig = SynCAConfig()) -> list[CopyPlan]:
    """Seeded parameters of ``n`` copies; exactly round(share * n) copies get jitter / noise."""
    rng = np.random.default_rng([seed, 1])
    angles = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg, n)
    shifts = rng.uniform(-config.max_translation, config.max_translation, (n, 2))
    factors = rng.uniform(1 - config.max_jitter, 1 + config.max_jitter, (n, 3))
    jittered = set(rng.permutation(n)[: int(round(config.jitter_share * n))].tolist())
    noisy = set(rng.permutation(n)[: int(round(config.noise_share * n))].tolist())
    return [
        CopyPlan(
            index=i,
            name=f"{config.prefix}_{i:03d}",
            angle_deg=float(angles[i]),
            shift=(float(shifts[i, 0]), float(shifts[i, 1])),
            jitter=tuple(float(f) for f in factors[i]) if i in jittered else None,
            noise_sigma=config.noise_sigma if i in noisy else None,
            salt_pepper=config.salt_pepper if i in noisy else None,
            noise_seed=(seed, 2, i) if i in noisy else None,
        )
        for i in range(n)
    ]


def make_copy(image: np.ndarray, mask: np.ndarray, plan: CopyPlan) -> tuple[np.ndarray, np.ndarray]:
    """Apply one plan: ``(H, W, 3)`` uint8 image and ``(H, W)`` bool mask -> the perturbed pair."""
    h, w = mask.shape
    shift_px = (plan.shift[0] * w, plan.shift[1] * h)
    grid = sampling_grid((h, w), plan.angle_deg, shift_px)
    out = warp(image, grid)
    out_mask = warp(mask, grid, nearest=True)
    if plan.jitter is not None:
        out = jitter(out, *plan.jitter)
    if plan.noise_sigma is not None:
        out = add_noise(out, plan.noise_sigma, plan.salt_pepper or 0.0, list(plan.noise_seed or ()))
    return out, out_mask


def choose_source(samples: list[LabelledSample], source: str | None, seed: int) -> LabelledSample:
    """The sample named ``defect/stem``, or a seeded choice among anomalous images with a mask."""
    candidates = [s for s in samples if s.label == 1 and s.mask_paths]
    if not candidates:
        raise InputError("no anomalous image with a mask in this category; SynCA needs one to copy")
    if source is None:
        return candidates[int(np.random.default_rng([seed, 0]).integers(len(candidates)))]
    wanted = source.strip().strip("/")
    for s in samples:
        if s.name == wanted or f"{s.defect}/{s.image_path.name}" == wanted:
            if s.label != 1 or not s.mask_paths:
                raise InputError(f"source {source!r} is not an anomalous image with a mask")
            return s
    examples = ", ".join(s.name for s in candidates[:3])
    raise InputError(f"source {source!r} not found; give it as defect/stem, e.g. {examples}")


def build_synca(
    category_dir: str | Path,
    out_dir: str | Path,
    n_copies: int | None = None,
    source: str | None = None,
    seed: int = 0,
    config: SynCAConfig = SynCAConfig(),
    overwrite: bool = False,
) -> SynCAResult:
    """Write a SynCA version of one MVTec-layout category into ``out_dir`` (see module doc)."""
    t0 = time.perf_counter()
    src_dir = Path(category_dir)
    samples = read_mvtec_category(src_dir)
    out = _prepare_out(src_dir, Path(out_dir), overwrite)
    n = default_copies(len(samples), config) if n_copies is None else int(n_copies)
    if n < 0:
        raise InputError(f"number of copies must be >= 0, got {n_copies}")
    chosen = choose_source(samples, source, seed) if n else None
    for folder in COPIED_FOLDERS:
        _copy_tree(src_dir / folder, out / folder)
    plans = plan_copies(n, seed, config)
    if chosen is not None:
        _write_copies(chosen, plans, out)
    manifest = {
        "kind": "synca",
        "source_category": str(src_dir),
        "source": None if chosen is None else {
            "name": chosen.name, "image": str(chosen.image_path), "masks": [str(m) for m in chosen.mask_paths]},
        "seed": seed,
        "n_original": len(samples),
        "n_copies": n,
        "config": asdict(config),
        "copies": [{**asdict(p), "image": f"test/{chosen.defect}/{p.name}.png",
                    "mask": mvtec_mask_file("", chosen.defect, p.name).as_posix()} for p in plans] if chosen else [],
        "versions": {"codegraph_ad": __version__},
    }
    write_json(out / MANIFEST, manifest)
    return SynCAResult(out, chosen.name if chosen else "", len(samples), plans, time.perf_counter() - t0)


def build_synca_dataset(
    dataset_root: str | Path,
    out_root: str | Path,
    n_copies: int | None = None,
    seed: int = 0,
    config: SynCAConfig = SynCAConfig(),
    unchanged: tuple[str, ...] = ("metal_nut",),
    overwrite: bool = False,
) -> list[SynCAResult]:
    """SynCA for every category under ``dataset_root``.

    ``unchanged`` categories are copied without synthetic images: the thesis keeps metal_nut
    as is, since its consistent anomalies already exceed 20% of the images.
    """
    cats = category_dirs(Path(dataset_root), "test")
    if not cats:
        raise InputError(f"{dataset_root}: no category folders (holding 'test/') found")
    results = []
    for name, folder in cats.items():
        copies = 0 if name in unchanged else n_copies
        results.append(build_synca(folder, Path(out_root) / name, copies, None, seed, config, overwrite))
    write_json(Path(out_root) / MANIFEST, {
        "kind": "synca_dataset", "source_root": str(dataset_root), "seed": seed, "config": asdict(config),
        "unchanged": list(unchanged),
        "categories": {name: {"source": r.source, "n_original": r.n_original,
                              "n_copies": len(r.copies) if r.source else 0}
                       for name, r in zip(cats, results, strict=True)},
        "versions": {"codegraph_ad": __version__},
    })
    return results


def _write_copies(chosen: LabelledSample, plans: list[CopyPlan], out: Path) -> None:
    image = load_image_rgb(chosen.image_path)
    mask = union_mask(chosen.mask_paths, image.shape[:2])
    for plan in plans:
        img_path = out / "test" / chosen.defect / f"{plan.name}.png"
        if img_path.exists():
            raise InputError(f"{img_path}: the category already holds a file with a SynCA copy's name")
        new_image, new_mask = make_copy(image, mask, plan)
        save_png(img_path, new_image)
        save_png(mvtec_mask_file(out, chosen.defect, plan.name), new_mask.astype(np.uint8) * 255)


def _copy_tree(src: Path, dst: Path) -> None:
    if not src.is_dir():
        return
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            write_bytes(dst / path.relative_to(src), path.read_bytes())


def _prepare_out(src: Path, out: Path, overwrite: bool) -> Path:
    """Refuse to write over the source or a folder this builder did not make."""
    if check_build_folder(out, [src], "synca", "SynCA", overwrite):
        (out / MANIFEST).unlink()
        for folder in COPIED_FOLDERS:
            if (out / folder).is_dir():
                shutil.rmtree(out / folder)
    out.mkdir(parents=True, exist_ok=True)
    return out
