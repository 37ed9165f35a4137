"""``FeatureExtractor``: images (files, a folder, PIL images, arrays) -> ``FeatureSet``.

The scikit-learn-style face of the feature steps: flat parameters derived from
``FeatureConfig`` (``codegraph_ad.params``), the backbone built by
``backbones.from_config.backbone_from_config``, files decoded and resized by
``io.batch.load_batch``, tokens from ``features.extract`` and, for files, the per-image cache
of ``features.cache``. ``api.detect`` / ``evaluate`` extract through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from codegraph_ad.config import FeatureConfig, RunConfig
from codegraph_ad.errors import InputError
from codegraph_ad.features.cache import ChunkRunner
from codegraph_ad.features.extract import FeatureSet, extract_features, held_as
from codegraph_ad.io.batch import ImageBatch, load_batch
from codegraph_ad.io.images import discover_images
from codegraph_ad.params import FlatParams, Section, flat_parameters
from codegraph_ad.progress import Progress
from codegraph_ad.registry import BACKBONES

PathLike = str | os.PathLike


@flat_parameters(Section("features", FeatureConfig))
class FeatureExtractor(FlatParams):
    """Multi-layer patch tokens and [CLS] vectors of a batch of images.

    Parameters are the fields of FeatureConfig with its defaults: ``backbone`` (a name of
    ``backbones.list_backbones()``, or a backbone object, whose own input size and blocks
    then rule), ``image_size``, ``layers``, ``final_norm``, ``checkpoint``, ``batch_size``;
    and ``threads`` (CPU threads of the backbone; None: its default), ``device`` (where a
    backbone built from the parameters runs: ``cpu``, ``cuda`` or ``auto``; off the CPU the
    embedded model runs as its PyTorch port, see ``backbones.from_config``),
    ``backbone_precision`` (``fp32``, or ``bf16`` autocast for the torch models), ``cache`` (the
    per-image feature cache for files: None = on unless ``backbone`` is an object, whose
    weights cannot be identified), ``cache_dir`` (None: ``$CODEGRAPH_AD_CACHE/features``
    or ``~/.cache/codegraph-ad/features``), ``progress`` (progress bars).

    The backbone is built on first use and kept, so one extractor serves many batches.
    """

    threads: int | None = None
    device: str = "cpu"
    backbone_precision: str = "fp32"
    cache: bool | None = None
    cache_dir: str | os.PathLike | None = None
    progress: bool | Progress = False

    @classmethod
    def from_config(cls, config: RunConfig | FeatureConfig, **params: Any) -> "FeatureExtractor":
        """The extractor of a run (its ``features`` section, ``engine.threads`` and
        ``engine.device``) or of a ``FeatureConfig``; ``params`` sets the others (``backbone``
        object, ``cache``, ...)."""
        features = config.features if isinstance(config, RunConfig) else config
        values = {flat: getattr(features, name) for name, flat in cls.sections[0].flat_names().items()}
        if isinstance(config, RunConfig):
            values["threads"] = config.engine.threads
            values["device"] = config.engine.device
        values.update({k: v for k, v in params.items() if not (k == "backbone" and v is None)})
        extractor = cls()
        return extractor.set_params(**values)

    @property
    def config(self) -> FeatureConfig:
        """The FeatureConfig of the parameters (a backbone object: its ``name`` if registered)."""
        return self.configs()["features"]

    def _config_value(self, flat: str) -> Any:
        if flat == "backbone" and not isinstance(self.backbone, str):
            # A config names a registered backbone; an object outside the registry is
            # identified by itself (class and name) in the cache key and the run manifest.
            name = str(getattr(self.backbone, "name", ""))
            return name if name in BACKBONES else FeatureConfig().backbone
        return getattr(self, flat)

    # -- the backbone -----------------------------------------------------------------
    def backbone_model(self) -> Any:
        """The backbone object: the one given (used where it is: ``device`` does not move it),
        or the one the parameters name (built once, on ``device``)."""
        if not isinstance(self.backbone, str):
            return self.backbone
        key = (self.config, self.threads, self.device, self.backbone_precision)
        cached = getattr(self, "_model", None)
        if cached is None or cached[0] != key:
            from codegraph_ad.backbones import from_config  # looked up at call time (tests swap it)

            if self.device == "cpu" and self.backbone_precision == "fp32":  # the default, as it always was
                model = from_config.backbone_from_config(self.config, self.threads)
            else:
                model = from_config.backbone_from_config(self.config, self.threads, device=self.device,
                                                         precision=self.backbone_precision)
            cached = (key, model)
            self._model = cached
        return cached[1]

    def runtime(self) -> dict[str, str] | None:
        """Where and in which precision a backbone built from the parameters runs, for the
        cache key; None on the default CPU fp32 path (and for a backbone object, which the
        cache identifies by itself)."""
        if not isinstance(self.backbone, str):
            return None
        from codegraph_ad.backbones.device import resolve_device

        device = resolve_device(self.device)
        if device.type == "cpu" and self.backbone_precision == "fp32":
            return None
        return {"device": device.type, "precision": str(self.backbone_precision)}

    # -- extraction -------------------------------------------------------------------
    def transform(self, images: Any) -> FeatureSet:
        """Features of ``images``: a folder (every image below it, sorted by path), a file,
        a list of files, a PIL image, an ``(H, W, 3)`` array (uint8, or float in [0, 1]), a
        ``(N, H, W, 3)`` array, or a list of PIL images / arrays. Files may use the cache;
        in-memory images have no file bytes to key it on and are always extracted."""
        if isinstance(images, (str, os.PathLike)) or _is_path_list(images):
            return self.transform_batch(self.read(images))
        arrays = _as_rgb_list(images)
        if not arrays:
            raise InputError("no images to extract features from")
        return held_as(self._extract(lambda i: arrays[i], len(arrays)), self.config.token_dtype)

    __call__ = transform

    def _extract(self, load: Callable[[int], np.ndarray], n: int) -> FeatureSet:
        """Features of images ``load(0..n-1)``, no cache (a hook: the Ray extractor of
        engine/ray_features.py runs the same chunks on a cluster)."""
        return extract_features(self.backbone_model(), load, n, self.config.batch_size, self.progress)

    def _chunk_runner(self) -> ChunkRunner | None:
        """How the images the cache lacks are extracted (None: here, chunk after chunk)."""
        return None

    def read(self, images: PathLike | Sequence[PathLike]) -> ImageBatch:
        """Decode and resize image files (a folder: every image below it) to ``image_size``."""
        if isinstance(images, (str, os.PathLike)):
            root = Path(images)
            if root.is_dir():
                paths = discover_images(root)
                if not paths:
                    raise InputError(f"{root}: no image files found")
                return load_batch(paths, self.config.image_size, root, "stop", self.progress)
            images = [root]
        return load_batch([Path(p) for p in images], self.config.image_size, None, "stop", self.progress)

    def transform_batch(self, batch: ImageBatch, stats: dict[str, float] | None = None) -> FeatureSet:
        """Features of a decoded batch, taken from the feature cache where it has them.

        stats: when given, receives ``features_cached`` / ``features_extracted`` counts.
        """
        from codegraph_ad.features.cache import CacheConfig, cached_features, open_cache

        cfg = self.config
        given = None if isinstance(self.backbone, str) else self.backbone
        cache_cfg = CacheConfig(self.cache, Path(self.cache_dir) if self.cache_dir is not None else None)
        if not cache_cfg.active(given is not None) or len(batch.hashes) != len(batch):
            feats = self._extract(lambda i: batch.resized[i], len(batch))
            if stats is not None:
                stats.update(features_cached=0, features_extracted=len(batch))
            return held_as(feats, cfg.token_dtype)
        store = open_cache(cfg, cache_cfg, given, self.runtime())
        feats = cached_features(store, batch.hashes, lambda i: batch.resized[i], self.backbone_model,
                                cfg.batch_size, self.progress, self._chunk_runner())
        if stats is not None:
            stats.update(store.stats.as_timings())
        return held_as(feats, cfg.token_dtype)


def _is_path_list(images: Any) -> bool:
    return isinstance(images, (list, tuple)) and len(images) > 0 and all(
        isinstance(x, (str, os.PathLike)) for x in images)


def _as_rgb_list(images: Any) -> list[np.ndarray]:
    """In-memory images as a list of ``(H, W, 3)`` uint8 arrays (floats in [0, 1] scaled by 255)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_as_rgb(x, f"images[{i}]") for i, x in enumerate(images)]
    if isinstance(images, (np.ndarray, Image.Image)):
        return [_as_rgb(images, "image")]
    if isinstance(images, (list, tuple)):
        return [_as_rgb(x, f"images[{i}]") for i, x in enumerate(images)]
    raise InputError(f"images must be a folder, file path(s), PIL image(s) or (H, W, 3) / (N, H, W, 3) arrays, "
                     f"got {type(images).__name__}")


def _as_rgb(image: Any, what: str) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what}: expected a PIL image or an array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{what}: expected an (H, W, 3) RGB array, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
            raise InputError(f"{what}: float images must hold values in [0, 1] "
                             f"(got {np.nanmin(image):.3g} to {np.nanmax(image):.3g}); pass uint8 for 0-255")
        return np.round(image * 255.0).astype(np.uint8)
    raise InputError(f"{what}: image arrays must be uint8 or float in [0, 1], got dtype {image.dtype}")
