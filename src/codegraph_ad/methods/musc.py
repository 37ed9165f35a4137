"""MuSc: zero-shot batch scoring by mutual similarity (the baseline CoDeGraph improves on)."""

from __future__ import annotations

from typing import Any

import torch

from codegraph_ad.config import EngineConfig, LNAMDConfig, MSMConfig, RsCINConfig
from codegraph_ad.engine.device import resolve_device
from codegraph_ad.engine.mutual import map_scores, plan_job
from codegraph_ad.engine.plan import ReferencePlan
from codegraph_ad.engine.ray_executor import executor_for
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.base import (
    ScoreResult,
    budget_mb,
    check_run_memory,
    content_key,
    feature_maps,
    finish_image_scores,
    reference_plan,
    register_method,
    subset_partition,
)
from codegraph_ad.methods.estimator import RSCIN_NAMES, BatchEstimator, Section, flat_parameters
from codegraph_ad.progress import Progress


@register_method("musc")
@flat_parameters(
    Section("lnamd", LNAMDConfig),
    Section("msm", MSMConfig),
    Section("rscin", RsCINConfig, RSCIN_NAMES),
    Section("engine", EngineConfig),
)
class MuSc(BatchEstimator):
    """Score every patch against all other images of the batch (LNAMD + MSM + RsCIN).

    Parameters are the fields of LNAMDConfig (``degrees``), MSMConfig (``q``), RsCINConfig
    (``rscin`` = enabled, ``rscin_k_list``) and EngineConfig (``precision``,
    ``memory_budget_mb``, ``threads``, ``subsets``, ``screening_percent``, ``seed``), with
    their defaults; ``progress`` (a bool or the run's Progress) shows one "scoring" bar.

    Each (layer, degree) map is scored and dropped before the next one, so memory holds
    one ``(N, N, M)`` minima array at a time whatever the number of maps.
    """

    method_name = "musc"
    progress: bool | Progress = False

    def _score(self, features: FeatureSet, configs: dict[str, Any]) -> ScoreResult:
        lnamd_cfg, msm_cfg, engine = configs["lnamd"], configs["msm"], configs["engine"]
        n = features.n_images
        m = features.layers.shape[2]
        check_run_memory(features, "musc", len(lnamd_cfg.degrees), engine)
        patch = torch.zeros((n, m), dtype=torch.float32)
        parts = subset_partition(n, engine, content_key(features, engine))
        n_maps = features.layers.shape[1] * len(lnamd_cfg.degrees)
        plans = []
        with Progress.of(self.progress).stage("scoring", len(parts) * n_maps, "maps") as bar:
            for part in parts:
                scores, plan = self._score_subset(features.subset(part), lnamd_cfg, msm_cfg, engine, bar)
                patch[torch.as_tensor(part)] = scores
                plans.append(plan.summary())
        raw, final = finish_image_scores(patch, features.cls, configs["rscin"])
        diagnostics = {"method": "musc", "references": plans,
                       "image_pairs": sum(int(p["image_pairs"]) for p in plans)}
        return ScoreResult(patch, final, raw, features.grid, diagnostics=diagnostics)

    def _rescore(self, first: Any, configs: dict[str, Any]) -> ScoreResult:
        patch = first.scores(configs["msm"].q).cpu()
        raw, final = finish_image_scores(patch, first.features.cls, configs["rscin"])
        plan = first.plan.summary()
        diagnostics = {"method": "musc", "references": [plan], "image_pairs": int(plan["image_pairs"])}
        return ScoreResult(patch, final, raw, first.features.grid, diagnostics=diagnostics)

    def _score_subset(self, features: FeatureSet, lnamd_cfg: LNAMDConfig, msm_cfg: MSMConfig,
                      engine: EngineConfig, bar: Progress) -> tuple[torch.Tensor, ReferencePlan]:
        plan = reference_plan(features, engine)
        total = None
        count = 0
        for li, r, feats in feature_maps(features, lnamd_cfg, resolve_device(engine.device)):
            job = plan_job(feats, plan, budget_mb(engine), engine.precision, window=engine.window,
                           grid=features.window_grid)
            s = map_scores(job, msm_cfg.q, executor_for(engine), bar, f"scoring layer {li + 1} r={r}")
            total = s if total is None else total + s
            count += 1
            del job
        assert total is not None
        return (total / count).cpu(), plan
