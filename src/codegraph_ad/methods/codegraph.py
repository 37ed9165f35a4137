"""CoDeGraph: find consistent anomalies through the graph stages, drop them from the references, rescore."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import EngineConfig, GraphConfig, LNAMDConfig, RsCINConfig
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.mutual import PairMinima, pair_minima, refine_minima
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.methods.base import (
    ScoreResult,
    check_batch_size,
    finish_image_scores,
    screening_mask,
    subset_partition,
)


@dataclass
class CoDeGraph:
    """MuSc's first pass, CoDeGraph stages 1-3 on its stored minima, then final scoring.

    The first pass keeps every (layer, degree) minima array with its argmins; the graph
    stages, the dependency ratios and the final scoring all read them, recomputing only
    the reference images that lost patches (``refine_minima``).
    """

    lnamd: LNAMDConfig = field(default_factory=LNAMDConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    rscin: RsCINConfig = field(default_factory=RsCINConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    progress: bool = True

    def score(self, features: FeatureSet) -> ScoreResult:
        n = features.n_images
        check_batch_size(n)
        m = features.layers.shape[2]
        patch = torch.zeros((n, m), dtype=torch.float32)
        excluded = torch.zeros((n, m), dtype=torch.bool)
        subsets: list[dict[str, Any]] = []
        for part in subset_partition(n, self.engine):
            idx = torch.as_tensor(part)
            s, ex, diag = self._score_subset(features.subset(part))
            patch[idx] = s
            excluded[idx] = ex
            diag["images"] = [int(i) for i in part]
            subsets.append(diag)
        raw, final = finish_image_scores(patch, features.cls, self.rscin)
        diagnostics = {"method": "codegraph", "exclusion_rate": float(excluded.float().mean()), "subsets": subsets}
        return ScoreResult(patch, final, raw, features.grid, excluded, diagnostics)

    def _maps(self, features: FeatureSet) -> list[tuple[int, int]]:
        return [(li, r) for li in range(features.layers.shape[1]) for r in self.lnamd.degrees]

    def _score_subset(self, features: FeatureSet) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        from codegraph_ad.graph.pipeline import run_graph_stages

        n = features.n_images
        allowed = screening_mask(features.cls, self.engine.screening_percent)
        maps = self._maps(features)
        if self.graph.graph_degree not in self.lnamd.degrees:
            raise ValueError(f"graph_degree {self.graph.graph_degree} is not among the LNAMD degrees {self.lnamd.degrees}")
        first: dict[tuple[int, int], PairMinima] = {}
        for li, r in maps:
            first[(li, r)] = pair_minima(
                lnamd(features.layers[:, li], features.grid, r),
                budget_mb=self.engine.memory_budget_mb,
                precision=self.engine.precision,
                with_argmin=True,
                progress=self.progress,
                desc=f"first pass layer {li + 1} r={r}",
            )
        cache: dict[bytes, list[torch.Tensor]] = {}

        def distances(excluded: np.ndarray) -> list[torch.Tensor]:
            if not excluded.any():
                return [first[key].dist for key in maps]
            key = np.packbits(excluded).tobytes()
            if key not in cache:
                cache.clear()  # only the latest base set is reused
                ex = torch.from_numpy(excluded)
                cache[key] = [
                    refine_minima(lnamd(features.layers[:, li], features.grid, r), first[(li, r)], ex,
                                  self.engine.memory_budget_mb)
                    for li, r in maps
                ]
            return cache[key]

        def score_fn(reference_images: np.ndarray, excluded: np.ndarray) -> np.ndarray:
            refs = torch.from_numpy(np.asarray(reference_images, dtype=bool))
            mask = refs.view(1, n).expand(n, n)
            if allowed is not None:
                mask = mask & allowed
            total = None
            for d in distances(np.asarray(excluded, dtype=bool)):
                s = msm_scores(d, self.graph.final_q, mask)
                total = s if total is None else total + s
            return (total / len(maps)).numpy()

        graph_mins = [first[(li, self.graph.graph_degree)].dist.numpy() for li in range(features.layers.shape[1])]
        result = run_graph_stages(graph_mins, self.graph, score_fn)
        excluded = np.asarray(result.excluded, dtype=bool)
        final = score_fn(np.ones(n, dtype=bool), excluded)
        return torch.from_numpy(final).float(), torch.from_numpy(excluded), _diagnostics(result)


def _diagnostics(result: Any) -> dict[str, Any]:
    from codegraph_ad.graph.diagnostics import summarize

    return summarize(result)
