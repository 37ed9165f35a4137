"""Python API for volumes: ``detect_volumes`` (any folder of NIfTI files) and ``evaluate_volumes``.

    from codegraph_ad.volumes import VolumeConfig, detect_volumes
    result = detect_volumes("brains/", "out/", VolumeConfig(size=112))
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codegraph_ad.api import versions
from codegraph_ad.config import config_to_dict
from codegraph_ad.decision import decide
from codegraph_ad.errors import InputError
from codegraph_ad.io.run_folder import (
    EXCLUDED,
    METRICS,
    SOLID,
    TOKEN_SCORES,
    BackboneIdentity,
    Manifest,
    RunWriter,
    ScoreRow,
    output_folder,
)
from codegraph_ad.methods.base import ScoreResult
from codegraph_ad.volumes.cohort import COHORT_MANIFEST
from codegraph_ad.volumes.config import VolumeConfig
from codegraph_ad.volumes.evaluation import evaluate_maps, gt_cube
from codegraph_ad.volumes.nifti import discover_volumes, nifti_stem
from codegraph_ad.volumes.outputs import write_volume_outputs, write_volume_tables
from codegraph_ad.volumes.pipeline import PreparedVolume, TokenBatch, cube_flags, token_maps, tokens_from_paths
from codegraph_ad.volumes.scoring import patient_cubes, score_volume_features


@dataclass
class VolumeRunResult:
    """Scores of one batch of volumes and where its files are.

    maps: ``(N, g, g, g)`` token-grid scores (``(N, 2g, 2g, 2g)`` half-cube maps for a
    staggered lattice); solid: the same shape, cubes with enough brain; excluded: the same
    shape, cubes CoDeGraph removed from the references (None for MuSc).
    """

    names: list[str]
    paths: list[Path]
    scores: ScoreResult
    maps: np.ndarray
    solid: np.ndarray
    volumes: list[PreparedVolume]
    config: VolumeConfig
    timings: dict[str, float]
    excluded: np.ndarray | None = None
    out_dir: Path | None = None
    backbone: BackboneIdentity | None = None

    def table(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.score_rows()]

    def score_rows(self) -> list[ScoreRow]:
        return [ScoreRow(n, str(p), float(s), float(r), {"solid_cubes": int(c.sum())})
                for n, p, s, r, c in zip(self.names, self.paths, self.scores.image_scores,
                                         self.scores.raw_image_scores, self.solid)]


@dataclass
class VolumeEvaluation:
    run: VolumeRunResult
    metrics: dict[str, Any] = field(default_factory=dict)


def _paths(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(inputs, (str, Path)):
        paths = discover_volumes(Path(inputs))
        if not paths:
            raise InputError(f"{inputs}: no NIfTI files found (.nii, .nii.gz)")
        return paths
    return [Path(p) for p in inputs]


def _match_masks(paths: Sequence[Path], masks: str | Path | Sequence[str | Path | None] | None,
                 what: str) -> list[Path | None] | None:
    """A folder of masks named like the volumes, or an explicit list (None entries allowed)."""
    if masks is None:
        return None
    if isinstance(masks, (str, Path)):
        folder = Path(masks)
        by_stem = {nifti_stem(p): p for p in discover_volumes(folder)}
        missing = [str(p) for p in paths if nifti_stem(p) not in by_stem]
        if missing:
            raise InputError(f"{folder}: no {what} named like {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        return [by_stem[nifti_stem(p)] for p in paths]
    out = [None if m is None else Path(m) for m in masks]
    if len(out) != len(paths):
        raise InputError(f"{len(out)} {what} given for {len(paths)} volumes")
    return out


def score_batch(batch: TokenBatch, config: VolumeConfig, progress: bool = False) -> tuple[ScoreResult, float]:
    """Score a token batch with ``config.run``; returns the result and the seconds it took."""
    t0 = time.perf_counter()
    counted = (None if config.patient_min_share is None
               else patient_cubes(batch.brain_share, batch.solid, config.patient_min_share))
    scores = score_volume_features(batch.features, batch.solid, config.run, config.void_scores == "zero", progress,
                                   scored_cubes=counted,
                                   position_baseline=config.patient_baseline == "position-median")
    return scores, time.perf_counter() - t0


def result_from_batch(batch: TokenBatch, scores: ScoreResult, config: VolumeConfig, paths: Sequence[Path],
                      timings: dict[str, float]) -> VolumeRunResult:
    excluded = None if scores.excluded is None else cube_flags(scores.excluded.numpy(), batch)
    return VolumeRunResult(batch.names, list(paths), scores, token_maps(scores.patch_scores, batch),
                           cube_flags(batch.solid, batch), batch.volumes, config, timings, excluded)


def detect_volumes(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path | None,
    config: VolumeConfig = VolumeConfig(),
    brain_masks: str | Path | Sequence[str | Path | None] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    mosaics: bool = True,
    backbone=None,
) -> VolumeRunResult:
    """Score every NIfTI volume of a folder (recursive) or list as one batch.

    brain_masks: a folder of masks named like the volumes, or a list; default: voxels > 0.
    Inputs must be skull-stripped and co-registered (see docs/volumes.md).
    """
    from codegraph_ad.backbones.identity import backbone_identity

    paths = _paths(inputs)
    with output_folder(out_dir, overwrite) as out:
        masks = _match_masks(paths, brain_masks, "brain masks")
        batch = tokens_from_paths(paths, config, masks, backbone, progress)
        scores, scoring_s = score_batch(batch, config, progress)
        timings = {**batch.timings, "scoring_s": scoring_s}
        result = result_from_batch(batch, scores, config, paths, timings)
        f = config.run.features
        result.backbone = backbone_identity(f.backbone, f.checkpoint, backbone)
        if out is not None:
            with RunWriter.replace(out) as writer:
                write_volume_run(result, writer, mosaics=mosaics, progress=progress)
    return result


def write_volume_run(result: VolumeRunResult, out: RunWriter, gts: Sequence[np.ndarray] | None = None,
                     extra_rows: list[dict[str, Any]] | None = None, mosaics: bool = True,
                     progress: bool = True) -> None:
    """Every output of a run through the run-folder writer, the manifest last."""
    t0 = time.perf_counter()
    result.out_dir = out.root
    write_volume_outputs(out, result.volumes, result.maps, result.solid, gts, mosaics, progress)
    rows = result.score_rows()
    decision = decide([r.score for r in rows], result.config.run.decision)
    for r, flag in zip(rows, decision.anomalous):
        r.anomalous = bool(flag)
    if extra_rows is not None:
        for r, e in zip(rows, extra_rows):
            r.extra.update(e)
    g = result.maps.shape[1:]
    arrays = {TOKEN_SCORES: result.maps.astype(np.float32), SOLID: result.solid}
    if result.excluded is not None:
        arrays[EXCLUDED] = result.excluded
    result.timings["write_s"] = time.perf_counter() - t0
    meta = {"config": config_to_dict(result.config), "versions": versions(), "timings": result.timings,
            "decision": decision.to_dict(), "diagnostics": result.scores.diagnostics}
    manifest = Manifest(result.names, [str(p) for p in result.paths], tuple(int(x) for x in g),
                        config_to_dict(result.config), versions(), result.timings,
                        boxes=[[list(v.cube.box[0]), list(v.cube.box[1])] for v in result.volumes],
                        backbone=result.backbone)
    write_volume_tables(out, rows, meta, arrays, manifest)


def read_cohort(cohort_dir: str | Path) -> tuple[list[Path], list[Path], dict[str, str]]:
    """``volumes/*.nii.gz`` with ``masks/<same name>`` and, when present, ``cohort.json`` groups."""
    root = Path(cohort_dir)
    vol_dir, mask_dir = root / "volumes", root / "masks"
    if not vol_dir.is_dir() or not mask_dir.is_dir():
        raise InputError(f"{root}: a cohort folder holds volumes/ and masks/ (lesion masks, empty for healthy)")
    volumes = discover_volumes(vol_dir)
    if not volumes:
        raise InputError(f"{vol_dir}: no NIfTI files found")
    masks = _match_masks(volumes, mask_dir, "lesion masks")
    assert masks is not None
    groups: dict[str, str] = {}
    manifest = root / COHORT_MANIFEST
    if manifest.is_file():
        for row in json.loads(manifest.read_text())["subjects"]:
            groups[row["name"]] = row["kind"]
    return volumes, [m for m in masks if m is not None], groups


def evaluate_run(result: VolumeRunResult, lesion_masks: Sequence[Path],
                 groups: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """SPEC section 9 metrics of a finished run against lesion masks in the inputs' grids."""
    if len(lesion_masks) != len(result.volumes):
        raise InputError(f"{len(lesion_masks)} lesion masks for {len(result.volumes)} volumes")
    t0 = time.perf_counter()
    gts = [gt_cube(m, v) for m, v in zip(lesion_masks, result.volumes)]
    metrics = evaluate_maps(result.maps, result.scores.image_scores, gts, result.names, groups)
    metrics["timings"] = {**result.timings, "metrics_s": time.perf_counter() - t0}
    return metrics, gts


def evaluate_volumes(
    cohort_dir: str | Path | None,
    out_dir: str | Path | None,
    config: VolumeConfig = VolumeConfig(),
    volumes: Sequence[str | Path] | None = None,
    lesion_masks: Sequence[str | Path] | None = None,
    groups: Mapping[str, str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    mosaics: bool = True,
    backbone=None,
) -> VolumeEvaluation:
    """Run on a cohort folder (see ``read_cohort``) or on explicit volume / mask lists, then score it."""
    if cohort_dir is not None:
        paths, masks, found_groups = read_cohort(cohort_dir)
        groups = groups if groups is not None else found_groups
    elif volumes is not None and lesion_masks is not None:
        paths, masks = [Path(p) for p in volumes], [Path(m) for m in lesion_masks]
    else:
        raise ValueError("give a cohort folder, or both volumes and lesion_masks")
    with output_folder(out_dir, overwrite) as out:
        run = detect_volumes(paths, None, config, progress=progress, backbone=backbone)
        metrics, gts = evaluate_run(run, masks, groups)
        if out is not None:
            extra = [{"label": r["label"], "dice": r["dice"], **({"group": r["group"]} if "group" in r else {})}
                     for r in metrics["per_volume"]]
            with RunWriter.replace(out) as writer:
                # metrics.json before the run's files: the manifest is the last file written.
                writer.json(METRICS, {"metrics": metrics, "config": config_to_dict(config), "versions": versions()})
                write_volume_run(run, writer, gts, extra, mosaics, progress)
    return VolumeEvaluation(run, metrics)
