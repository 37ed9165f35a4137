"""MuSc: zero-shot batch scoring by mutual similarity (the baseline CoDeGraph improves on)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from codegraph_ad.config import EngineConfig, LNAMDConfig, MSMConfig, RsCINConfig
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.mutual import pair_minima
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.base import (
    ScoreResult,
    budget_mb,
    check_batch_size,
    check_run_memory,
    content_key,
    feature_maps,
    finish_image_scores,
    screening_mask,
    subset_partition,
)


@dataclass
class MuSc:
    """Score every patch against all other images of the batch (LNAMD + MSM + RsCIN).

    Each (layer, degree) map is scored and dropped before the next one, so memory holds
    one ``(N, N, M)`` minima array at a time whatever the number of maps.
    """

    lnamd: LNAMDConfig = field(default_factory=LNAMDConfig)
    msm: MSMConfig = field(default_factory=MSMConfig)
    rscin: RsCINConfig = field(default_factory=RsCINConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    progress: bool = True

    def score(self, features: FeatureSet) -> ScoreResult:
        n = features.n_images
        check_batch_size(n)
        m = features.layers.shape[2]
        check_run_memory(features, "musc", len(self.lnamd.degrees), self.engine)
        patch = torch.zeros((n, m), dtype=torch.float32)
        for part in subset_partition(n, self.engine, content_key(features)):
            patch[torch.as_tensor(part)] = self._score_subset(features.subset(part))
        raw, final = finish_image_scores(patch, features.cls, self.rscin)
        return ScoreResult(patch, final, raw, features.grid, diagnostics={"method": "musc"})

    def _score_subset(self, features: FeatureSet) -> torch.Tensor:
        allowed = screening_mask(features.cls, self.engine.screening_percent)
        total = None
        count = 0
        for li, r, feats in feature_maps(features, self.lnamd):
            minima = pair_minima(
                feats,
                budget_mb=budget_mb(self.engine),
                precision=self.engine.precision,
                progress=self.progress,
                desc=f"scoring layer {li + 1} r={r}",
            )
            s = msm_scores(minima.dist, self.msm.q, allowed)
            total = s if total is None else total + s
            count += 1
            del minima
        assert total is not None
        return (total / count).cpu()
