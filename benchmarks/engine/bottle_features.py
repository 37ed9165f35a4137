"""Real features for the engine benchmark: one (layer, degree) map of the MVTec bottle test split.

    python benchmarks/engine/bottle_features.py --size 448 --block 9 --degree 1 --out /tmp/bottle_448_b9.pt
    python benchmarks/engine/run.py --real /tmp/bottle_448_b9.pt ...
writes the LNAMD tokens ``(N, M, C)`` (unit rows, float32) that MuSc scores for that map, taken
from the feature cache when it has the images. The file stays outside the repository (the
data's licence forbids copying it, and derived features are no different).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import BOTTLE  # noqa: E402

from codegraph_ad import FeatureConfig, RunConfig  # noqa: E402
from codegraph_ad.api import features_for_batch  # noqa: E402
from codegraph_ad.io.images import discover_images  # noqa: E402
from codegraph_ad.features.lnamd import lnamd  # noqa: E402
from codegraph_ad.io.batch import load_batch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--block", type=int, default=9, help="one of the default blocks 3, 6, 9, 12")
    ap.add_argument("--degree", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = RunConfig(method="musc", features=FeatureConfig(image_size=a.size))
    layers = list(cfg.features.layers)
    if a.block not in layers:
        sys.exit(f"--block must be one of {layers}")
    paths = discover_images(BOTTLE / "test")
    batch = load_batch(paths, a.size, BOTTLE / "test", "stop", False)
    feats = features_for_batch(batch, cfg, progress=False)
    tokens = feats.layers[:, layers.index(a.block)]  # (N, M, C)
    x = lnamd(tokens, feats.grid, a.degree)
    torch.save(x.contiguous(), a.out)
    print(f"{a.out}: {tuple(x.shape)}")


if __name__ == "__main__":
    main()
