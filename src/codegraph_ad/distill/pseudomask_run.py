"""``codegraph-ad pseudomask``: a run folder's maps -> binary PNG masks + a summary JSON.

Maps are streamed from disk (a batch of camera-resolution maps need not fit in memory): the
batch scope first draws a sample from every map for the shared fit, then thresholds each map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from codegraph_ad.config import PseudoMaskConfig
from codegraph_ad.distill.layout import mask_relpaths
from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_json, write_png
from codegraph_ad.io.masks import mask_png
from codegraph_ad.io.run_folder import RunFolder, read_run_folder
from codegraph_ad.pixel_decision import ThresholdFit, fit_threshold, map_sample

SUMMARY = "pseudomasks.json"


@dataclass
class PseudoMaskSummary:
    """What ``write_pseudomasks`` produced; ``rows`` has one dict per image."""

    out_dir: Path
    config: PseudoMaskConfig
    rows: list[dict[str, Any]]
    batch_fit: ThresholdFit | None

    @property
    def mask_paths(self) -> list[Path]:
        return [self.out_dir / r["mask"] for r in self.rows]


def mask_to_png(mask: np.ndarray) -> Image.Image:
    """Bool ``(H, W)`` -> 8-bit PNG with values 0/255, as MVTec's ground truth (``io.masks.mask_png``)."""
    return mask_png(mask)


def batch_threshold(run: RunFolder, config: PseudoMaskConfig, progress: bool = False) -> ThresholdFit | None:
    """The shared fit of ``scope='batch'`` (an even sample of every map), else None."""
    if config.scope != "batch":
        return None
    samples = [map_sample(run.load_map(i), i, len(run), config)
               for i in tqdm(range(len(run)), desc="sampling maps", disable=not progress, leave=False)]
    return fit_threshold(np.concatenate(samples), config)


def run_mask(run: RunFolder, i: int, config: PseudoMaskConfig,
             batch_fit: ThresholdFit | None) -> tuple[np.ndarray, ThresholdFit]:
    """Pseudo-mask ``(H, W)`` bool of image ``i`` of ``run`` and the fit that cut it."""
    amap = run.load_map(i)
    fit = batch_fit if batch_fit is not None else fit_threshold(amap, config)
    return amap > fit.threshold, fit


def write_pseudomasks(
    run_dir: str | Path,
    out_dir: str | Path,
    config: PseudoMaskConfig = PseudoMaskConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> PseudoMaskSummary:
    """Threshold every map of ``run_dir`` and write ``out_dir/ground_truth/...`` and the summary."""
    config.validate()
    run = read_run_folder(run_dir)
    if len(run) == 0:
        raise InputError(f"{run_dir}: the run lists no images")
    out = Path(out_dir)
    if (out / SUMMARY).exists() and not overwrite:
        raise InputError(f"{out}: holds pseudo-masks already; pass --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    rel = mask_relpaths(run.paths, run.names)

    batch_fit = batch_threshold(run, config, progress)

    rows: list[dict[str, Any]] = []
    for i in tqdm(range(len(run)), desc="pseudo-masks", unit="img", disable=not progress, leave=False):
        mask, fit = run_mask(run, i, config, batch_fit)
        write_png(out / rel[i], mask_to_png(mask))
        row: dict[str, Any] = {"name": run.names[i], "path": str(run.paths[i]), "mask": rel[i].as_posix(),
                               "threshold": fit.threshold, "anomalous_fraction": float(mask.mean()),
                               "has_anomaly": bool(mask.any())}
        if batch_fit is None:
            row["fit"] = fit.to_dict()
        rows.append(row)

    write_json(out / SUMMARY, {
        "run_dir": str(Path(run_dir).resolve()),
        "config": asdict(config),
        "batch_fit": batch_fit.to_dict() if batch_fit is not None else None,
        "n_images": len(rows),
        "n_with_anomaly": int(sum(r["has_anomaly"] for r in rows)),
        "images": rows,
    })
    return PseudoMaskSummary(out, config, rows, batch_fit)
