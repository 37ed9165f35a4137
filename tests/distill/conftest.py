"""Fixtures for the distillation tests: one torch thread, toy runs, a tiny random CLIP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codegraph_ad.io.atomic import write_json, write_npy, write_png

TOY_SIZE = 64


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models are dominated by thread start-up on a shared CPU; one thread is faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_image(rng: np.random.Generator, defect: tuple[int, int, int] | None, size: int = TOY_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Grey noise texture; ``defect = (y, x, side)`` paints a bright red square. Returns (rgb, mask)."""
    rgb = np.clip(rng.normal(110, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), dtype=bool)
    if defect is not None:
        y, x, s = defect
        rgb[y:y + s, x:x + s] = (230, 40, 40)
        mask[y:y + s, x:x + s] = True
    return rgb, mask


def make_toy_run(root: Path, n_normal: int = 4, n_defect: int = 4, seed: int = 0, size: int = TOY_SIZE) -> dict:
    """An MVTec-like category (test/<defect>/*.png, ground_truth/...) and a fake finished run over it.

    The run's maps are the true masks blurred plus noise (what a good batch method yields), so
    pseudo-masks and trained models can be checked without running a backbone.
    """
    rng = np.random.default_rng(seed)
    cat = root / "category"
    paths, names, masks = [], [], []
    for i in range(n_normal + n_defect):
        defect = None if i < n_normal else (int(rng.integers(4, size - 24)), int(rng.integers(4, size - 24)), 16)
        folder = "good" if defect is None else "stain"
        rgb, mask = toy_image(rng, defect, size)
        p = write_png(cat / "test" / folder / f"{i:03d}.png", Image.fromarray(rgb))
        if defect is not None:
            write_png(cat / "ground_truth" / folder / f"{i:03d}_mask.png", Image.fromarray(mask.astype(np.uint8) * 255))
        paths.append(p)
        names.append(f"{folder}__{i:03d}")
        masks.append(mask)
    run = root / "run"
    grid = (8, 8)
    for name, mask in zip(names, masks):
        t = torch.from_numpy(mask.astype(np.float32))[None, None]
        blurred = torch.nn.functional.avg_pool2d(t, 5, stride=1, padding=2)[0, 0].numpy()
        amap = 0.3 + 0.02 * rng.standard_normal(mask.shape) + 0.5 * blurred
        write_npy(run / "maps" / f"{name}.npy", amap.astype(np.float32))
    write_json(run / "run.json", {"names": names, "paths": [str(p) for p in paths],
                                  "original_sizes": [[size, size]] * len(paths), "grid": list(grid),
                                  "config": {"features": {"image_size": 112}}})
    return {"category": cat, "run": run, "paths": paths, "names": names, "masks": masks}


@pytest.fixture
def toy_run(tmp_path: Path) -> dict:
    return make_toy_run(tmp_path)


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_ARCH = "codegraph-test-tiny-clip"


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLIP registered with open_clip and saved as a local checkpoint."""
    from codegraph_ad.backbones._optional import import_open_clip

    open_clip = import_open_clip()
    folder = tmp_path_factory.mktemp("tiny_clip")
    cfg_path = folder / f"{TINY_ARCH}.json"
    cfg_path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg_path)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model(TINY_ARCH, pretrained=None, force_quick_gelu=True)
    path = folder / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path
