"""How the distilled head's defaults were chosen, on a split the main benchmark does not use.

    python benchmarks/distill_head_choice.py [--size 224] [--seed 1]

Split seed 1 (distill_bottle.py reports seed 0). CoDeGraph over the first half, batch-scope
pseudo-masks, then heads that differ in LNAMD degrees and hidden width, each trained on the
pseudo-masks and on the real masks and scored on the second half. Tokens are extracted once;
the head's input is per-image, so scoring cached tokens equals scoring images one by one.
Writes benchmarks/results/distill_head_choice.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from common import BOTTLE, RESULTS, pct
from distill_bottle import eval_maps
from distill_common import gt_mask, resize_stack, result_path, stratified_halves

from codegraph_ad import FeatureConfig, RunConfig, evaluate
from codegraph_ad.api import load_backbone, versions
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.distill.config import HeadConfig, PseudoMaskConfig, TrainConfig
from codegraph_ad.distill.data import image_features, training_set
from codegraph_ad.distill.head import PatchHead, head_inputs
from codegraph_ad.distill.train import fit_model
from codegraph_ad.metrics import image_metrics, pixel_metrics

DEGREES = ((1,), (1, 3))
HIDDEN = (0, 64, 256)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="distill_head_choice_"))
    samples = read_mvtec_category(BOTTLE)
    first, second = stratified_halves(samples, a.seed)
    run_cfg = RunConfig(features=FeatureConfig(image_size=a.size))
    backbone = load_backbone(run_cfg)
    evaluate(BOTTLE, work / "run", run_cfg, samples=first, progress=False, overlays=False, backbone=backbone)
    g = a.size // backbone.patch_size
    targets = {"pseudo": training_set(work / "run", (g, g), None, PseudoMaskConfig(), progress=False),
               "real": training_set(work / "run", (g, g), BOTTLE, progress=False)}
    train_layers = image_features(backbone, targets["pseudo"].paths, progress=False).layers
    test_layers = image_features(backbone, [s.image_path for s in second], progress=False).layers
    gt = resize_stack(np.stack([gt_mask(s, (900, 900)) for s in second]), 256, binary=True)
    labels = np.array([s.label for s in second])
    train_cfg = TrainConfig()
    rows = []
    for (source, data), degrees, hidden in itertools.product(targets.items(), DEGREES, HIDDEN):
        x = head_inputs(train_layers, (g, g), degrees)
        t0 = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(train_cfg.seed)
            head = PatchHead(x.shape[-1], HeadConfig(degrees=degrees, hidden=hidden))
            hist = fit_model(head, x, data.targets, train_cfg, progress=False)
        train_s = time.perf_counter() - t0
        with torch.inference_mode():
            probs = head.eval()(head_inputs(test_layers, (g, g), degrees))
        maps = eval_maps(probs, (g, g), a.size, 256)
        row = {"targets": source, "degrees": list(degrees), "hidden": hidden, "train_s": round(train_s, 1),
               "final_loss": round(hist[-1], 4), "image": pct(image_metrics(probs.max(dim=1).values.numpy(), labels)),
               "pixel": pct(pixel_metrics(maps, gt))}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"benchmark": "distill_head_choice", "split_seed": a.seed, "image_size": a.size,
           "pseudomask": asdict(PseudoMaskConfig()), "train": asdict(train_cfg), "rows": rows, "versions": versions()}
    result_path(RESULTS, "distill_head_choice.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
