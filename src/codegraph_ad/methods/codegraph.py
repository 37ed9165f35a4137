"""CoDeGraph: find consistent anomalies through the graph stages, drop them from the references, rescore."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import EngineConfig, GraphConfig, LNAMDConfig, RsCINConfig, RunConfig, graph_layer_indices
from codegraph_ad.errors import ConfigError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.base import (
    ScoreResult,
    check_run_memory,
    content_key,
    finish_image_scores,
    register_method,
    subset_partition,
)
from codegraph_ad.methods.estimator import RSCIN_NAMES, BatchEstimator, Section, flat_parameters
from codegraph_ad.engine.mutual import RefinedMinima
from codegraph_ad.engine.ray_executor import RayBackendError, RayExecutor, executor_for
from codegraph_ad.methods.first_pass import FirstPass, compute_first_pass
from codegraph_ad.methods.sharded_first_pass import ShardLost, ShardedFirstPass, compute_sharded_first_pass
from codegraph_ad.progress import Progress


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


def refined_score_fn(first: FirstPass, q: float) -> Callable[..., np.ndarray]:
    """The graph stages' ``score_fn(reference_images, excluded[, bar])``: MSM scores at ``q``
    against the base set without the ``excluded`` positions, refining the first pass once per
    base set (filtering moves forward: only the latest one is kept)."""
    cache: dict[bytes, list[RefinedMinima]] = {}

    def score_fn(reference_images: np.ndarray, excluded: np.ndarray, bar: Progress | None = None) -> np.ndarray:
        excluded = np.asarray(excluded, dtype=bool)
        key = np.packbits(excluded).tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = first.refined(excluded, bar if bar is not None else False)
        return first.scores(q, reference_images, dists=cache[key]).cpu().numpy()

    return score_fn


def _gate_grid(first: FirstPass | ShardedFirstPass) -> dict[str, Any]:
    """Where the defect gate grows its cores: the image's patch grid by the largest LNAMD
    half-width (the reach of a defect into its neighbours' aggregated features). Volume tokens
    sit on a 3D lattice that LNAMD does not aggregate over: no growth there."""
    feats = first.features
    if feats.lattice is not None:
        return {"grid": (feats.layers.shape[2],), "gate_radius": 0}
    return {"grid": tuple(feats.grid), "gate_radius": (max(first.degrees) - 1) // 2}


def graph_and_rescore(first: FirstPass | ShardedFirstPass, graph: GraphConfig, patch_mask: np.ndarray | None = None,
                      blocks: tuple[int, ...] | None = None,
                      progress: bool | Progress = False) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Stages 1-3 on a first pass, then final scoring against the refined base set.

    blocks: FeatureConfig.layers of the first pass's features (see ``graph_inputs``).
    progress: the run's Progress (a "graph" and a "final pass" bar) or a bool."""
    from codegraph_ad.graph.diagnostics import summarize
    from codegraph_ad.graph.pipeline import run_graph_stages

    layers = graph_inputs(graph, first.degrees, first.features.layers.shape[1], blocks)
    sharded = isinstance(first, ShardedFirstPass)
    score_fn = first.score_fn(graph.final_q) if sharded else refined_score_fn(first, graph.final_q)

    tracker = Progress.of(progress)
    # stages 1-3 run as one call whose length depends on the communities found: one unit
    with tracker.stage("graph", 1, "step"):
        if sharded:  # the maps stay on the cluster's query shards
            result = first.graph_stages(layers, graph, score_fn, patch_mask, **_gate_grid(first))
        else:
            graph_mins = [first.minima[(li, graph.graph_degree)].dist.cpu().numpy() for li in layers]
            refs = None if first.plan.refs is None else first.plan.refs.numpy()
            result = run_graph_stages(graph_mins, graph, score_fn, patch_mask=patch_mask, refs=refs,
                                      **_gate_grid(first))
    excluded = np.asarray(result.excluded, dtype=bool)
    with tracker.stage("final pass", 2, "steps") as bar:  # refined minima, then MSM scores
        final = score_fn(np.ones(first.n_images, dtype=bool), excluded, bar)
        bar.advance()
    diagnostics = summarize(result)
    if graph.restore_look_alikes:
        excluded, final = restore_look_alikes(result.outlier_communities, excluded, final, score_fn, diagnostics)
    return torch.from_numpy(final).float(), torch.from_numpy(excluded), diagnostics


def restore_look_alikes(communities: list[np.ndarray], excluded: np.ndarray, final: np.ndarray,
                        score_fn: Callable[..., np.ndarray],
                        diagnostics: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Put back the patches of the outlier communities that did not turn out anomalous.

    A repeated defect's images score as anomalous once its copies stop vouching for each
    other; a community of look-alike normal images does not. Each community fewer than
    ``DecisionConfig.group_defect_share`` of whose images the batch decision (its defaults,
    on the max of each map) flags gets its patches back, and the batch is rescored once;
    nothing is put back when the decision flags no image at all.
    The diagnostics record it (``restored`` per filtering record, ``restored_communities``).
    """
    from codegraph_ad.decision import decide
    from codegraph_ad.graph.groups import is_look_alike

    flags = decide(final.max(axis=1)).anomalous
    restored = [j for j, members in enumerate(communities)
                if len(members) and is_look_alike(int(flags[members].sum()), len(members), bool(flags.any()))]
    diagnostics["restored_communities"] = [diagnostics["outlier_communities"][j] for j in restored]
    if not restored:
        return excluded, final
    excluded = excluded.copy()
    for j in restored:
        excluded[communities[j]] = False
    for j, rec in enumerate(diagnostics["filtering"]):
        rec["restored"] = j in restored
        rec["n_excluded"] = int(excluded[rec["images"]].sum())
        rec["excluded_per_image"] = [int(k) for k in excluded[rec["images"]].sum(axis=1)]
    per_image = excluded.sum(axis=1)
    diagnostics["excluded_per_image"] = {name: int(per_image[i])
                                         for i, name in enumerate(diagnostics["excluded_per_image"])}
    diagnostics["exclusion_rate"] = float(excluded.mean()) if excluded.size else 0.0
    final = score_fn(np.ones(excluded.shape[0], dtype=bool), excluded)
    return excluded, final


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
    ``subsets``, ``screening_percent``, ``seed``), with their defaults. ``progress`` (a bool
    or the run's Progress) shows one bar per stage (first pass, graph, final pass; one
    "scoring" bar over several subsets); ``patch_mask`` ``(N, M)`` bool limits the graph
    stages to those patches (volumes: the non-void cubes).

    The first pass keeps every (layer, degree) minima array with its argmins; the graph
    stages, the dependency ratios and the final scoring all read them, recomputing only
    the queries whose stored nearest patch was removed (``refine_minima``).
    """

    method_name = "codegraph"
    progress: bool | Progress = False
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
        parts = subset_partition(n, engine, content_key(features, engine))
        tracker = Progress.of(self.progress)
        # one batch: a bar per stage; several subsets run the stages in turn: one "scoring" bar
        with tracker.stage("scoring", len(parts), "subsets") if len(parts) > 1 else nullcontext(tracker) as bar:
            for part in parts:
                with bar.stage("subset", 3) if len(parts) > 1 else nullcontext(bar) as sub:
                    idx = torch.as_tensor(part)
                    mask = None if self.patch_mask is None else np.asarray(self.patch_mask)[part]
                    s, ex, diag = self._subset_scores(features.subset(part), configs, mask, sub)
                patch[idx] = s.cpu()
                excluded[idx] = ex.cpu()
                diag["images"] = [int(i) for i in part]
                subsets.append(diag)
        raw, final = finish_image_scores(patch, features.cls, configs["rscin"])
        diagnostics = {"method": "codegraph", "exclusion_rate": float(excluded.float().mean()), "subsets": subsets,
                       "image_pairs": sum(int(d["references"]["image_pairs"]) for d in subsets)}
        return ScoreResult(patch, final, raw, features.grid, excluded, diagnostics)

    def _subset_scores(self, features: FeatureSet, configs: dict[str, Any], mask: np.ndarray | None,
                       progress: Progress) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """First pass, graph stages and final scores of one (sub-)batch. On Ray the first pass
        stays in query shards; a shard that dies takes its maps along: the batch is rerun."""
        lnamd_cfg, graph, engine = configs["lnamd"], configs["graph"], configs["engine"]
        executor = executor_for(engine)
        retries = getattr(executor, "max_retries", 0)
        exact_degrees = self._exact_degrees(configs)
        for attempt in range(retries + 1):
            first: FirstPass | ShardedFirstPass
            if isinstance(executor, RayExecutor):
                try:
                    first = compute_sharded_first_pass(features, lnamd_cfg, engine, executor, progress,
                                                       fresh=attempt > 0, exact_degrees=exact_degrees)
                    s, ex, diag = graph_and_rescore(first, graph, mask, self.blocks, progress)
                except ShardLost as exc:
                    if attempt == retries:
                        raise RayBackendError(f"a query shard of the Ray run died {attempt + 1} times: {exc}") from None
                    continue
            else:  # this process holds the minima
                first = compute_first_pass(features, lnamd_cfg, engine, progress, exact_degrees=exact_degrees)
                s, ex, diag = graph_and_rescore(first, graph, mask, self.blocks, progress)
            diag["references"] = first.plan.summary()
            return s, ex, diag
        raise AssertionError("unreachable")

    def _exact_degrees(self, configs: dict[str, Any]) -> tuple[int, ...] | None:
        """The graph degree only: its maps' small distances feed the endurance ratios."""
        return (configs["graph"].graph_degree,)

    def _rescore(self, first: FirstPass, configs: dict[str, Any]) -> ScoreResult:
        graph = configs["graph"]
        graph_inputs(graph, tuple(first.degrees), first.features.layers.shape[1], self.blocks)
        if graph.graph_degree not in first.small_distances_exact:
            raise ConfigError(f"graph_degree {graph.graph_degree}: this reduced-precision first pass recomputed "
                              f"the small distances of degrees {first.small_distances_exact} only; compute it "
                              "with this graph degree (or in fp32)")
        mask = None if self.patch_mask is None else np.asarray(self.patch_mask)
        patch, excluded, diag = graph_and_rescore(first, graph, mask, self.blocks, self.progress)
        diag["images"] = list(range(first.n_images))
        diag["references"] = first.plan.summary()
        raw, final = finish_image_scores(patch, first.features.cls, configs["rscin"])
        diagnostics = {"method": "codegraph", "exclusion_rate": float(excluded.float().mean()), "subsets": [diag],
                       "image_pairs": int(diag["references"]["image_pairs"])}
        return ScoreResult(patch, final, raw, first.features.grid, excluded, diagnostics)
