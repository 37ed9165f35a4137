"""CoDeGraph's first pass held by query shards on a Ray cluster, not on the driver.

Each shard (a Ray actor, one per worker slot) owns a range of query images and keeps every
(layer, degree) map's minima and argmins of its rows. What the graph stages read from the
maps is computed where they are: stage 1's similarity vectors and endurance ratios per query
row, stage 2's candidate links in order (the driver merges the shards' ordered streams and
takes only the links it selects), and every refined score the filtering asks for (each shard
refines its rows against the reduced reference set and returns its ``(rows, M)`` scores).
The driver holds the link graph, the communities and ``(N, M)`` arrays: nothing of size
N^2 M (nor N K M). Results are the driver-held first pass's bit for bit (tests/engine/test_ray.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import EngineConfig, GraphConfig, LNAMDConfig
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.mutual import PairMinima, plan_job, refined_entries
from codegraph_ad.engine.plan import ReferencePlan
from codegraph_ad.engine.ray_executor import QueryShard, RayExecutor, connect, pack, unpack
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.graph.endurance import endurance_ratios
from codegraph_ad.graph.filtering import ScoreFn
from codegraph_ad.graph.links import LocalCandidates, MergedCandidates, check_link_inputs, select_links_from
from codegraph_ad.graph.pipeline import GraphResult, defect_gate, finish_graph_stages, graph_rank
from codegraph_ad.graph.similarity_vectors import mutual_similarity_vectors
from codegraph_ad.methods.base import budget_mb, reference_plan
from codegraph_ad.methods.first_pass import first_pass_precision, recomputes_small_distances
from codegraph_ad.progress import Progress


class ShardLost(RuntimeError):
    """A shard's process died: the maps it held are gone and the first pass must be rerun."""


