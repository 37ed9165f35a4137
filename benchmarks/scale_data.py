"""Batches of any size N from one category: its images plus seeded augmented copies, features cached.

Used by benchmarks/scale.py. Image j of the sequence is source ``j mod n0`` (n0 = the
category's images, train + test, sorted by path, then in a seeded random order so that a
prefix shorter than n0 already mixes good and defect images) in round ``k = j // n0``: round 0 is the
image itself, round k >= 1 a copy made from it by a recipe drawn from
``default_rng([seed, source, k])``: a square crop of 85-100% of the shorter side at a random
place, resized to the model size (bicubic), one of the 8 flips/90-degree rotations
(``k mod 8``), and a brightness factor in [0.85, 1.15]. Every prefix of the sequence holds
each source ``floor`` or ``ceil(N / n0)`` times, so the batch's make-up (share of defect
images) is the same at every N; copies of a defect image are repeated defects seen under
different transforms.

Features (default FeatureExtractor at the given size) are cached per chunk of images under
``$CODEGRAPH_AD_CACHE/scale`` (default ``~/.cache/codegraph-ad/scale``): layers as float16
``.npy`` (half the disk; the timing does not depend on the values), [CLS] as float32, and a
manifest with every recipe. A cache holding more images serves any smaller N (prefix), and a
larger N only extracts the missing chunks. Nothing is written inside the repository: the
data's licences forbid copying it, and derived features are no different.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codegraph_ad.features.cache import default_cache_root
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.io.atomic import write_json, write_npy
from codegraph_ad.io.images import decode_image, discover_images, read_file_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BOTTLE, DATA  # noqa: E402

# the same two categories as benchmarks/codegraph_matrix.py (not imported: a cell's process
# stays small, its peak memory is what is measured)
CATEGORIES = {"bottle": BOTTLE, "mpdd": DATA / "mpdd_metal_plate" / "metal_plate"}

CHUNK = 64  # images per cache file: a cell reads one chunk at a time into its float32 array
CROP_RANGE = (0.85, 1.0)
BRIGHTNESS_RANGE = (0.85, 1.15)


def default_cache_dir() -> Path:
    """Next to the project's feature cache, never inside the repository."""
    return default_cache_root().parent / "scale"


def category_images(root: Path, seed: int = 0) -> list[Path]:
    """Every image of an MVTec-layout category (train/ and test/, not ground_truth/), sorted by
    path and then put in a seeded random order (MVTec sorts the good images last)."""
    paths: list[Path] = []
    for split in ("train", "test"):
        if (root / split).is_dir():
            paths.extend(discover_images(root / split))
    if not paths:
        raise FileNotFoundError(f"{root}: no images under train/ or test/")
    paths = sorted(paths)
    return [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))]


def image_label(path: Path) -> int:
    """0 for images under a ``good`` folder, else 1 (MVTec layout)."""
    return 0 if path.parent.name == "good" else 1


@dataclass(frozen=True)
class Recipe:
    """How image j of the sequence is made from its source (round 0: the source as is)."""

    index: int
    source: int
    round: int
    crop: tuple[int, int, int] | None  # (top, left, side) in source pixels
    dihedral: int  # 0-3: rot90 times, +4: then flipped left-right
    brightness: float


def recipe(j: int, n_sources: int, source_hw: tuple[int, int], seed: int) -> Recipe:
    """The recipe of image ``j``: deterministic in (seed, source, round) alone."""
    src, k = j % n_sources, j // n_sources
    if k == 0:
        return Recipe(j, src, 0, None, 0, 1.0)
    rng = np.random.default_rng([seed, src, k])
    h, w = source_hw
    side = int(round(min(h, w) * rng.uniform(*CROP_RANGE)))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    return Recipe(j, src, k, (top, left, side), k % 8, float(rng.uniform(*BRIGHTNESS_RANGE)))


