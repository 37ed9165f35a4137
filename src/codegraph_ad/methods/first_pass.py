"""MuSc's first pass kept whole: every (layer, degree) minima array with its argmins.

CoDeGraph's graph stages, its dependency ratios and its final scoring all read it, and the
estimators' ``first_pass``/``rescore`` warm start stores it so that one batch can be scored
under many settings for the cost of one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from codegraph_ad.config import EngineConfig, LNAMDConfig
from codegraph_ad.engine.autotune import fastest_reduced_precision
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.device import resolve_device
from codegraph_ad.engine.mutual import (PairMinima, RefinedMinima, pair_minima_with_argmins, plan_minima,
                                        refined_entries)
from codegraph_ad.engine.plan import ReferencePlan
from codegraph_ad.engine.products import PRODUCTS
from codegraph_ad.engine.ray_executor import executor_for
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.methods.base import budget_mb, reference_plan
from codegraph_ad.progress import Progress


@dataclass
class FirstPass:
    """Every (layer, degree) minima array of one batch, with argmins: what all later stages read.

    minima[(layer_index, r)]: PairMinima with ``dist (N, S, M)`` and ``argmin`` in the slots
    of ``plan`` (exact: S = N; [CLS] screening or fixed K: the listed references).
    """

    features: FeatureSet
    degrees: tuple[int, ...]
    minima: dict[tuple[int, int], PairMinima]
    plan: ReferencePlan
    memory_budget_mb: float
    window: int | None = None  # the position window the minima were taken in (EngineConfig.window)
    # degrees whose small distances are fp32-exact (all of them in fp32; in bf16/int8 those that
    # ``compute_first_pass`` was asked to recompute): the graph may only read these
    exact_degrees: tuple[int, ...] | None = None

    @property
    def n_images(self) -> int:
        return self.features.n_images

    @property
    def maps(self) -> list[tuple[int, int]]:
        return list(self.minima.keys())

    def unit_features(self, key: tuple[int, int]) -> torch.Tensor:
        li, r = key
        return lnamd(self.features.layers[:, li], self.features.grid, r, device=self.minima[key].dist.device)

    def subset(self, index: np.ndarray | list[int]) -> "FirstPass":
        """The first pass of a sub-batch, cut from this one (no recomputation; exact plans)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        plan = self.plan.subset(idx)
        cut = {
            key: PairMinima(pm.dist[idx][:, idx].contiguous(),
                            None if pm.argmin is None else pm.argmin[idx][:, idx].contiguous())
            for key, pm in self.minima.items()
        }
        return FirstPass(self.features.subset(idx), self.degrees, cut, plan, self.memory_budget_mb, self.window,
                         self.exact_degrees)

    @property
    def small_distances_exact(self) -> tuple[int, ...]:
        """The degrees whose small distances are fp32-exact (every degree unless stated)."""
        return self.degrees if self.exact_degrees is None else self.exact_degrees

    def distances(self, excluded: np.ndarray | None, progress: bool | Progress = False) -> list[torch.Tensor]:
        """Per-map minima against the base set without the ``excluded (N, M)`` positions."""
        return [r.materialize() for r in self.refined(excluded, progress)]

    def refined(self, excluded: np.ndarray | None, progress: bool | Progress = False) -> list[RefinedMinima]:
        """Per-map changes of the minima when the ``excluded (N, M)`` positions leave the base set
        (only the changed entries are held: see RefinedMinima).

        progress: a stage's Progress, advanced once per map (or a bool for a bar of its own)."""
        if excluded is None or not np.asarray(excluded).any():
            return [RefinedMinima.unchanged(pm.dist) for pm in self.minima.values()]
        ex = torch.from_numpy(np.asarray(excluded, dtype=bool))
        out = []
        with Progress.of(progress).stage("refining", len(self.minima), "maps") as bar:
            for key, pm in self.minima.items():
                out.append(refined_entries(self.unit_features(key), pm, ex, self.memory_budget_mb,
                                           self.window, self.features.window_grid if self.window is not None else None))
                bar.advance()
        return out

    def scores(self, q: float, reference_images: np.ndarray | None = None,
               excluded: np.ndarray | None = None,
               dists: list[torch.Tensor] | list[RefinedMinima] | None = None) -> torch.Tensor:
        """MSM patch scores ``(N, M)`` averaged over every layer and degree."""
        mask = None if reference_images is None else torch.from_numpy(np.asarray(reference_images, dtype=bool))
        maps = dists if dists is not None else self.refined(excluded)
        total = None
        for d in maps:
            full = d.materialize() if isinstance(d, RefinedMinima) else d
            s = msm_scores(full, q, mask, self.plan.refs)
            total = s if total is None else total + s
            del full
        return total / len(maps)


