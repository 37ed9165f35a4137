"""``codegraph-ad distill``: train the patch head on a run's images and (pseudo-)masks."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from codegraph_ad.config import PseudoMaskConfig
from codegraph_ad.distill.config import DistillConfig
from codegraph_ad.distill.data import image_features, training_set
from codegraph_ad.distill.detector import DistilledDetector, load_feature_backbone
from codegraph_ad.distill.head import PatchHead, head_inputs
from codegraph_ad.distill.model_file import ModelFile, save_model
from codegraph_ad.distill.train import fit_model


@dataclass
class TrainingReport:
    """What a training run did: per-epoch losses, timings, where the targets came from."""

    model_path: Path | None
    history: list[float]
    timings: dict[str, float]
    source: dict[str, Any]
    config: dict[str, Any]


def train_patch_head(
    run_dir: str | Path,
    model_path: str | Path | None,
    config: DistillConfig = DistillConfig(),
    masks: str | Path | None = None,
    pseudo: PseudoMaskConfig = PseudoMaskConfig(),
    progress: bool = True,
    backbone: Any = None,
    threads: int | None = None,
) -> tuple[DistilledDetector, TrainingReport]:
    """Train a head for the images of ``run_dir`` and save it to ``model_path`` (if given).

    masks: None trains on pseudo-masks cut from the run's maps with ``pseudo``; a folder
        (MVTec category, ground_truth folder, or ``pseudomask`` output) trains on its masks.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    backbone = backbone if backbone is not None else load_feature_backbone(config.features, threads)
    grid = (backbone.image_size // backbone.patch_size,) * 2
    data = training_set(run_dir, grid, masks, pseudo, progress)
    timings["targets_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = image_features(backbone, data.paths, config.features.batch_size, progress)
    inputs = head_inputs(feats.layers, feats.grid, config.head.degrees)
    timings["features_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(config.train.seed)
        head = PatchHead(inputs.shape[-1], config.head)
        history = fit_model(head, inputs, data.targets, config.train, progress, desc="training head")
    timings["train_s"] = time.perf_counter() - t0
    model_cfg = {"features": asdict(config.features), "head": asdict(config.head), "train": asdict(config.train),
                 "in_dim": int(inputs.shape[-1]), "grid": list(feats.grid), "source": data.source,
                 "run_dir": str(Path(run_dir).resolve()), "final_loss": history[-1]}
    if model_path is not None:
        save_model(model_path, ModelFile(DistilledDetector.kind, model_cfg, head.state_dict()))
    detector = DistilledDetector(backbone, head, config.features, model_cfg)
    report = TrainingReport(Path(model_path) if model_path is not None else None, history, timings,
                            data.source, model_cfg)
    return detector, report
