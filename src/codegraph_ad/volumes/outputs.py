"""A volume run's output folder: NIfTI maps in each input's grid, mosaics, scores, manifest.

Layout (``run.json`` is written last: its presence marks a finished run)::

    maps/<name>.nii.gz     float32 anomaly map, same shape and affine as the input file
    mosaics/<name>.png     axial / coronal / sagittal slices of the model cube + map
    scores.csv, scores.json
    token_scores.npy       (N, g, g, g) token-grid scores, (x, y, z) = RAS+ order
    solid.npy              (N, g, g, g) cubes with enough brain (the graph stages' mask)
    excluded.npy           (N, g, g, g) cubes CoDeGraph removed from the references
    run.json

Written through ``io.run_folder.RunWriter``, so ``--overwrite`` replaces every output of an
earlier run (a smaller run leaves no stale map or mosaic behind).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from codegraph_ad.graph.groups import repeated_defect_groups
from codegraph_ad.io.run_folder import MAPS, Manifest, RunWriter, ScoreRow
from codegraph_ad.report.overlay import shared_scale
from codegraph_ad.volumes.mosaic import volume_mosaic
from codegraph_ad.volumes.nifti import write_like
from codegraph_ad.volumes.pipeline import PreparedVolume


def upsample_grid(token_map: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(g, g, g)`` -> ``shape`` float32, trilinear with align_corners=False (as the metrics)."""
    t = torch.from_numpy(np.ascontiguousarray(token_map, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)[0, 0].numpy()


def map_in_canonical(token_map: np.ndarray, volume: PreparedVolume) -> np.ndarray:
    """The token map on the canonical voxel grid of the input: the cube's box gets the
    upsampled map, the rest of the field of view (cropped background) 0."""
    lo, hi = volume.cube.box
    out = np.zeros(volume.geometry.canonical_shape, dtype=np.float32)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = upsample_grid(token_map, [b - a for a, b in zip(lo, hi)])
    return out


def batch_scale(maps: np.ndarray, solid: np.ndarray) -> tuple[float, float]:
    """One colour scale for the batch: median to maximum of the non-void cubes' scores."""
    return shared_scale(maps[solid] if solid.any() else maps.reshape(-1))


def write_volume_outputs(
    writer: RunWriter,
    volumes: Sequence[PreparedVolume],
    maps: np.ndarray,
    solid: np.ndarray,
    gt_cubes: Sequence[np.ndarray | None] | None = None,
    mosaics: bool = True,
    progress: bool = True,
) -> None:
    """Per volume: ``maps/<name>.nii.gz`` in the input grid and ``mosaics/<name>.png``.

    maps, solid: ``(N, g, g, g)``. The mosaic colour scale is shared by the batch (median
    to maximum of the solid cubes' scores) so normal volumes stay dark.
    """
    scale = batch_scale(maps, solid)
    for i in tqdm(range(len(volumes)), desc="writing maps", unit="vol", disable=not progress, leave=False):
        v = volumes[i]
        write_like(writer.path(MAPS, f"{v.name}.nii.gz"), map_in_canonical(maps[i], v), v.geometry)
        if mosaics:
            cube_map = upsample_grid(maps[i], v.cube.image.shape)
            gt = None if gt_cubes is None else gt_cubes[i]
            writer.mosaic(v.name, volume_mosaic(v.cube.image, cube_map, scale, mask=gt))


def write_volume_tables(
    writer: RunWriter,
    rows: Sequence[ScoreRow],
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    manifest: Manifest,
) -> None:
    """scores.csv/json (with the repeated-defect groups of ``meta["diagnostics"]``), the
    ``.npy`` arrays (file name -> array), then ``run.json`` last."""
    groups = repeated_defect_groups(meta.get("diagnostics"), [r.name for r in rows])
    writer.scores(rows, meta, groups)
    for file_name, array in arrays.items():
        writer.array(file_name, array)
    writer.finish(manifest)
