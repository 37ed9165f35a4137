"""Read a finished run folder into one object the report can render.

Only ``run.json`` and ``scores.json`` are required; maps, overlays, ``patch_scores.npy``,
``excluded.npy`` and ``metrics.json`` are used when present, so a report can be built for
a run written with ``--no-overlays`` or by an older version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from codegraph_ad.errors import InputError
from codegraph_ad.io.run_outputs import SCORES_JSON, read_manifest


@dataclass
class RunFolder:
    """What a run wrote.

    rows: one dict per image in manifest order (name, path, score, raw_score, and for
        evaluate runs label, defect).
    grid: the patch grid, ``(h, w)`` for images (a volume run's token grid has 3 sides).
    patch_scores: ``(N, M)`` float32 or None; excluded: ``(N, M)`` bool or None.
    metrics: the ``metrics`` dict of ``metrics.json`` or None.
    """

    root: Path
    manifest: dict[str, Any]
    scores: dict[str, Any]
    rows: list[dict[str, Any]]
    grid: tuple[int, ...]
    patch_scores: np.ndarray | None
    excluded: np.ndarray | None
    metrics: dict[str, Any] | None

    @cached_property
    def names(self) -> list[str]:
        return [str(r["name"]) for r in self.rows]

    @cached_property
    def repeated_defect_groups(self) -> list[dict[str, Any]]:
        """scores.json's ``repeated_defect_groups``; derived from the diagnostics for runs
        written before the field existed (same helper, same answer); [] without graph stages."""
        from codegraph_ad.graph.groups import repeated_defect_groups

        stored = self.scores.get("repeated_defect_groups")
        if isinstance(stored, list):
            return stored
        return repeated_defect_groups(self.scores.get("diagnostics"), self.names) or []

    @property
    def n_images(self) -> int:
        return len(self.rows)

    def map_file(self, name: str) -> Path:
        return self.root / "maps" / f"{name}.npy"

    def overlay_file(self, name: str) -> Path:
        return self.root / "overlays" / f"{name}.png"

    def input_file(self, i: int) -> Path | None:
        """The input image, as recorded or relative to the run folder's parent; None if gone."""
        recorded = Path(str(self.rows[i].get("path", self.manifest["paths"][i])))
        for candidate in (recorded, self.root / recorded, self.root.parent / recorded):
            if candidate.is_file():
                return candidate
        return None


def _load_optional(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    if not path.exists():
        return None
    arr = np.load(path, allow_pickle=False)
    if arr.shape != shape:
        raise InputError(f"{path}: shape {arr.shape}, expected {shape} from run.json")
    return arr


def read_run_folder(run_dir: str | Path) -> RunFolder:
    """Load the manifest, scores and optional arrays of ``run_dir``; errors name the file."""
    root = Path(run_dir)
    manifest = read_manifest(root)
    scores_path = root / SCORES_JSON
    if not scores_path.exists():
        raise InputError(f"{scores_path}: missing; the report needs the run's scores")
    scores = json.loads(scores_path.read_text())
    rows = scores.get("images")
    if not isinstance(rows, list) or len(rows) != len(manifest["names"]):
        raise InputError(f"{scores_path}: 'images' must list one row per image of run.json "
                         f"({len(manifest['names'])})")
    grid = tuple(int(g) for g in manifest["grid"])
    shape = (len(rows), int(np.prod(grid)))
    metrics_path = root / "metrics.json"
    metrics = json.loads(metrics_path.read_text()).get("metrics") if metrics_path.exists() else None
    excluded = _load_optional(root / "excluded.npy", shape)
    return RunFolder(
        root=root,
        manifest=manifest,
        scores=scores,
        rows=rows,
        grid=grid,
        patch_scores=_load_optional(root / "patch_scores.npy", shape),
        excluded=excluded.astype(bool) if excluded is not None else None,
        metrics=metrics,
    )
