"""What every scoring method returns, and the pieces they share."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import EngineConfig, LNAMDConfig, RsCINConfig
from codegraph_ad.engine.rscin import rscin
from codegraph_ad.errors import BatchTooSmallError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd

MIN_BATCH = 3
log = logging.getLogger("codegraph_ad")


@dataclass
class ScoreResult:
    """Scores of one batch.

    patch_scores: ``(N, M)`` float32, mean over layers and degrees.
    image_scores: ``(N,)`` final image scores (after RsCIN when enabled).
    raw_image_scores: ``(N,)`` max of each map, before RsCIN.
    excluded: ``(N, M)`` bool patches removed from the references (CoDeGraph), else None.
    diagnostics: JSON-able details of the method's decisions.
    """

    patch_scores: torch.Tensor
    image_scores: np.ndarray
    raw_image_scores: np.ndarray
    grid: tuple[int, int]
    excluded: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


def check_batch_size(n: int) -> None:
    if n < MIN_BATCH:
        raise BatchTooSmallError(
            f"batch has {n} image(s); batch-based zero-shot scoring compares each image with "
            f"the others and needs at least {MIN_BATCH}"
        )


def feature_maps(features: FeatureSet, lnamd_cfg: LNAMDConfig) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(layer_index, r, unit features (N, M, C))`` for every layer and degree."""
    for li in range(features.layers.shape[1]):
        for r in lnamd_cfg.degrees:
            yield li, r, lnamd(features.layers[:, li], features.grid, r)


def finish_image_scores(patch_scores: torch.Tensor, cls: torch.Tensor, rscin_cfg: RsCINConfig) -> tuple[np.ndarray, np.ndarray]:
    """Image score = max of the map; RsCIN on top when enabled."""
    raw = patch_scores.max(dim=1).values.double().numpy()
    final = rscin(raw, cls.double().numpy(), rscin_cfg.k_list) if rscin_cfg.enabled else raw.copy()
    return raw, final


def subset_partition(n: int, engine_cfg: EngineConfig, content_key: np.ndarray | None = None) -> list[np.ndarray]:
    """Seeded random partition into ``subsets`` near-equal groups (SPEC section 8).

    content_key: ``(N,)`` values that identify each image by its content (e.g. a
    projection of its [CLS] vector). The seeded shuffle is applied to the images in key
    order, so the same images land in the same subsets whatever the input file order.
    """
    s = max(1, int(engine_cfg.subsets))
    if s == 1:
        return [np.arange(n)]
    if n // s < MIN_BATCH:
        raise BatchTooSmallError(
            f"{n} images split into {s} subsets leaves fewer than {MIN_BATCH} per subset; use fewer subsets"
        )
    order = np.argsort(content_key, kind="stable") if content_key is not None else np.arange(n)
    perm = order[np.random.default_rng(engine_cfg.seed).permutation(n)]
    return [np.sort(part) for part in np.array_split(perm, s)]


def content_key(features: FeatureSet) -> np.ndarray:
    """One number per image from its [CLS] vector: order-free identity for subset division."""
    g = torch.Generator().manual_seed(12345)
    proj = torch.randn(features.cls.shape[1], generator=g, dtype=torch.float64)
    return (features.cls.double().cpu() @ proj).numpy()


def screening_mask(cls: torch.Tensor, percent: float) -> torch.Tensor | None:
    """``(N, N)`` bool: each query keeps its ``percent``% most [CLS]-similar other images."""
    n = cls.shape[0]
    if percent >= 100.0:
        return None
    if not 0.0 < percent <= 100.0:
        raise ValueError(f"screening_percent must be in (0, 100], got {percent}")
    unit = torch.nn.functional.normalize(cls.float(), dim=1)
    sim = unit @ unit.T
    sim.fill_diagonal_(-float("inf"))
    keep = max(1, int(np.ceil(percent / 100.0 * (n - 1))))
    top = torch.topk(sim, keep, dim=1).indices
    mask = torch.zeros((n, n), dtype=torch.bool)
    mask.scatter_(1, top, True)
    return mask


def budget_mb(engine_cfg: EngineConfig) -> float:
    from codegraph_ad.engine.memory import default_budget_mb

    return float(engine_cfg.memory_budget_mb) if engine_cfg.memory_budget_mb else default_budget_mb()


def check_run_memory(features: FeatureSet, method: str, n_degrees: int, engine_cfg: EngineConfig,
                     k_fraction: float = 0.3, image_size: int | None = None) -> None:
    """Log the memory estimate; refuse a run that cannot fit the budget before it starts."""
    from codegraph_ad.engine.memory import check_memory, estimate_memory

    n, n_layers, m, c = features.layers.shape
    est = estimate_memory(n, m, c, n_layers, n_degrees, method, engine_cfg.subsets, k_fraction)
    budget = budget_mb(engine_cfg)
    log.info("memory estimate: %.2f GB of a %.1f GB budget (%s, %d images, %d patches)",
             est.total_mb / 1e3, budget / 1e3, method, n, m)
    size = image_size if image_size is not None else int(round(math.sqrt(m)))
    check_memory(est, budget, n, size, engine_cfg.subsets)
