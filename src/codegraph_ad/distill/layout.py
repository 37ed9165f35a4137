"""Where things are: a finished run folder, and masks in the MVTec ground_truth layout.

An image ``.../<defect>/<stem>.png`` has its mask at ``ground_truth/<defect>/<stem>_mask.png``
(MVTec AD's convention), so pseudo-masks written here can be read by any MVTec tool and
real MVTec masks can be used in their place for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codegraph_ad.errors import InputError
from codegraph_ad.io.run_outputs import read_manifest

GROUND_TRUTH = "ground_truth"


@dataclass(frozen=True)
class RunFolder:
    """The manifest of a finished run (``run.json``) and access to its maps."""

    root: Path
    names: list[str]
    paths: list[Path]
    original_sizes: list[tuple[int, int]]
    grid: tuple[int, int]
    config: dict[str, Any]

    def __len__(self) -> int:
        return len(self.names)

    def map_path(self, i: int) -> Path:
        return self.root / "maps" / f"{self.names[i]}.npy"

    def load_map(self, i: int) -> np.ndarray:
        """``(H, W)`` float32 anomaly map of image ``i`` at its input resolution."""
        path = self.map_path(i)
        if not path.is_file():
            raise InputError(f"{path}: anomaly map listed in {self.root / 'run.json'} is missing")
        amap = np.load(path, allow_pickle=False)
        if amap.ndim != 2:
            raise InputError(f"{path}: expected a 2-D anomaly map, got shape {amap.shape}")
        return amap.astype(np.float32, copy=False)


def read_run(run_dir: str | Path) -> RunFolder:
    """Read a run folder written by ``detect``/``evaluate``/``predict`` (needs ``run.json``)."""
    root = Path(run_dir)
    m = read_manifest(root)
    try:
        names = list(m["names"])
        paths = [Path(p) for p in m["paths"]]
        sizes = [(int(h), int(w)) for h, w in m["original_sizes"]]
        grid = (int(m["grid"][0]), int(m["grid"][1]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{root / 'run.json'}: malformed manifest ({exc})") from exc
    if not (len(names) == len(paths) == len(sizes)):
        raise InputError(f"{root / 'run.json'}: names, paths and original_sizes differ in length")
    return RunFolder(root, names, paths, sizes, grid, dict(m.get("config", {})))


def mask_relpaths(image_paths: Sequence[Path], names: Sequence[str] | None = None) -> list[Path]:
    """``ground_truth/<parent folder>/<stem>_mask.png`` per image; a clash falls back to the run name.

    Two images that share their folder name and stem (``a/good/001.png``, ``b/good/001.png``)
    would overwrite each other's mask, so those use ``ground_truth/<name>_mask.png`` instead.
    """
    rel = [Path(GROUND_TRUTH) / Path(p).parent.name / f"{Path(p).stem}_mask.png" for p in image_paths]
    counts: dict[Path, int] = {}
    for r in rel:
        counts[r] = counts.get(r, 0) + 1
    out = []
    for i, r in enumerate(rel):
        if counts[r] > 1:
            if names is None:
                raise InputError(f"two images map to the same mask file {r}; pass their unique run names")
            r = Path(GROUND_TRUTH) / f"{names[i]}_mask.png"
        out.append(r)
    return out


def find_mask(mask_root: str | Path, image_path: Path, name: str | None = None) -> Path | None:
    """The mask of ``image_path`` under ``mask_root`` (an MVTec category or a pseudomask folder).

    Looks for ``<root>/ground_truth/<defect>/<stem>_mask.png``, then ``<root>/<defect>/<stem>_mask.png``
    (a bare ground_truth folder), then the run-name fallback. None: no mask, i.e. a normal image.
    """
    root = Path(mask_root)
    image_path = Path(image_path)
    candidates = [
        root / GROUND_TRUTH / image_path.parent.name / f"{image_path.stem}_mask.png",
        root / image_path.parent.name / f"{image_path.stem}_mask.png",
    ]
    if name is not None:
        candidates.append(root / GROUND_TRUTH / f"{name}_mask.png")
    for c in candidates:
        if c.is_file():
            return c
    return None
