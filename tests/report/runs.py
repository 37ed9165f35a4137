"""Small run folders for the report and analysis tests: generated images, real pipeline.

A category in the MVTec AD layout: smooth random textures; the anomalous images carry the
same bright square at the same place (a consistent anomaly) with a mask file each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from codegraph_ad.config import FeatureConfig, RunConfig

SMALL = RunConfig(features=FeatureConfig(image_size=56))


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = gaussian_filter(rng.standard_normal((size, size, 3)), sigma=(2, 2, 0))
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-9)
    return (40 + 150 * noise).astype(np.uint8)


def make_category(root: Path, n_good: int = 5, n_bad: int = 3, size: int = 64, seed: int = 0) -> Path:
    """``root/cat`` with ``test/good``, ``test/spot`` and ``ground_truth/spot`` masks."""
    rng = np.random.default_rng(seed)
    cat = Path(root) / "cat"
    (cat / "test" / "good").mkdir(parents=True)
    (cat / "test" / "spot").mkdir(parents=True)
    (cat / "ground_truth" / "spot").mkdir(parents=True)
    for i in range(n_good):
        Image.fromarray(_texture(rng, size)).save(cat / "test" / "good" / f"{i:03d}.png")
    mask = np.zeros((size, size), dtype=np.uint8)
    lo, hi = size // 4, size // 4 + size // 3
    mask[lo:hi, lo:hi] = 255
    for i in range(n_bad):
        img = _texture(rng, size)
        img[mask > 0] = (250, 240, 30)
        Image.fromarray(img).save(cat / "test" / "spot" / f"{i:03d}.png")
        Image.fromarray(mask).save(cat / "ground_truth" / "spot" / f"{i:03d}_mask.png")
    return cat


PLANTED = (1, 4, 7, 10, 13)  # images of planted_codegraph_run that share the repeated defect


def planted_codegraph_result(images_dir: Path, n: int = 16, **graph_changes):
    """A real CoDeGraph result on fabricated features (no backbone): patch 5 of the images
    in ``PLANTED`` is one near-identical odd vector, which the graph stages flag as an
    outlier community. Plain images are written to ``images_dir`` so overlays can be drawn.
    graph_changes: GraphConfig fields set on top of the toy settings.

    Returns the api ``RunResult`` (not yet written).
    """
    import torch

    from codegraph_ad.api import RunResult
    from codegraph_ad.config import LNAMDConfig, RunConfig

    from tests.graph.synthetic import toy_graph
    from codegraph_ad.features.extract import FeatureSet
    from codegraph_ad.methods.codegraph import CoDeGraph

    grid, c = (4, 4), 16
    m = grid[0] * grid[1]
    g = torch.Generator().manual_seed(0)
    proto = torch.randn(m, c, generator=g)
    layers = proto[None, None] + 0.3 * torch.randn(n, 2, m, c, generator=g)
    odd = 3 * torch.randn(c, generator=g)
    for q in PLANTED:
        layers[q, :, 5] = odd + 0.01 * torch.randn(2, c, generator=g)
    config = RunConfig(lnamd=LNAMDConfig(degrees=(1,)),
                       graph=toy_graph(**{"kappa": 1.5, "target_coverage": 0.99, **graph_changes}))
    method = CoDeGraph.from_config(config, progress=False)
    scores = method.fit_predict(FeatureSet(layers, torch.randn(n, c, generator=g), grid))
    images_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = images_dir / f"im{i:02d}.png"
        Image.fromarray(np.full((32, 32, 3), 20 * (i % 10), np.uint8)).save(p)
        paths.append(p)
    return RunResult([p.stem for p in paths], paths, scores, config, {"scoring_s": 0.1}, [(32, 32)] * n)


def planted_codegraph_run(root: Path) -> Path:
    """``planted_codegraph_result`` written by the api's run writer to ``root/run``."""
    from codegraph_ad.api import write_run

    result = planted_codegraph_result(root / "images")
    write_run(result, root / "run", progress=False)
    return root / "run"