class FirstPassShard(QueryShard):
    """A query shard that keeps every map of the first pass (``seal``) and answers the graph
    stages' questions about its rows ``q0:q1``."""

    def __init__(self) -> None:
        super().__init__()
        self.maps: dict[Any, PairMinima] = {}
        self.candidates: LocalCandidates | None = None
        self.refined_key: bytes | None = None
        self.refined: list[torch.Tensor] = []

    def reset(self, layers: Any, grid: Any, window_grid: Any, window: int | None, budget: float) -> None:
        """Forget the last run's maps; keep the batch's raw layers to refine from."""
        self.maps, self.candidates, self.refined_key, self.refined = {}, None, None, []
        self.layers, self.grid, self.window_grid = unpack(layers), grid, window_grid
        self.window, self.budget = window, budget

    def seal(self, key: Any) -> None:
        li, r = key
        feats = lnamd(self.layers[:, li], self.grid, r) if self.layout.recomputes_small else None
        dist, arg = self.layout.finish(self.sim, self.arg, self.q0, feats)
        refs = self.layout.refs
        local_refs = None if refs is None else refs[self.q0 : self.q0 + dist.shape[0]].contiguous()
        self.maps[tuple(key)] = PairMinima(dist.contiguous(), arg, local_refs)
        self.sim = self.arg = None

    def graph_candidates(self, keys: list[Any], k: int, alpha: float, patch_mask: Any) -> int:
        """Stage 1 on this shard's rows; returns how many candidate links they hold."""
        mins = [self.maps[tuple(key)].dist.numpy() for key in keys]
        refs = self.maps[tuple(keys[0])].refs
        sim = mutual_similarity_vectors(mins, max_rank=k, refs=None if refs is None else refs.numpy(),
                                        keep_per_layer=False, query_offset=self.q0)
        zeta = endurance_ratios(sim.dbar, k, alpha)
        zeta, ranks, valid = check_link_inputs(zeta, sim.rank_images, patch_mask)
        rows, m, k1 = zeta.shape
        self.candidates = LocalCandidates(zeta, ranks, valid, offset=self.q0 * m * k1)
        return self.candidates.n_candidates

    def next_candidates(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.candidates.next_chunk(count)

    def scores_without(self, q: float, reference_images: np.ndarray, excluded: np.ndarray) -> Any:
        """MSM scores of this shard's rows against the base set without ``excluded (N, M)``
        and limited to ``reference_images (N,)``, averaged over the maps (``FirstPass.scores``)."""
        key = np.packbits(excluded).tobytes()
        if key != self.refined_key:  # refine once per base set; filtering only moves forward
            self.refined, self.refined_key = [], None
            ex = torch.from_numpy(np.asarray(excluded, dtype=bool))
            for (li, r), pm in self.maps.items():
                if not ex.any():
                    self.refined.append(pm.dist)
                    continue
                feats = lnamd(self.layers[:, li], self.grid, r)
                self.refined.append(refined_entries(feats, pm, ex, self.budget, self.window,
                                                    self.window_grid if self.window is not None else None,
                                                    query_offset=self.q0).materialize())
            self.refined_key = key
        mask = torch.from_numpy(np.asarray(reference_images, dtype=bool))
        total = None
        for (_, pm), dist in zip(self.maps.items(), self.refined):
            s = msm_scores(dist, q, mask, pm.refs, query_offset=self.q0)
            total = s if total is None else total + s
        return pack(total / len(self.maps))


@dataclass
class ShardedFirstPass:
    """The first pass of one batch whose minima live in ``shards`` (``FirstPass``'s role for
    CoDeGraph on Ray): the graph stages and the refined scores run where the maps are."""

    features: FeatureSet
    degrees: tuple[int, ...]
    maps: list[tuple[int, int]]
    plan: ReferencePlan
    executor: RayExecutor
    shards: list[Any]
    bounds: np.ndarray

    @property
    def n_images(self) -> int:
        return self.features.n_images

    def _get(self, refs: list[Any]) -> list[Any]:
        ray = connect(self.executor.address, self.executor.num_cpus)
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as exc:
            raise ShardLost(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None

    def _rows(self, array: np.ndarray | None, sid: int) -> np.ndarray | None:
        return None if array is None else np.ascontiguousarray(array[self.bounds[sid] : self.bounds[sid + 1]])

    def scores(self, q: float, reference_images: np.ndarray | None = None,
               excluded: np.ndarray | None = None) -> torch.Tensor:
        """MSM patch scores ``(N, M)`` against the base set without ``excluded``."""
        n, m = self.n_images, self.features.layers.shape[2]
        ref = np.ones(n, dtype=bool) if reference_images is None else np.asarray(reference_images, dtype=bool)
        ex = np.zeros((n, m), dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool)
        parts = self._get([a.scores_without.remote(q, ref, ex) for a in self.shards])
        return torch.cat([unpack(p) for p in parts])

    def score_fn(self, q: float) -> ScoreFn:
        def score_fn(reference_images: np.ndarray, excluded: np.ndarray, bar: Progress | None = None) -> np.ndarray:
            return self.scores(q, reference_images, excluded).numpy()
        return score_fn

    def graph_stages(self, layers: list[int], config: GraphConfig, score_fn: ScoreFn,
                     patch_mask: np.ndarray | None = None, grid: tuple[int, ...] | None = None,
                     gate_radius: int = 0) -> GraphResult:
        """``run_graph_stages`` on the shards' maps of ``layers`` at ``config.graph_degree``."""
        n, m = self.n_images, self.features.layers.shape[2]
        if n < 3:
            graph_rank(n, None, config)  # the batch-size error of the local path
        gate = defect_gate(config, grid, gate_radius)
        refs = self.plan.refs
        k = graph_rank(n, None if refs is None else int(refs.shape[1]), config)
        keys = [(li, config.graph_degree) for li in layers]
        mask = None if patch_mask is None else np.asarray(patch_mask, dtype=bool)
        sizes = self._get([a.graph_candidates.remote(keys, k, config.alpha, self._rows(mask, i))
                           for i, a in enumerate(self.shards)])

        def fetch(counts: list[int]) -> list[Any]:
            asked = {i: a.next_candidates.remote(c) for i, (a, c) in enumerate(zip(self.shards, counts)) if c}
            got = dict(zip(asked, self._get(list(asked.values()))))
            return [got.get(i) for i in range(len(self.shards))]

        links = select_links_from(MergedCandidates(sizes, fetch), (n, m, k - 1), config.target_coverage,
                                  config.links_per_batch)
        return finish_graph_stages(k, links, (n, m), config, score_fn, mask, gate)


def compute_sharded_first_pass(features: FeatureSet, lnamd_cfg: LNAMDConfig, engine: EngineConfig,
                               executor: RayExecutor, progress: bool | Progress = False,
                               fresh: bool = False, exact_degrees: tuple[int, ...] | None = None) -> ShardedFirstPass:
    """``compute_first_pass`` into query shards (``exact_degrees`` as there)."""
    plan = reference_plan(features, engine)
    budget = budget_mb(engine)
    maps = [(li, r) for li in range(features.layers.shape[1]) for r in lnamd_cfg.degrees]
    shards, bounds = executor.query_shards(features.n_images, fresh=fresh, kind=FirstPassShard)
    ray = connect(executor.address, executor.num_cpus)
    first = ShardedFirstPass(features, tuple(lnamd_cfg.degrees), maps, plan, executor, shards, bounds)
    layers_ref = ray.put(pack(features.layers.float()))
    window_grid = features.window_grid if engine.window is not None else None
    first._get([a.reset.remote(layers_ref, features.grid, window_grid, engine.window, budget) for a in shards])
    precision = first_pass_precision(engine.precision, features.layers.shape[2])
    with Progress.of(progress).stage("first pass", len(maps), "maps") as bar:
        for li, r in maps:
            job = plan_job(lnamd(features.layers[:, li], features.grid, r), plan, budget, precision,
                           True, engine.window, features.window_grid,
                           exact_small=recomputes_small_distances(exact_degrees, r))
            try:
                executor.fill_shards(shards, bounds, job, bar, f"first pass layer {li + 1} r={r}", key=(li, r))
            except ray.exceptions.RayActorError as exc:
                raise ShardLost(str(exc).splitlines()[0]) from None
    return first
