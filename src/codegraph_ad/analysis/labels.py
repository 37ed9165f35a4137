"""Which patches of a finished run are normal, and which are anomalous, for the analyses.

Labels come from the rows of ``scores.json`` (an ``evaluate`` run writes ``label`` and
``defect``); mask files, their union and their patch-grid shares by the rules of
io/masks.py (a row's ``mask_paths`` when present, else the MVTec AD layout beside the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codegraph_ad.io.masks import grid_shares, mask_files, union_mask


@dataclass(frozen=True)
class PatchTruth:
    """Per-patch ground truth of a batch.

    labels: ``(N,)`` int image labels (0 normal, 1 anomalous) or None when unknown.
    anomalous: ``(N, M)`` bool anomalous patches, or None when no masks were found.
    """

    labels: np.ndarray | None
    anomalous: np.ndarray | None


def image_labels(rows: list[dict[str, Any]], paths: list[Path]) -> np.ndarray | None:
    """``(N,)`` labels from the rows' ``label``, else from an MVTec AD layout (``good`` = 0)."""
    if rows and all("label" in r for r in rows):
        return np.array([int(r["label"]) for r in rows], dtype=np.int64)
    if paths and all(p.parent.parent.name == "test" for p in paths):
        return np.array([int(p.parent.name != "good") for p in paths], dtype=np.int64)
    return None


def patch_truth(
    rows: list[dict[str, Any]],
    paths: list[Path],
    sizes: list[tuple[int, int]],
    grid: tuple[int, int],
    mask_fraction: float,
) -> PatchTruth:
    """Image labels and anomalous patches of a run, as far as the run folder tells them."""
    if len(rows) != len(paths):
        raise ValueError(f"scores.json has {len(rows)} rows for {len(paths)} images in run.json")
    labels = image_labels(rows, paths)
    m = grid[0] * grid[1]
    anomalous = np.zeros((len(paths), m), dtype=bool)
    found_any = False
    for i, (row, path, size) in enumerate(zip(rows, paths, sizes)):
        files = mask_files(row, path)
        if not files:
            continue
        found_any = True
        anomalous[i] = grid_shares(union_mask(files, tuple(size)), grid) >= mask_fraction
    return PatchTruth(labels, anomalous if found_any else None)
