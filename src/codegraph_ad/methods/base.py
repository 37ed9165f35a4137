"""What every scoring method returns, and the pieces they share."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from codegraph_ad.config import EngineConfig, LNAMDConfig, RsCINConfig, RunConfig
from codegraph_ad.engine.plan import ReferencePlan, plan_for
from codegraph_ad.engine.rscin import rscin
from codegraph_ad.errors import BatchTooSmallError, InputError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.registry import METHODS

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

    @property
    def patch_maps(self) -> torch.Tensor:
        """``(N, h, w)`` patch scores laid out on the patch grid."""
        return self.patch_scores.reshape(-1, *self.grid)

    @property
    def excluded_maps(self) -> torch.Tensor | None:
        """``(N, h, w)`` excluded patches on the patch grid (CoDeGraph), else None."""
        return None if self.excluded is None else self.excluded.reshape(-1, *self.grid)


def check_batch_size(n: int) -> None:
    if n < MIN_BATCH:
        raise BatchTooSmallError(
            f"batch has {n} image(s); batch-based zero-shot scoring compares each image with "
            f"the others and needs at least {MIN_BATCH}"
        )


def feature_maps(features: FeatureSet, lnamd_cfg: LNAMDConfig,
                 device: torch.device | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(layer_index, r, unit features (N, M, C))`` for every layer and degree, on ``device``."""
    for li in range(features.layers.shape[1]):
        for r in lnamd_cfg.degrees:
            yield li, r, lnamd(features.layers[:, li], features.grid, r, device=device)


def require_cls(cls: torch.Tensor | None, needed_by: str) -> torch.Tensor:
    """The [CLS] vectors, or an error saying which setting needs them and how to do without."""
    if cls is None:
        raise InputError(f"{needed_by} needs the [CLS] vector of every image, and these features have none: "
                         "pass cls=(N, C) with the features, or turn that setting off")
    return cls


def finish_image_scores(patch_scores: torch.Tensor, cls: torch.Tensor | None,
                        rscin_cfg: RsCINConfig) -> tuple[np.ndarray, np.ndarray]:
    """Image score = max of the map; RsCIN on top when enabled (the only use of ``cls`` here)."""
    raw = patch_scores.max(dim=1).values.double().numpy()
    if not rscin_cfg.enabled:
        return raw, raw.copy()
    cls = require_cls(cls, "RsCIN (rscin=True)")
    return raw, rscin(raw, cls.double().numpy(), rscin_cfg.k_list)


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


def content_key(features: FeatureSet, engine_cfg: EngineConfig) -> np.ndarray | None:
    """One number per image from its [CLS] vector: order-free identity for subset division.

    None when the batch is not divided (``subsets=1``): the key is then never read, so
    features without [CLS] vectors score as long as they are not divided.
    """
    if max(1, int(engine_cfg.subsets)) == 1:
        return None
    cls = require_cls(features.cls, f"subset division (subsets={engine_cfg.subsets})")
    g = torch.Generator().manual_seed(12345)
    proj = torch.randn(cls.shape[1], generator=g, dtype=torch.float64)
    return (cls.double().cpu() @ proj).numpy()


def reference_plan(features: FeatureSet, engine_cfg: EngineConfig) -> ReferencePlan:
    """The images each query is compared with: all, its [CLS]-screened share, or fixed K
    (nearest by [CLS], else by mean-pooled last-layer tokens, plus a seeded random share)."""
    pooled = None
    if engine_cfg.references is not None and features.cls is None:
        pooled = features.layers[:, -1].float().mean(dim=1)
    return plan_for(features.n_images, features.cls, pooled, engine_cfg.screening_percent,
                    engine_cfg.references, engine_cfg.random_references, engine_cfg.seed)


def budget_mb(engine_cfg: EngineConfig) -> float:
    from codegraph_ad.engine.memory import default_budget_mb

    return float(engine_cfg.memory_budget_mb) if engine_cfg.memory_budget_mb else default_budget_mb()


def check_run_memory(features: FeatureSet, method: str, n_degrees: int, engine_cfg: EngineConfig,
                     k_fraction: float = 0.3, image_size: int | None = None) -> None:
    """Log the memory estimate; refuse a run that cannot fit the budget before it starts."""
    from codegraph_ad.engine.memory import check_memory, estimate_memory

    from codegraph_ad.engine.plan import planned_slots

    n, n_layers, m, c = features.layers.shape
    ns = math.ceil(n / max(1, engine_cfg.subsets))
    est = estimate_memory(n, m, c, n_layers, n_degrees, method, engine_cfg.subsets, k_fraction,
                          slots=planned_slots(ns, engine_cfg.screening_percent, engine_cfg.references),
                          feature_bytes=features.layers.element_size(),
                          sharded=engine_cfg.backend == "ray")  # on Ray the minima stay in query shards
    budget = budget_mb(engine_cfg)
    log.info("memory estimate: %.2f GB of a %.1f GB budget (%s, %d images, %d patches)",
             est.total_mb / 1e3, budget / 1e3, method, n, m)
    size = image_size if image_size is not None else int(round(math.sqrt(m)))
    check_memory(est, budget, n, size, engine_cfg.subsets)


@runtime_checkable
class Method(Protocol):
    """What a method registered in ``codegraph_ad.registry.METHODS`` must provide.

    ``detect`` / ``evaluate`` / ``score_features`` build it with
    ``METHODS.get(config.method).from_config(config)``, hand it ``progress`` through
    ``set_params`` when ``get_params()`` lists that name, and call ``fit_predict`` once per batch.

    input: what ``fit_predict`` takes. ``"features"``: a batch method scoring backbone tokens,
        ``fit_predict(features: FeatureSet) -> ScoreResult`` (the only kind the runs call
        today); a method that needs the images themselves (a zero-shot text method such as
        WinCLIP) declares another kind, and the runs must learn to feed it before it can be
        selected with ``RunConfig.method``.
    from_config: a classmethod building the method from a whole ``RunConfig`` (it reads the
        sections it needs); ``get_params`` / ``set_params`` as in scikit-learn, with
        ``set_params`` returning the method and refusing unknown names.
    fit_predict: scores for every image and patch of one batch as a ``ScoreResult`` with
        ``patch_scores (N, h*w)`` on ``features.grid``; zero-shot batch methods have no
        separate fit, the batch is its own reference.
    """

    input: ClassVar[str]

    @classmethod
    def from_config(cls, config: RunConfig) -> "Method": ...

    def fit_predict(self, features: FeatureSet) -> ScoreResult: ...

    def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def set_params(self, **params: Any) -> "Method": ...


M = TypeVar("M")


def register_method(name: str, method: M | None = None, *, overwrite: bool = False):
    """Register a method class under ``name`` (a decorator without ``method``); then
    ``RunConfig(method=name)`` selects it in ``detect`` / ``evaluate`` / the CLI."""
    return METHODS.register(name, method, overwrite=overwrite)


def list_methods() -> list[str]:
    """Names ``RunConfig.method`` accepts, built-ins first."""
    return METHODS.names()
