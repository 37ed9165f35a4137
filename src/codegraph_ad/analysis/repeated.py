"""Which images of a run carry one repeated defect: the group whose burnout the thesis predicts.

SPEC's "consistent" patches are the anomalous patches MuSc scores low. On a batch where one
defect is repeated in transformed copies (SynCA), MuSc may still score most of them above
that cut (the copies are not exact duplicates), so the consistent group can be nearly empty
although the copies' patches show the burnout clearly. When the repeated images are known,
their anomalous patches are analysed as a group of their own: named by glob patterns, or
read from a SynCA build's manifest (its source image and copies).
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Sequence

import numpy as np

from codegraph_ad.errors import InputError

SYNCA_MANIFEST = "manifest.json"


def image_key(path: Path) -> str:
    """``<defect>/<stem>``: how a SynCA manifest and a user name an MVTec-layout image."""
    return f"{path.parent.name}/{path.stem}"


def match_patterns(paths: Sequence[Path], patterns: Sequence[str]) -> np.ndarray:
    """``(N,)`` bool: images whose ``<defect>/<stem>``, file name or full path matches a glob."""
    keys = [(image_key(p), p.name, p.as_posix()) for p in paths]
    return np.array([any(fnmatchcase(k, pat) for k in ks for pat in patterns) for ks in keys], dtype=bool)


def _synca_root(paths: Sequence[Path]) -> Path | None:
    """The category root shared by every image of an MVTec-layout batch (root/test/<defect>/x)."""
    roots = {p.parent.parent.parent for p in paths if p.parent.parent.name == "test"}
    if len(roots) != 1 or len([p for p in paths if p.parent.parent.name == "test"]) != len(paths):
        return None
    return roots.pop()


def synca_members(paths: Sequence[Path]) -> np.ndarray | None:
    """Source and copies of a SynCA build, when the batch is one (its manifest says so)."""
    root = _synca_root(paths)
    manifest = root / SYNCA_MANIFEST if root is not None else None
    if manifest is None or not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("kind") != "synca":
        return None
    names = {str(data["source"]["name"])} if isinstance(data.get("source"), dict) else set()
    names |= {image_key(Path(c["image"])) for c in data.get("copies", []) if "image" in c}
    members = np.array([image_key(p) in names for p in paths], dtype=bool)
    return members if members.any() else None


def repeated_images(paths: Sequence[Path], patterns: Sequence[str]) -> tuple[np.ndarray | None, str | None]:
    """The repeated-defect images and where that came from (None when unknown).

    patterns win over a SynCA manifest; patterns that match nothing are an error (a typo
    should not look like "no burnout").
    """
    if patterns:
        found = match_patterns(paths, patterns)
        if not found.any():
            raise InputError(f"--repeated {' '.join(patterns)}: no image of the run matches "
                             "(patterns are matched against <defect>/<stem>, the file name and the full path)")
        return found, "patterns: " + ", ".join(patterns)
    found = synca_members(paths)
    return (found, "SynCA manifest (source and copies)") if found is not None else (None, None)
