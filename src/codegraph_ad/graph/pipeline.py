"""CoDeGraph stages 1-3 composed: minima in, excluded patch positions out (SPEC sections 4-6).

The caller owns feature extraction and scoring: it passes the per-layer minima of the
degree r that feeds the graph (``GraphConfig.graph_degree``) and a ``score_fn`` over its
stored minima; final scoring with ``GraphConfig.final_q`` is also the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from codegraph_ad.config import GraphConfig
from codegraph_ad.graph.communities import CommunityResult, detect_communities
from codegraph_ad.graph.endurance import endurance_ratios, reference_rank
from codegraph_ad.graph.filtering import DefectGate, FilterResult, ScoreFn, targeted_filtering
from codegraph_ad.graph.links import LinkSelection, select_links
from codegraph_ad.graph.similarity_vectors import MutualSimilarity, mutual_similarity_vectors, validate_minima


@dataclass(frozen=True)
class GraphResult:
    """Everything the diagnostics need from one run of the graph stages.

    k: reference rank used. excluded: (N, M) bool, the positions removed from B.
    similarity: the truncated mutual similarity vectors, kept only on request (large).
    """

    k: int
    links: LinkSelection
    communities: CommunityResult
    filtering: FilterResult
    similarity: MutualSimilarity | None = None

    @property
    def excluded(self) -> np.ndarray:
        return self.filtering.excluded

    @property
    def outlier_communities(self) -> list[np.ndarray]:
        return self.communities.outlier_communities


def run_graph_stages(
    mins_per_layer: Sequence[np.ndarray],
    config: GraphConfig,
    score_fn: ScoreFn,
    patch_mask: np.ndarray | None = None,
    keep_similarity: bool = False,
    refs: np.ndarray | None = None,
    grid: tuple[int, ...] | None = None,
    gate_radius: int = 0,
) -> GraphResult:
    """Stages 1-3 on ``mins_per_layer``: L arrays (N, N, M) of per-image minima, or
    (N, K, M) over each image's listed references ``refs (N, K)`` (screening, fixed K).

    score_fn(reference_images (N,) bool, excluded (N, M) bool) -> (N, M) MSM scores.
    patch_mask: (N, M) bool, patches allowed to form links and to serve as the filtering
    threshold population (e.g. non-void cubes); None means all.
    grid, gate_radius: the patch grid of one image and the growth of the defect gate
    (``config.defect_gate_percentile``; needed only when it is set).
    """
    _, n, m = validate_minima(mins_per_layer, refs)
    gate = defect_gate(config, grid, gate_radius)
    k = graph_rank(n, None if refs is None else int(np.shape(refs)[1]), config)
    sim = mutual_similarity_vectors(mins_per_layer, max_rank=k, refs=refs, keep_per_layer=keep_similarity)
    zeta = endurance_ratios(sim.dbar, k, config.alpha)
    links = select_links(
        zeta,
        sim.rank_images,
        target_coverage=config.target_coverage,
        links_per_batch=config.links_per_batch,
        patch_mask=patch_mask,
    )
    del zeta
    if not keep_similarity:  # the filtering below refines every map: leave it the memory
        sim = None
    return finish_graph_stages(k, links, (n, m), config, score_fn, patch_mask, gate, sim)


def defect_gate(config: GraphConfig, grid: tuple[int, ...] | None, gate_radius: int) -> DefectGate | None:
    """The gate ``config.defect_gate_percentile`` asks for, checked before any work."""
    if config.defect_gate_percentile is None:
        return None
    if grid is None:
        raise ValueError("defect_gate_percentile needs the patch grid (run_graph_stages(grid=...))")
    return DefectGate(config.defect_gate_percentile, tuple(grid), gate_radius)


def graph_rank(n_images: int, n_refs: int | None, config: GraphConfig) -> int:
    """Reference rank k: k_fraction applies to the population each image is compared with
    (N exact, K + 1 with K listed references)."""
    return reference_rank(n_images if n_refs is None else n_refs + 1, config.k_fraction)


def finish_graph_stages(
    k: int,
    links: LinkSelection,
    shape: tuple[int, int],
    config: GraphConfig,
    score_fn: ScoreFn,
    patch_mask: np.ndarray | None = None,
    gate: DefectGate | None = None,
    similarity: MutualSimilarity | None = None,
) -> GraphResult:
    """Communities of the link graph and the targeted filtering: what follows stage 2 wherever
    its links were selected (here, or over query shards)."""
    n, m = shape
    comms = detect_communities(links.weights, kappa=config.kappa, seed=config.leiden_seed,
                               min_size=config.min_community_size, density=config.community_density,
                               resolution_percentile=config.resolution_percentile,
                               resolution_scale=config.resolution_scale,
                               leave_one_out=config.leave_one_out_fence)
    filt = targeted_filtering(
        score_fn,
        comms.outlier_communities,
        n_images=n,
        n_patches=m,
        percentile=config.dependency_percentile,
        patch_mask=patch_mask,
        joint=config.joint_filtering,
        look_alike_kappa=config.look_alike_kappa,
        defect_gate=gate,
    )
    return GraphResult(k=k, links=links, communities=comms, filtering=filt, similarity=similarity)
