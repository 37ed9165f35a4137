"""Train an APRIL-GAN adapter or AnomalyCLIP prompts on a run's images and (pseudo-)masks."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from codegraph_ad.distill.clip.detector import (
    TextDetector,
    build_text_model,
    layer_tokens,
)
from codegraph_ad.backbones.clip import ClipBundle, load_clip
from codegraph_ad.config import PseudoMaskConfig
from codegraph_ad.distill.config import TextModelConfig
from codegraph_ad.distill.data import training_set
from codegraph_ad.distill.distill_head import TrainingReport
from codegraph_ad.distill.model_file import ModelFile, save_model
from codegraph_ad.distill.train import fit_model
from codegraph_ad.features.preprocess import to_model_input
from codegraph_ad.io.images import load_image_rgb


def clip_tokens(bundle: ClipBundle, paths: list[Path], batch_size: int = 8, progress: bool = True) -> torch.Tensor:
    """``(N, L, M, C)`` frozen ``ln_post`` tokens of every image, extracted once for training."""
    bb = bundle.backbone
    out = []
    for start in tqdm(range(0, len(paths), batch_size), desc="CLIP features", disable=not progress, leave=False):
        x = torch.stack([to_model_input(load_image_rgb(p), bb.image_size, bb.mean, bb.std)
                         for p in paths[start:start + batch_size]])
        out.append(layer_tokens(bundle, x)[0])
    return torch.cat(out)


def train_text_model(
    run_dir: str | Path,
    model_path: str | Path | None,
    config: TextModelConfig = TextModelConfig(),
    masks: str | Path | None = None,
    pseudo: PseudoMaskConfig = PseudoMaskConfig(),
    progress: bool = True,
    threads: int | None = None,
    bundle: ClipBundle | None = None,
) -> tuple[TextDetector, TrainingReport]:
    """Train on the images of ``run_dir`` with pseudo-masks (``masks=None``) or a mask folder."""
    if config.clip.checkpoint is not None:  # absolute, so that `predict` finds it from anywhere
        config = replace(config, clip=replace(config.clip, checkpoint=str(Path(config.clip.checkpoint).resolve())))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bundle = bundle if bundle is not None else load_clip(config.clip, threads)
    g = bundle.backbone.image_size // bundle.backbone.patch_size
    data = training_set(run_dir, (g, g), masks, pseudo, progress)
    timings["targets_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = clip_tokens(bundle, data.paths, progress=progress)
    timings["features_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(config.train.seed)
        module = build_text_model(bundle, config)
        history = fit_model(module, tokens, data.targets, config.train, progress, desc=f"training {config.kind}")
    timings["train_s"] = time.perf_counter() - t0
    model_cfg = {"text_model": asdict(config), "grid": [g, g], "source": data.source,
                 "run_dir": str(Path(run_dir).resolve()), "final_loss": history[-1]}
    if model_path is not None:
        save_model(model_path, ModelFile(config.kind, model_cfg, module.state_dict()))
    detector = TextDetector(bundle, module, config, model_cfg)
    report = TrainingReport(Path(model_path) if model_path is not None else None, history, timings, data.source,
                            model_cfg)
    return detector, report
