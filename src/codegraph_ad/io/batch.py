"""Load a batch of image files once, keeping only what the run needs in memory."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from codegraph_ad.errors import InputError
from codegraph_ad.io.images import decode_image, read_file_bytes
from codegraph_ad.progress import Progress


@dataclass
class ImageBatch:
    """Decoded batch.

    resized: ``(N, S, S, 3)`` uint8, each image squashed to the model size (keeps memory
        at N * S^2 * 3 bytes whatever the camera resolution).
    original_sizes: ``(height, width)`` per image, for maps at input resolution.
    skipped: ``(path, reason)`` of files left out when ``on_error='skip'``.
    hashes: SHA-256 (hex) of each file's bytes, the key of the feature cache.
    """

    paths: list[Path]
    names: list[str]
    original_sizes: list[tuple[int, int]]
    resized: np.ndarray
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def unique_names(paths: Sequence[Path], root: Path | None) -> list[str]:
    """File-system-safe names, unique in the batch, from paths relative to ``root``."""
    names = []
    for p in paths:
        try:
            rel = p.relative_to(root) if root is not None else Path(p.name)
        except ValueError:
            rel = Path(p.name)
        names.append(str(rel.with_suffix("")).replace("/", "__").replace("\\", "__"))
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            n = f"{n}__{seen[n]}"
        else:
            seen[n] = 0
        out.append(n)
    return out


def load_batch(
    paths: Sequence[Path],
    size: int,
    root: Path | None = None,
    on_error: Literal["stop", "skip"] = "stop",
    progress: bool | Progress = True,
) -> ImageBatch:
    """Decode and resize every file; bad files stop the run or are skipped with a warning.

    Every file is tried before either happens, so one message names all the bad files of a
    folder (with each one's reason), not only the first, and before any feature is computed.
    Each file is read once: the same bytes are hashed (feature-cache key) and decoded, so
    a file replaced during the run cannot pair one content's features with another's name.
    progress: the run's Progress (the "reading" stage) or a bool.
    """
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    kept: list[Path] = []
    sizes: list[tuple[int, int]] = []
    arrays: list[np.ndarray] = []
    hashes: list[str] = []
    skipped: list[tuple[Path, str]] = []
    with Progress.of(progress).stage("reading", len(paths), "img") as bar:
        for p in paths:
            try:
                data = read_file_bytes(p)
                rgb = decode_image(data, p)
            except InputError as exc:
                skipped.append((Path(p), str(exc)))
            else:
                # once a file failed a stopping run only looks for more bad files
                if not (skipped and on_error == "stop"):
                    kept.append(Path(p))
                    hashes.append(hashlib.sha256(data).hexdigest())
                    sizes.append((rgb.shape[0], rgb.shape[1]))
                    arrays.append(np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC)))
            bar.advance()
    if skipped and on_error == "stop":
        if len(skipped) == 1:
            raise InputError(f"{_reasons(skipped)[0]} (use --skip-bad to leave such files out)")
        raise InputError(f"{len(skipped)} files cannot be read (use --skip-bad to leave them out):\n  "
                         + "\n  ".join(_reasons(skipped)))
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable file(s):\n  " + "\n  ".join(_reasons(skipped)),
                      stacklevel=2)
    _warn_duplicates(kept, hashes)
    resized = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return ImageBatch(kept, unique_names(kept, root), sizes, resized, skipped, hashes)


def _reasons(bad: Sequence[tuple[Path, str]]) -> list[str]:
    """One line per bad file, naming it once (decoding errors already start with the path)."""
    return [why if str(p) in why else f"{p}: {why}" for p, why in bad]


def _warn_duplicates(paths: Sequence[Path], hashes: Sequence[str]) -> None:
    """Byte-identical files are scored, but each one's copies vouch for it as 'normal'.

    A defect present in two copies of one file looks like a consistent anomaly to MuSc,
    so the user should know the batch holds copies.
    """
    groups: dict[str, list[Path]] = {}
    for p, h in zip(paths, hashes):
        groups.setdefault(h, []).append(p)
    dups = [g for g in groups.values() if len(g) > 1]
    if dups:
        listing = "\n  ".join(" = ".join(str(p) for p in g) for g in dups)
        warnings.warn(f"{len(dups)} group(s) of byte-identical files in the batch (each copy lowers the "
                      f"others' scores):\n  {listing}", stacklevel=3)
