"""Stage 3b (Algorithm 2): targeted patch filtering by dependency ratio (SPEC section 6.4).

A consistent-anomaly patch scores low only because its copies sit in the community c:
removing c makes its score jump. Normal patches keep alternatives outside c. The jump is
judged against the ratios of patches outside c, so no global threshold is tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

# score_fn(reference_images (N,) bool, excluded (N, M) bool) -> (N, M) MSM scores.
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Added to both scores of the ratio. Scores are means of distances of unit vectors, in
# [0, 2]. Both 0 (a patch with exact copies inside and outside c) gives ratio 1: nothing
# depends on c. A zero score that becomes positive without c gives a ratio of about
# score / 1e-6, i.e. "depends entirely on c", which is what identical copies of a defect
# are; mapping it to 1 instead would make exact duplicates unfilterable.
SCORE_EPS = 1e-6


@dataclass(frozen=True)
class CommunityFilterRecord:
    """What filtering did for one outlier community.

    images: the community's image indices. threshold: t_c (nan when skipped).
    n_excluded: patches newly excluded for this community. excluded_per_image: (|c|,)
    newly excluded per image of c. dependency: (N, M) float32 delta(x; c) for every patch
    (nan when skipped). skipped: why the community was not filtered, or None.
    """

    images: np.ndarray
    threshold: float
    n_excluded: int
    excluded_per_image: np.ndarray
    dependency: np.ndarray
    skipped: str | None = None


@dataclass(frozen=True)
class FilterResult:
    """excluded: (N, M) bool, patch positions removed from the references (all layers, all r)."""

    excluded: np.ndarray
    records: list[CommunityFilterRecord]


def dependency_ratio(score_without: np.ndarray, score_with: np.ndarray) -> np.ndarray:
    """delta = (s(x; B \\ c) + eps) / (s(x; B) + eps); equal scores (also inf = inf) give 1.

    A score that is infinite only without c gives +inf (no reference left outside c).
    """
    s_minus = np.asarray(score_without, dtype=np.float64)
    s_full = np.asarray(score_with, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        delta = (s_minus + SCORE_EPS) / (s_full + SCORE_EPS)
    delta = np.where(s_minus == s_full, 1.0, delta)
    return np.where(np.isnan(delta), 1.0, delta)


def _check_scores(scores: np.ndarray, n: int, m: int, what: str) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.shape != (n, m):
        raise ValueError(f"score_fn returned shape {scores.shape} for {what}; expected ({n}, {m})")
    if np.isnan(scores).any():
        raise ValueError(f"score_fn returned NaN for {what}")
    return scores


def look_alike_images(delta: np.ndarray, outside: np.ndarray, mask: np.ndarray, kappa: float) -> np.ndarray:
    """Images outside c that depend on c themselves: (N,) bool.

    An anomaly outside c that resembles c's defect was vouched for by c's copies too, so its
    patches' ratios sit among those of c's own defects, and a percentile over a population
    that holds them lands inside c's defects (MPDD metal_plate, whose defects look alike:
    half of a 35% group's defect patches stayed in). Such images stand out by their highest
    ratio: those above the Tukey fence Q3 + kappa IQR of the outside images' highest ratios.
    """
    highest = np.where(mask, np.minimum(delta, np.finfo(np.float64).max), -np.inf).max(axis=1)
    candidates = outside & mask.any(axis=1)
    out = np.zeros(delta.shape[0], dtype=bool)
    if candidates.sum() < 4:  # no quartiles to speak of
        return out
    q1, q3 = np.percentile(highest[candidates], [25.0, 75.0])
    out[candidates] = highest[candidates] > q3 + kappa * (q3 - q1)
    return out


@dataclass(frozen=True)
class DefectGate:
    """Keep the dependent patches that are not anomalous without c in the references.

    A transformed copy's normal regions depend on c as much as its defect (the copies are
    closer to each other than to any original) and leave with it, and then score high
    themselves: the look-alike fence's AUPRO cost (docs/codegraph.md). Only dependent patches
    whose score without c is above the ``percentile`` of the outside patches' scores without c
    are excluded, grown by ``radius`` grid cells (Chebyshev) inside the dependent set: a patch
    next to a defect carries it in its LNAMD-aggregated feature.

    grid: the patch grid of one image (h, w), or any lattice shape whose product is M.
    """

    percentile: float
    grid: tuple[int, ...]
    radius: int = 0

    def apply(self, dependent: np.ndarray, score_without: np.ndarray, population: np.ndarray) -> np.ndarray:
        """The excluded subset of ``dependent (N, M)``; ``population (N, M)`` sets the level."""
        n, m = dependent.shape
        if int(np.prod(self.grid)) != m:
            raise ValueError(f"defect gate grid {self.grid} has {int(np.prod(self.grid))} cells; M = {m}")
        if not population.any():
            return dependent
        level = float(np.percentile(np.minimum(score_without[population], np.finfo(np.float64).max),
                                    self.percentile))
        core = dependent & (score_without > level)
        if self.radius > 0:
            cube = np.ones((1,) + (2 * self.radius + 1,) * len(self.grid), dtype=bool)
            core = ndimage.binary_dilation(core.reshape((n,) + tuple(self.grid)), structure=cube).reshape(n, m)
        return core & dependent


def targeted_filtering(
    score_fn: ScoreFn,
    outlier_communities: Sequence[np.ndarray],
    n_images: int,
    n_patches: int,
    percentile: float,
    patch_mask: np.ndarray | None = None,
    joint: bool = False,
    look_alike_kappa: float | None = None,
    defect_gate: DefectGate | None = None,
) -> FilterResult:
    """Algorithm 2: visit the outlier communities in the given order, growing ``excluded``.

    For community c: delta(x; c) = s(x; B \\ c, excluded) / s(x; B, excluded); t_c = the
    ``percentile`` of delta over the patches of images outside c (restricted to
    ``patch_mask`` when given: void cubes are no reference population); patches of c with
    delta > t_c are excluded before the next community is scored. A community that holds
    every image leaves no outside population and is skipped.

    joint: judge every outlier community against the base set without *all* of them,
    once: delta(x) = s(x; B \\ union c) / s(x; B), threshold over the patches outside the
    union. When Leiden splits one repeated group into several communities, each part alone
    leaves the other parts' copies as references and its defects do not depend on it;
    together they do. Each community still gets its own record (same delta and threshold).

    look_alike_kappa: None keeps every outside patch in the threshold population (thesis); a
    value leaves out the images that depend on c themselves (``look_alike_images``).

    defect_gate: None excludes every patch of c above t_c (thesis); a gate keeps those that
    are not anomalous without c (``DefectGate``), judged on the same population.
    """
    n, m = int(n_images), int(n_patches)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    mask = np.ones((n, m), dtype=bool) if patch_mask is None else np.asarray(patch_mask, dtype=bool)
    if mask.shape != (n, m):
        raise ValueError(f"patch_mask must be ({n}, {m}), got {mask.shape}")
    if joint and len(outlier_communities) > 1:
        return _joint_filtering(score_fn, outlier_communities, n, m, percentile, mask, look_alike_kappa,
                                defect_gate)
    excluded = np.zeros((n, m), dtype=bool)
    all_refs = np.ones(n, dtype=bool)
    records: list[CommunityFilterRecord] = []
    finite_max = np.finfo(np.float64).max
    for members in outlier_communities:
        members = _check_members(members, n)
        inside = np.zeros(n, dtype=bool)
        inside[members] = True
        population = mask[~inside]
        if members.size == 0 or not population.any():
            reason = "empty community" if members.size == 0 else "no patch outside the community"
            records.append(
                CommunityFilterRecord(
                    images=members,
                    threshold=float("nan"),
                    n_excluded=0,
                    excluded_per_image=np.zeros(members.size, dtype=np.int64),
                    dependency=np.full((n, m), np.nan, dtype=np.float32),
                    skipped=reason,
                )
            )
            continue
        frozen = excluded.copy()  # score_fn must not see (or mutate) the live array
        s_full = _check_scores(score_fn(all_refs.copy(), frozen), n, m, "the full base set")
        s_minus = _check_scores(score_fn(~inside, frozen.copy()), n, m, "the base set without c")
        delta = dependency_ratio(s_minus, s_full)
        judges = ~inside
        if look_alike_kappa is not None:
            judges &= ~look_alike_images(delta, ~inside, mask, look_alike_kappa)
        # inf (no reference left outside c) stays the largest value without breaking the
        # interpolation of the percentile.
        outside = np.minimum(delta[judges][mask[judges]], finite_max)
        threshold = float(np.percentile(outside, percentile))
        new = np.zeros((n, m), dtype=bool)
        new[inside] = (delta[inside] > threshold) & mask[inside] & ~excluded[inside]
        if defect_gate is not None:
            new = defect_gate.apply(new, s_minus, judges[:, None] & mask)
        excluded |= new
        records.append(
            CommunityFilterRecord(
                images=members,
                threshold=threshold,
                n_excluded=int(new.sum()),
                excluded_per_image=new[members].sum(axis=1).astype(np.int64),
                dependency=delta.astype(np.float32),
            )
        )
    return FilterResult(excluded=excluded, records=records)


def _check_members(members: np.ndarray, n: int) -> np.ndarray:
    members = np.unique(np.asarray(members, dtype=np.int64))
    if members.size and (members.min() < 0 or members.max() >= n):
        raise ValueError(f"community holds image indices outside [0, {n}): {members.tolist()}")
    return members


def _joint_filtering(score_fn: ScoreFn, outlier_communities: Sequence[np.ndarray], n: int, m: int,
                     percentile: float, mask: np.ndarray, look_alike_kappa: float | None,
                     defect_gate: DefectGate | None) -> FilterResult:
    """One dependency ratio against the base set without every outlier community at once."""
    parts = [_check_members(c, n) for c in outlier_communities]
    union = np.unique(np.concatenate(parts))
    result = targeted_filtering(score_fn, [union], n, m, percentile, mask, look_alike_kappa=look_alike_kappa,
                                defect_gate=defect_gate)
    rec = result.records[0]
    excluded = result.excluded
    records = [
        CommunityFilterRecord(
            images=members,
            threshold=rec.threshold,
            n_excluded=int(excluded[members].sum()),
            excluded_per_image=excluded[members].sum(axis=1).astype(np.int64),
            dependency=rec.dependency,
            skipped=rec.skipped,
        )
        for members in parts
    ]
    return FilterResult(excluded=excluded, records=records)