def apply_recipe(rgb: np.ndarray, r: Recipe, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8: round 0 is squashed to the model size as ``load_batch`` does."""
    if r.crop is not None:
        top, left, side = r.crop
        rgb = rgb[top:top + side, left:left + side]
    out = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.BICUBIC))
    if r.round == 0:
        return out
    out = np.rot90(out, r.dihedral % 4)
    if r.dihedral >= 4:
        out = out[:, ::-1]
    out = np.clip(out.astype(np.float32) * r.brightness, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(out)


class ScaleCache:
    """Cached features of the first ``n`` images of one category's sequence at one size."""

    def __init__(self, root: Path, category: str, category_dir: Path, size: int, seed: int = 0):
        self.dir = Path(root) / f"{category}_{size}px_seed{seed}"
        self.category_dir = Path(category_dir)
        self.size, self.seed = size, seed
        self.sources = category_images(self.category_dir, seed)

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def manifest(self) -> dict:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text())
        return {"n_images": 0, "recipes": [], "extract_s": 0.0}

    def available(self) -> int:
        return int(self.manifest()["n_images"])

    def ensure(self, n: int, threads: int | None = None) -> dict:
        """Extract the missing chunks so that at least ``n`` images are cached; the manifest."""
        man = self.manifest()
        have = int(man["n_images"])
        if have >= n:
            return man
        names = [str(p.relative_to(self.category_dir)) for p in self.sources]
        if have and man.get("sources") != names:
            raise RuntimeError(f"{self.dir}: cached for other source images; delete it to rebuild")
        self.dir.mkdir(parents=True, exist_ok=True)
        decoded = [decode_image(read_file_bytes(p), p) for p in self.sources]
        extractor = FeatureExtractor(image_size=self.size, threads=threads)
        target = -(-n // CHUNK) * CHUNK
        for start in range(have, target, CHUNK):  # have is always a multiple of CHUNK
            recipes = [recipe(j, len(decoded), decoded[j % len(decoded)].shape[:2], self.seed)
                       for j in range(start, start + CHUNK)]
            images = [apply_recipe(decoded[r.source], r, self.size) for r in recipes]
            t0 = time.perf_counter()
            feats = extractor.transform(images)
            man["extract_s"] = float(man["extract_s"]) + time.perf_counter() - t0
            write_npy(self.dir / f"layers_{start:06d}.npy", feats.layers.numpy().astype(np.float16))
            write_npy(self.dir / f"cls_{start:06d}.npy", feats.cls.numpy())
            man.update(
                n_images=start + CHUNK, grid=list(feats.grid), size=self.size, seed=self.seed, chunk=CHUNK,
                category_dir=str(self.category_dir), sources=names,
                labels=[image_label(self.sources[r["source"]]) for r in man["recipes"] + [asdict(x) for x in recipes]],
                features=asdict(extractor.config), layers_dtype="float16",
            )
            man["recipes"] = man["recipes"] + [asdict(r) for r in recipes]
            write_json(self.manifest_path, man)
            print(f"features: {start + CHUNK} images cached ({man['extract_s']:.0f} s)", flush=True)
        return man

    def load(self, n: int, token_dtype: str = "float16") -> tuple[FeatureSet, np.ndarray]:
        """The first ``n`` images' FeatureSet and labels, read a chunk at a time so the process
        holds the array and one float16 chunk, nothing more. ``token_dtype`` "float16" holds the
        cached values as they are (FeatureConfig.token_dtype); "float32" holds the same values in
        twice the memory (what the runs before session 17 did): the scores are identical."""
        dtype = {"float16": torch.float16, "float32": torch.float32}[token_dtype]
        man = self.manifest()
        if int(man["n_images"]) < n:
            raise RuntimeError(f"{self.dir}: {man['n_images']} images cached, {n} wanted (run ensure first)")
        layers: torch.Tensor | None = None
        cls: torch.Tensor | None = None
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            part = np.load(self.dir / f"layers_{start:06d}.npy")[: stop - start]
            c = np.load(self.dir / f"cls_{start:06d}.npy")[: stop - start]
            if layers is None:
                layers = torch.empty((n, *part.shape[1:]), dtype=dtype)
                cls = torch.empty((n, c.shape[1]), dtype=torch.float32)
            layers[start:stop] = torch.from_numpy(part).to(dtype)
            cls[start:stop] = torch.from_numpy(c)
            del part
        assert layers is not None and cls is not None
        grid = (int(man["grid"][0]), int(man["grid"][1]))
        return FeatureSet(layers, cls, grid), np.asarray(man["labels"][:n])

    def describe(self) -> dict:
        """What the results file says about how the batch was made."""
        man = self.manifest()
        n = int(man["n_images"])
        return {
            "category_dir": str(self.category_dir), "n_sources": len(self.sources), "seed": self.seed,
            "size": self.size, "cached_images": n, "cache_dir": str(self.dir),
            "extract_s_per_image": round(float(man["extract_s"]) / n, 4) if n else None,
            "augmentation": ("sources in a seeded random order; image j = source j mod n0 in round j // n0; "
                             "round 0 the image as is, round k >= 1 "
                             f"a seeded copy: square crop of {CROP_RANGE[0]:.0%}-{CROP_RANGE[1]:.0%} of the shorter "
                             "side at a random place, bicubic resize to the model size, flip/90-degree rotation "
                             f"number k mod 8, brightness x U{BRIGHTNESS_RANGE}; seed = default_rng([seed, source, k])"),
            "features": man.get("features"), "layers_dtype": man.get("layers_dtype"),
        }
