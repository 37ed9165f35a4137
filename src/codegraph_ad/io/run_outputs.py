"""A run's output folder: scores (CSV + JSON), maps (.npy), overlays (.png), manifest."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_json, write_npy, write_png, write_text
from codegraph_ad.io.images import load_image_rgb, load_mask

MANIFEST = "run.json"
SCORES_CSV = "scores.csv"
SCORES_JSON = "scores.json"
# Every file a run writes besides the manifest, and the folders of per-image files.
# report.html is a view built from the others after the manifest; it goes with them.
OUTPUT_FILES = (SCORES_CSV, SCORES_JSON, "patch_scores.npy", "excluded.npy", "metrics.json", "report.html",
                "graph.png")
OUTPUT_DIRS = (("maps", ".npy"), ("overlays", ".png"), ("report_assets", ".js"), ("excluded", ".png"))


def has_outputs(out_dir: Path) -> bool:
    """True when ``out_dir`` holds any file a run writes (finished or not)."""
    out_dir = Path(out_dir)
    if any((out_dir / f).exists() for f in (MANIFEST, *OUTPUT_FILES)):
        return True
    return any(any((out_dir / d).glob(f"*{ext}")) for d, ext in OUTPUT_DIRS if (out_dir / d).is_dir())


def prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Create ``out_dir``; refuse one that holds another run's outputs unless ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output path exists and is not a folder")
    if has_outputs(out_dir) and not overwrite:
        raise InputError(f"{out_dir}: holds the results of another run; pass --overwrite to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def remove_outputs(out_dir: Path) -> None:
    """Delete the files a run writes, the manifest first, then empty output subfolders.

    Called before a run replaces earlier results and when a run stops while writing, so
    a folder is never left holding a manifest beside files of another run. Files the
    tool does not write are left alone.
    """
    out_dir = Path(out_dir)
    for name in (MANIFEST, *OUTPUT_FILES):
        (out_dir / name).unlink(missing_ok=True)
    for d, ext in OUTPUT_DIRS:
        sub = out_dir / d
        if not sub.is_dir():
            continue
        for f in sub.glob(f"*{ext}"):
            f.unlink(missing_ok=True)
        try:
            sub.rmdir()
        except OSError:  # holds other files
            pass


@contextmanager
def output_folder(out_dir: str | Path | None, overwrite: bool) -> Iterator[Path | None]:
    """``prepare_out_dir`` for the length of a run; a folder this run created is removed
    again if the run fails or is interrupted before writing anything into it."""
    if out_dir is None:
        yield None
        return
    path = Path(out_dir)
    fresh = not path.exists()
    out = prepare_out_dir(path, overwrite)
    try:
        yield out
    except BaseException:
        if fresh:
            try:
                out.rmdir()
            except OSError:  # not empty: something else was put there meanwhile
                pass
        raise


@contextmanager
def replacing_outputs(out_dir: Path) -> Iterator[None]:
    """Clear earlier outputs, let the block write new ones; if it fails, remove what it wrote.

    With the manifest written last by the block, the folder holds either a complete run
    or no manifest at all, whatever the moment of the interruption.
    """
    remove_outputs(out_dir)
    try:
        yield
    except BaseException:
        remove_outputs(out_dir)
        raise


def _csv_value(v: Any) -> Any:
    """Floats with 8 significant digits (stable across runs), lists joined with ';'."""
    if isinstance(v, float):
        return f"{v:.8g}"
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return v


def upsample_map(patch_scores: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``(M,)`` patch scores -> ``(H, W)`` float32 map, bilinear with aligned corners (as MuSc)."""
    g = patch_scores.float().view(1, 1, *grid)
    return F.interpolate(g, size=size, mode="bilinear", align_corners=True)[0, 0].numpy()


def write_scores(out_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """scores.csv (one row per image, sorted by input order) and scores.json (rows + meta).

    When ``meta["diagnostics"]`` holds graph stages, scores.json also gets
    ``repeated_defect_groups`` (``graph.groups``): the flagged communities by image name,
    so a reader need not decode subset-local indices.
    """
    from codegraph_ad.graph.groups import repeated_defect_groups  # graph numerics only when writing

    buf = io.StringIO()
    fields = list(rows[0].keys()) if rows else ["name"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    write_text(out_dir / SCORES_CSV, buf.getvalue())
    groups = repeated_defect_groups(meta.get("diagnostics"), [str(r["name"]) for r in rows])
    extra = {} if groups is None else {"repeated_defect_groups": groups}
    write_json(out_dir / SCORES_JSON, {**meta, **extra, "images": rows})


def write_maps_and_overlays(
    out_dir: Path,
    names: list[str],
    paths: list[Path],
    original_sizes: list[tuple[int, int]],
    patch_scores: torch.Tensor,
    grid: tuple[int, int],
    scale: tuple[float, float],
    mask_paths: list[tuple[Path, ...]] | None = None,
    overlays: bool = True,
    progress: bool = True,
    max_overlay_side: int = 1024,
) -> None:
    """Per image: ``maps/<name>.npy`` at input resolution and ``overlays/<name>.png``."""
    from codegraph_ad.report.overlay import overlay  # matplotlib only when drawing

    for i in tqdm(range(len(names)), desc="writing maps", unit="img", disable=not progress, leave=False):
        amap = upsample_map(patch_scores[i], grid, original_sizes[i])
        write_npy(out_dir / "maps" / f"{names[i]}.npy", amap.astype(np.float32))
        if not overlays:
            continue
        rgb = load_image_rgb(paths[i])
        mask = None
        if mask_paths is not None and mask_paths[i]:
            mask = np.zeros(rgb.shape[:2], dtype=bool)
            for mp in mask_paths[i]:
                mask |= load_mask(mp, rgb.shape[:2])
        img = overlay(rgb, amap, scale, mask=mask)
        if max(img.size) > max_overlay_side:
            img.thumbnail((max_overlay_side, max_overlay_side))
        write_png(out_dir / "overlays" / f"{names[i]}.png", img)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise InputError(f"{run_dir}: not a finished run folder (no {MANIFEST})")
    return json.loads(path.read_text())
