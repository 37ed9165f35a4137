"""CoDeGraph: find consistent anomalies through the graph stages, drop them from the references, rescore."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import EngineConfig, GraphConfig, LNAMDConfig, RsCINConfig, RunConfig, graph_layer_indices
from codegraph_ad.errors import ConfigError
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.mutual import PairMinima, pair_minima, refine_minima
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.methods.base import (
    ScoreResult,
    budget_mb,
    check_run_memory,
    content_key,
    finish_image_scores,
    register_method,
    screening_mask,
    subset_partition,
)
from codegraph_ad.methods.estimator import RSCIN_NAMES, BatchEstimator, Section, flat_parameters


@dataclass
class FirstPass:
    """Every (layer, degree) minima array of one batch, with argmins: what all later stages read.

    minima[(layer_index, r)]: PairMinima with ``dist (N, N, M)`` and ``argmin``.
    allowed: ``(N, N)`` [CLS]-screening mask or None.
    """

    features: FeatureSet
    degrees: tuple[int, ...]
    minima: dict[tuple[int, int], PairMinima]
    allowed: torch.Tensor | None
    memory_budget_mb: float

    @property
    def n_images(self) -> int:
        return self.features.n_images

    @property
    def maps(self) -> list[tuple[int, int]]:
        return list(self.minima.keys())

    def unit_features(self, key: tuple[int, int]) -> torch.Tensor:
        li, r = key
        return lnamd(self.features.layers[:, li], self.features.grid, r)

    def subset(self, index: np.ndarray | list[int]) -> "FirstPass":
        """The first pass of a sub-batch, cut from this one (no recomputation)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        cut = {
            key: PairMinima(pm.dist[idx][:, idx].contiguous(),
                            None if pm.argmin is None else pm.argmin[idx][:, idx].contiguous())
            for key, pm in self.minima.items()
        }
        allowed = None if self.allowed is None else self.allowed[idx][:, idx]
        return FirstPass(self.features.subset(idx), self.degrees, cut, allowed, self.memory_budget_mb)

    def distances(self, excluded: np.ndarray | None) -> list[torch.Tensor]:
        """Per-map minima against the base set without the ``excluded (N, M)`` positions."""
        if excluded is None or not excluded.any():
            return [pm.dist for pm in self.minima.values()]
        ex = torch.from_numpy(np.asarray(excluded, dtype=bool))
        return [refine_minima(self.unit_features(key), pm, ex, self.memory_budget_mb) for key, pm in self.minima.items()]

    def scores(self, q: float, reference_images: np.ndarray | None = None,
               excluded: np.ndarray | None = None, dists: list[torch.Tensor] | None = None) -> torch.Tensor:
        """MSM patch scores ``(N, M)`` averaged over every layer and degree."""
        n = self.n_images
        refs = torch.ones(n, dtype=torch.bool) if reference_images is None else torch.from_numpy(
            np.asarray(reference_images, dtype=bool))
        mask = refs.view(1, n).expand(n, n)
        if self.allowed is not None:
            mask = mask & self.allowed
        dists = dists if dists is not None else self.distances(excluded)
        total = None
        for d in dists:
            s = msm_scores(d, q, mask)
            total = s if total is None else total + s
        return total / len(dists)


def compute_first_pass(features: FeatureSet, lnamd_cfg: LNAMDConfig, engine: EngineConfig,
                       progress: bool = False) -> FirstPass:
    """Minima and argmins for every layer and degree (the only full-cost step)."""
    minima: dict[tuple[int, int], PairMinima] = {}
    for li in range(features.layers.shape[1]):
        for r in lnamd_cfg.degrees:
            minima[(li, r)] = pair_minima(
                lnamd(features.layers[:, li], features.grid, r),
                budget_mb=budget_mb(engine),
                precision=engine.precision,
                with_argmin=True,
                progress=progress,
                desc=f"first pass layer {li + 1} r={r}",
            )
    allowed = screening_mask(features.cls, engine.screening_percent)
    return FirstPass(features, tuple(lnamd_cfg.degrees), minima, allowed, budget_mb(engine))


def graph_inputs(graph: GraphConfig, degrees: tuple[int, ...], n_layers: int,
                 blocks: tuple[int, ...] | None = None) -> list[int]:
    """The layer indices whose degree-``graph_degree`` minima feed the graph; checked before
    the first pass is paid for, so a bad setting fails in a second, not after minutes.

    blocks: the 1-based block number of each extracted layer (FeatureConfig.layers), which
    ``graph.graph_blocks`` names; needed only when graph_blocks is set.
    """
    if graph.graph_degree not in degrees:
        raise ValueError(f"graph_degree {graph.graph_degree} is not among the LNAMD degrees {tuple(degrees)}")
    if graph.graph_blocks is None:
        return list(range(n_layers))
    if blocks is None:
        raise ConfigError(f"graph_blocks {graph.graph_blocks} need the block numbers of the extracted layers "
                          "(CoDeGraph(blocks=FeatureConfig.layers))")
    if len(blocks) != n_layers:
        raise ValueError(f"{len(blocks)} block numbers {tuple(blocks)} for {n_layers} extracted layers")
    return graph_layer_indices(tuple(blocks), graph.graph_blocks)