# what ``fast`` chooses among for a first pass: bf16x3 keeps small distances to about 0.2%
# without a recompute; plain bf16 and int8 need one (engine/products.py)
FIRST_PASS_FAST_MODES = ("fp32", "bf16x3")


def first_pass_precision(precision: str, n_patches: int = 256, device: str | torch.device = "cpu") -> str:
    """The block precision of a first pass (minima with argmins, what CoDeGraph's graph stages
    read): ``fast`` is the faster of fp32 and bf16x3 here (timed with argmins, once per
    process; bf16x3 only wins where bf16 runs natively, AMX or a GPU); an explicit bf16 or
    int8 is honoured with a warning.

    Reduced precisions distort small distances between near-identical patches (bottle's dark
    background, a repeated defect's copies), which the endurance ratios divide: on the bottle
    224 px matrix int8 halved the outlier communities' densities and lost c_35's group (pixel
    F1 -15.8). With argmins, bf16's and int8's distances below 0.2 are recomputed in fp32 at
    the chosen neighbour on the graph degree's maps (engine/mutual.py:
    ``_exact_small_distances``, ``exact_degrees``): the same communities on all 15 bottle
    cells, but a_35 moved by F1 -0.85 / AP -1.10 because the dependency ratios read the other
    maps' small distances. bf16x3 splits each operand in two bf16 parts and keeps every map's
    small distances (median relative error 0.1-0.2% on bottle against bf16's 10-26%) with no
    recompute, which is why ``fast`` may pick it (docs/codegraph.md).
    """
    if precision == "fast":
        return fastest_reduced_precision(n_patches, pair_minima_with_argmins, device, FIRST_PASS_FAST_MODES)
    if precision in ("bf16", "int8"):
        warnings.warn(f"precision {precision!r} in CoDeGraph's first pass: the graph maps' small distances are "
                      "recomputed in fp32, but a community at the Tukey fence can still flip and the metrics "
                      "can move by about a point (docs/codegraph.md; bf16x3 keeps them)", RuntimeWarning,
                      stacklevel=3)
    return precision


def recomputes_small_distances(exact_degrees: tuple[int, ...] | None, degree: int) -> bool:
    """Whether a reduced-precision first pass recomputes this degree's small distances in fp32."""
    return exact_degrees is None or degree in exact_degrees


def compute_first_pass(features: FeatureSet, lnamd_cfg: LNAMDConfig, engine: EngineConfig,
                       progress: bool | Progress = False, plan: ReferencePlan | None = None,
                       exact_degrees: tuple[int, ...] | None = None) -> FirstPass:
    """Minima and argmins for every layer and degree (the only full-cost step).

    progress: the run's Progress (one "first pass" bar, each map one unit) or a bool.
    plan: the reference lists to compare (None: the one ``engine`` asks for, engine/plan.py).
    exact_degrees: in bf16 or int8, the degrees whose small distances are recomputed in fp32
    (None: all). CoDeGraph asks for its graph degree only: the endurance ratios divide the
    small distances of those maps; the other maps enter MSM means (MuSc's cost of a reduced
    precision: under 0.03 points) and the dependency ratios, which is where bf16 still moved
    one bottle cell by 1.1 AP. On every map the recompute made bf16's first pass slower than
    fp32's (docs/codegraph.md, reduced precisions)."""
    minima: dict[tuple[int, int], PairMinima] = {}
    n_maps = features.layers.shape[1] * len(lnamd_cfg.degrees)
    plan = plan if plan is not None else reference_plan(features, engine)
    device = resolve_device(engine.device)
    precision = first_pass_precision(engine.precision, features.layers.shape[2], device)
    with Progress.of(progress).stage("first pass", n_maps, "maps") as bar:
        for li in range(features.layers.shape[1]):
            for r in lnamd_cfg.degrees:
                minima[(li, r)] = plan_minima(
                    lnamd(features.layers[:, li], features.grid, r, device=device),
                    plan,
                    budget_mb=budget_mb(engine),
                    precision=precision,
                    with_argmin=True,
                    progress=bar,
                    desc=f"first pass layer {li + 1} r={r}",
                    window=engine.window,
                    grid=features.window_grid,
                    executor=executor_for(engine),
                    exact_small=recomputes_small_distances(exact_degrees, r),
                )
    # a product that keeps its small distances (fp32, bf16x3), or a window (its kernels are
    # fp32 whatever the precision): every degree is exact
    exact = (None if exact_degrees is None or PRODUCTS[precision].small_distances_exact or engine.window is not None
             else tuple(exact_degrees))
    return FirstPass(features, tuple(lnamd_cfg.degrees), minima, plan, budget_mb(engine), engine.window, exact)
