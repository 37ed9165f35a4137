"""Training data for per-image models: the images of a run and a patch target for each.

Targets come from the run's own maps through pseudo-masks (the default: no labels at all) or
from a folder of masks in the MVTec layout (real ground truth, or pseudo-masks written
earlier), where an image without a mask file counts as normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from codegraph_ad.backbones.base import Backbone
from codegraph_ad.config import PseudoMaskConfig
from codegraph_ad.distill.layout import find_mask
from codegraph_ad.distill.pseudomask_run import batch_threshold, run_mask
from codegraph_ad.distill.targets import grid_target, load_grid_target
from codegraph_ad.features.extract import FeatureSet, extract_features
from codegraph_ad.io.images import load_image_rgb
from codegraph_ad.io.run_folder import RunFolder, read_run_folder


@dataclass
class TrainingSet:
    """paths: the run's images; targets: ``(N, h * w)`` anomalous share per patch."""

    paths: list[Path]
    names: list[str]
    targets: torch.Tensor
    source: dict[str, Any]


def run_targets(
    run: RunFolder,
    grid: tuple[int, int],
    masks: str | Path | None = None,
    pseudo: PseudoMaskConfig = PseudoMaskConfig(),
    progress: bool = True,
) -> TrainingSet:
    """Patch targets for every image of ``run`` on ``grid`` (see module doc for the sources)."""
    targets = []
    if masks is None:
        pseudo.validate()
        fit = batch_threshold(run, pseudo, progress)
        for i in tqdm(range(len(run)), desc="pseudo-masks", unit="img", disable=not progress, leave=False):
            mask, _ = run_mask(run, i, pseudo, fit)
            targets.append(grid_target(mask, grid))
        source: dict[str, Any] = {"kind": "pseudo", "pseudomask": asdict(pseudo)}
    else:
        found = [find_mask(masks, p, n) for p, n in zip(run.paths, run.names)]
        for mp, hw in zip(found, run.original_sizes):
            targets.append(load_grid_target(mp, hw, grid))
        source = {"kind": "masks", "folder": str(Path(masks).resolve()),
                  "n_with_mask_file": int(sum(f is not None for f in found))}
    t = torch.stack(targets)
    source["n_images"] = int(t.shape[0])
    source["n_positive_images"] = int((t > 0).any(dim=1).sum())
    source["positive_patch_share"] = float((t > 0.5).float().mean())
    return TrainingSet(list(run.paths), list(run.names), t, source)


def training_set(run_dir: str | Path, grid: tuple[int, int], masks: str | Path | None = None,
                 pseudo: PseudoMaskConfig = PseudoMaskConfig(), progress: bool = True) -> TrainingSet:
    return run_targets(read_run_folder(run_dir), grid, masks, pseudo, progress)


def image_features(backbone: Backbone, paths: list[Path], batch_size: int = 8, progress: bool = True,
                   load: Callable[[Path], np.ndarray] = load_image_rgb) -> FeatureSet:
    """Frozen backbone tokens of ``paths`` (decoded at full size, squashed like ``detect``)."""
    return extract_features(backbone, lambda i: load(paths[i]), len(paths), batch_size, progress)
