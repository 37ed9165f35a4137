"""Where masks are: the MVTec ground_truth layout (run folders: ``io.run_folder``).

An image ``.../<defect>/<stem>.png`` has its mask at ``ground_truth/<defect>/<stem>_mask.png``
(MVTec AD's convention), so pseudo-masks written here can be read by any MVTec tool and
real MVTec masks can be used in their place for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from codegraph_ad.errors import InputError
from codegraph_ad.io.masks import GROUND_TRUTH, MASK_SUFFIX



def mask_relpaths(image_paths: Sequence[Path], names: Sequence[str] | None = None) -> list[Path]:
    """``ground_truth/<parent folder>/<stem>_mask.png`` per image; a clash falls back to the run name.

    Two images that share their folder name and stem (``a/good/001.png``, ``b/good/001.png``)
    would overwrite each other's mask, so those use ``ground_truth/<name>_mask.png`` instead.
    """
    rel = [Path(GROUND_TRUTH) / Path(p).parent.name / f"{Path(p).stem}{MASK_SUFFIX}" for p in image_paths]
    counts: dict[Path, int] = {}
    for r in rel:
        counts[r] = counts.get(r, 0) + 1
    out = []
    for i, r in enumerate(rel):
        if counts[r] > 1:
            if names is None:
                raise InputError(f"two images map to the same mask file {r}; pass their unique run names")
            r = Path(GROUND_TRUTH) / f"{names[i]}{MASK_SUFFIX}"
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
        root / GROUND_TRUTH / image_path.parent.name / f"{image_path.stem}{MASK_SUFFIX}",
        root / image_path.parent.name / f"{image_path.stem}{MASK_SUFFIX}",
    ]
    if name is not None:
        candidates.append(root / GROUND_TRUTH / f"{name}{MASK_SUFFIX}")
    for c in candidates:
        if c.is_file():
            return c
    return None