def graph_and_rescore(first: FirstPass, graph: GraphConfig, patch_mask: np.ndarray | None = None,
                      blocks: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Stages 1-3 on a first pass, then final scoring against the refined base set.

    blocks: FeatureConfig.layers of the first pass's features (see ``graph_inputs``)."""
    from codegraph_ad.graph.diagnostics import summarize
    from codegraph_ad.graph.pipeline import run_graph_stages

    layers = graph_inputs(graph, first.degrees, first.features.layers.shape[1], blocks)
    cache: dict[bytes, list[torch.Tensor]] = {}

    def score_fn(reference_images: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        excluded = np.asarray(excluded, dtype=bool)
        key = np.packbits(excluded).tobytes()
        if key not in cache:
            cache.clear()  # filtering moves forward: only the latest base set is reused
            cache[key] = first.distances(excluded)
        return first.scores(graph.final_q, reference_images, dists=cache[key]).numpy()

    graph_mins = [first.minima[(li, graph.graph_degree)].dist.numpy() for li in layers]
    result = run_graph_stages(graph_mins, graph, score_fn, patch_mask=patch_mask)
    excluded = np.asarray(result.excluded, dtype=bool)
    final = score_fn(np.ones(first.n_images, dtype=bool), excluded)
    return torch.from_numpy(final).float(), torch.from_numpy(excluded), summarize(result)


@register_method("codegraph")
@flat_parameters(
    Section("lnamd", LNAMDConfig),
    Section("graph", GraphConfig),
    Section("rscin", RsCINConfig, RSCIN_NAMES),
    Section("engine", EngineConfig),
)
class CoDeGraph(BatchEstimator):
    """MuSc's first pass, CoDeGraph stages 1-3 on its stored minima, then final scoring.

    Parameters are the fields of LNAMDConfig (``degrees``), GraphConfig (``k_fraction``,
    ``alpha``, ..., ``final_q``, ``leiden_seed``), RsCINConfig (``rscin`` = enabled,
    ``rscin_k_list``) and EngineConfig (``precision``, ``memory_budget_mb``, ``threads``,
    ``subsets``, ``screening_percent``, ``seed``), with their defaults. ``progress`` shows
    progress bars; ``patch_mask`` ``(N, M)`` bool limits the graph stages to those patches
    (volumes: the non-void cubes).

    The first pass keeps every (layer, degree) minima array with its argmins; the graph
    stages, the dependency ratios and the final scoring all read them, recomputing only
    the queries whose stored nearest patch was removed (``refine_minima``).
    """

    method_name = "codegraph"
    progress: bool = False
    patch_mask: np.ndarray | None = None  # (N, M) patches allowed in the graph stages (volumes: non-void)
    # FeatureConfig.layers of the scored features: the 1-based blocks graph_blocks names
    blocks: tuple[int, ...] | None = None

    @classmethod
    def from_config(cls, config: RunConfig, **params: Any) -> "CoDeGraph":
        """As for every estimator, plus the block numbers of the configured layers."""
        return super().from_config(config, **{"blocks": tuple(config.features.layers), **params})

    def _score(self, features: FeatureSet, configs: dict[str, Any]) -> ScoreResult:
        lnamd_cfg, graph, engine = configs["lnamd"], configs["graph"], configs["engine"]
        n = features.n_images
        m = features.layers.shape[2]
        check_run_memory(features, "codegraph", len(lnamd_cfg.degrees), engine, graph.k_fraction)
        graph_inputs(graph, tuple(lnamd_cfg.degrees), features.layers.shape[1], self.blocks)
        patch = torch.zeros((n, m), dtype=torch.float32)
        excluded = torch.zeros((n, m), dtype=torch.bool)
        subsets: list[dict[str, Any]] = []
        for part in subset_partition(n, engine, content_key(features, engine)):
            idx = torch.as_tensor(part)
            first = compute_first_pass(features.subset(part), lnamd_cfg, engine, self.progress)
            mask = None if self.patch_mask is None else np.asarray(self.patch_mask)[part]
            s, ex, diag = graph_and_rescore(first, graph, mask, self.blocks)
            patch[idx] = s.cpu()
            excluded[idx] = ex.cpu()
            diag["images"] = [int(i) for i in part]
            subsets.append(diag)
        raw, final = finish_image_scores(patch, features.cls, configs["rscin"])
        diagnostics = {"method": "codegraph", "exclusion_rate": float(excluded.float().mean()), "subsets": subsets}
        return ScoreResult(patch, final, raw, features.grid, excluded, diagnostics)

    def _rescore(self, first: FirstPass, configs: dict[str, Any]) -> ScoreResult:
        graph = configs["graph"]
        graph_inputs(graph, tuple(first.degrees), first.features.layers.shape[1], self.blocks)
        mask = None if self.patch_mask is None else np.asarray(self.patch_mask)
        patch, excluded, diag = graph_and_rescore(first, graph, mask, self.blocks)
        diag["images"] = list(range(first.n_images))
        raw, final = finish_image_scores(patch, first.features.cls, configs["rscin"])
        diagnostics = {"method": "codegraph", "exclusion_rate": float(excluded.float().mean()), "subsets": [diag]}
        return ScoreResult(patch, final, raw, first.features.grid, excluded, diagnostics)
