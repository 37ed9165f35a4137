"""Build a seeded synthetic cohort from real healthy, skull-stripped brains.

Each subject is one source brain under a random smooth deformation and intensity change;
some receive one random lesion, some the *consistent* lesion type (same shape seed, size,
contrast and relative place, jittered), which is what plain MuSc scores as normal once it
repeats in enough volumes. Output layout (what ``evaluate_volumes`` reads)::

    volumes/sub-XXX.nii.gz   int16 intensities, isotropic ``voxel_mm``, RAS+ affine
    masks/sub-XXX.nii.gz     uint8 lesion mask (all 0 for healthy subjects)
    cohort.json              config + every drawn parameter per subject (written last)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from codegraph_ad.config import config_to_dict
from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_json
from codegraph_ad.volumes.config import CohortConfig
from codegraph_ad.volumes.nifti import read_nifti_array, write_nifti
from codegraph_ad.volumes.preprocess import brain_box, resample, skull_strip_problem
from codegraph_ad.volumes.synth import (
    Lesion,
    apply_deformation,
    change_intensity,
    insert_lesion,
    random_deformation,
    random_lesion,
    smooth_noise,
)

COHORT_MANIFEST = "cohort.json"
SOURCE_MARGIN_MM = 12.0  # room around the brain for deformations and scaling
INT16_RANGE = 4000.0  # written intensities span 0..INT16_RANGE (99.9th brain percentile)


@dataclass
class Source:
    """A source brain: isotropic canonical image, brain mask, affine of the written grid."""

    path: Path
    image: np.ndarray
    brain: np.ndarray
    affine: np.ndarray


def load_source(path: Path, voxel_mm: float) -> Source:
    """Read, reorient to RAS+, crop to the brain (with margin), resample to ``voxel_mm``."""
    data, img = read_nifti_array(path)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
    image = np.asarray(canonical.dataobj, dtype=np.float32)
    brain = image > 0
    problem = skull_strip_problem(brain)
    if problem is not None:
        raise InputError(f"{path}: {problem}; cohort sources must be skull-stripped")
    zooms = np.sqrt((canonical.affine[:3, :3] ** 2).sum(axis=0))
    lo, hi = brain_box(brain, int(np.ceil(SOURCE_MARGIN_MM / zooms.min())))
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    extent = (np.asarray(hi) - np.asarray(lo)) * zooms
    shape = tuple(int(round(e / voxel_mm)) for e in extent)
    out = resample(image[crop], shape)
    mask = resample(brain[crop].astype(np.float32), shape) >= 0.5
    step = np.asarray([(b - a) / s for a, b, s in zip(lo, hi, shape)])  # old voxels per new voxel
    affine = canonical.affine.copy()
    affine[:3, :3] = canonical.affine[:3, :3] @ np.diag(step)
    start = np.asarray(lo) + (step - 1) / 2.0  # cell-centred resampling (align_corners=False)
    affine[:3, 3] = canonical.affine[:3, :3] @ start + canonical.affine[:3, 3]
    return Source(path, np.where(mask, out, 0.0).astype(np.float32), mask, affine)


def plan_subjects(config: CohortConfig, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Kinds and sources, shuffled: each kind spread over the sources in turn."""
    kinds = ["healthy"] * config.n_healthy + ["random"] * config.n_random + ["consistent"] * config.n_consistent
    plan = []
    counters: dict[str, int] = {}
    for kind in kinds:
        k = counters.get(kind, 0)
        counters[kind] = k + 1
        plan.append({"kind": kind, "source": k % len(config.sources)})
    order = rng.permutation(len(plan))
    return [dict(plan[i], name=f"sub-{j:03d}") for j, i in enumerate(order)]


def consistent_lesion(brain: np.ndarray, config: CohortConfig, rng: np.random.Generator) -> Lesion:
    """The repeated lesion type at its place in this subject's brain box, jittered."""
    lo, hi = brain_box(brain, 0)
    j = config.consistent_jitter
    place = np.asarray(config.consistent_place) + rng.uniform(-j, j, 3) * 0.25
    centre = np.asarray(lo) + place * (np.asarray(hi) - np.asarray(lo) - 1)
    d = config.consistent_diameter_mm
    diam = tuple(float(d * r * (1 + rng.uniform(-j, j))) for r in (1.0, 0.8, 0.7))
    contrast = config.consistent_contrast * (1 + rng.uniform(-j, j))
    rot = tuple(float(a + rng.uniform(-5, 5)) for a in (20.0, -10.0, 30.0))
    return Lesion(tuple(float(c) for c in centre), diam, float(contrast), rot, config.seed + 7919)  # type: ignore[arg-type]


def make_subject(source: Source, config: CohortConfig, kind: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One subject: deformed, intensity-changed image, its lesion mask and the drawn parameters."""
    v = config.voxel_mm
    d = random_deformation(source.image.shape, v, config.rotation_deg, config.scale,  # type: ignore[arg-type]
                           config.deformation_mm, config.smoothness_mm, rng)
    brain = apply_deformation(source.brain.astype(np.float32), d) >= 0.5
    image = np.where(brain, apply_deformation(source.image, d), 0.0).astype(np.float32)
    gamma = float(rng.uniform(*config.gamma))
    bias = np.exp(config.bias * smooth_noise(image.shape, 40.0 / v, rng))
    image = change_intensity(image, brain, gamma, bias, config.noise, rng)
    params: dict[str, Any] = {"gamma": gamma, "affine_matrix": d.matrix.tolist(), "shift_vox": d.shift.tolist()}
    mask = np.zeros(image.shape, dtype=bool)
    if kind != "healthy":
        if kind == "consistent":
            lesion = consistent_lesion(brain, config, rng)
        else:
            lesion = random_lesion(brain, v, config.lesion, rng)
        image, mask = insert_lesion(image, brain, lesion, v, config.lesion, rng)
        params["lesion"] = {"centre_vox": list(lesion.centre), "diameters_mm": list(lesion.diameters_mm),
                            "contrast": lesion.contrast, "rotation_deg": list(lesion.rotation_deg),
                            "shape_seed": lesion.shape_seed, "voxels": int(mask.sum())}
    return image, mask, params


def remove_cohort_files(out: Path) -> None:
    """Delete the files an earlier cohort.json lists (and only those), manifest first."""
    manifest = out / COHORT_MANIFEST
    names = [row["name"] for row in json.loads(manifest.read_text())["subjects"]]
    manifest.unlink()
    for name in names:
        for folder in ("volumes", "masks"):
            (out / folder / f"{name}.nii.gz").unlink(missing_ok=True)


def build_cohort(out_dir: str | Path, config: CohortConfig, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the cohort; returns the path of ``cohort.json``."""
    if not config.sources:
        raise InputError("a cohort needs at least one healthy, skull-stripped source volume (--source)")
    out = Path(out_dir)
    if (out / COHORT_MANIFEST).exists():
        if not overwrite:
            raise InputError(f"{out}: holds a cohort already; pass --overwrite to replace it")
        remove_cohort_files(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    sources = [load_source(Path(p), config.voxel_mm) for p in config.sources]
    plan = plan_subjects(config, rng)
    rows = []
    for row in tqdm(plan, desc="subjects", unit="vol", disable=not progress, leave=False):
        src = sources[row["source"]]
        sub_rng = np.random.default_rng([config.seed, int(row["name"][4:])])
        image, mask, params = make_subject(src, config, row["kind"], sub_rng)
        ref = float(np.percentile(image[image > 0], 99.9))
        scaled = np.clip(np.round(image / ref * INT16_RANGE), 0, np.iinfo(np.int16).max).astype(np.int16)
        write_nifti(out / "volumes" / f"{row['name']}.nii.gz", scaled, src.affine)
        write_nifti(out / "masks" / f"{row['name']}.nii.gz", mask.astype(np.uint8), src.affine)
        rows.append({"name": row["name"], "kind": row["kind"], "source": str(src.path), **params})
    manifest = out / COHORT_MANIFEST
    write_json(manifest, {"config": config_to_dict(config), "subjects": rows})
    return manifest
