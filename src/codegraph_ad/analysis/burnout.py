"""Neighbour burnout: a consistent anomaly's growth curve breaks the power law at its burnout rank.

A patch whose anomaly repeats in g other images has g near-duplicates at ranks 1..g and
then a cliff: tau^(g) = ln(d^(g+1) / d^(g)) is far above what the similarity scaling law
predicts (thesis section 2.2.3). Grouping anomalous patches into consistent and
inconsistent ones follows SPEC section 12.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codegraph_ad.analysis.scaling import PowerLawFit


@dataclass(frozen=True)
class PatchGroups:
    """Anomalous patches split by how well a batch method (MuSc) already scores them.

    consistent: ``(N, M)`` bool, anomalous patches scored below ``threshold`` (they found
    look-alikes: deceptive matches); inconsistent: the other anomalous patches.
    threshold: the ``percentile`` of the normal patches' scores.
    """

    consistent: np.ndarray
    inconsistent: np.ndarray
    threshold: float
    percentile: float


def split_anomalous_patches(
    anomalous: np.ndarray, normal: np.ndarray, scores: np.ndarray, percentile: float = 80.0
) -> PatchGroups:
    """Consistent = anomalous patch whose score is below the ``percentile`` of normal scores.

    anomalous, normal: ``(N, M)`` bool; scores: ``(N, M)`` MuSc patch scores.
    """
    anomalous = np.asarray(anomalous, dtype=bool)
    normal = np.asarray(normal, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if not (anomalous.shape == normal.shape == scores.shape):
        raise ValueError(
            f"anomalous {anomalous.shape}, normal {normal.shape} and scores {scores.shape} must share one shape"
        )
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if not normal.any():
        raise ValueError("no normal patch: the consistency threshold is undefined")
    threshold = float(np.percentile(scores[normal], percentile))
    low = scores < threshold
    return PatchGroups(anomalous & low, anomalous & ~low, threshold, float(percentile))


def burnout_excess(ranks: np.ndarray, curve: np.ndarray, fit: PowerLawFit) -> np.ndarray:
    """ln(curve / power-law prediction) per rank: how far a curve rises above the normal law.

    NaN where the curve is not positive and finite.
    """
    curve = np.asarray(curve, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(curve) - np.log(fit.predict(ranks))
    out[~np.isfinite(out)] = np.nan
    return out


def burnout_rank(ranks: np.ndarray, curve: np.ndarray, fit: PowerLawFit) -> int | None:
    """The rank where ``curve`` rises most above the normal patches' power law, searched
    over the ranks the fit covers (beyond them normal patches leave the law too); None if
    the curve has no finite value there."""
    ranks = np.asarray(ranks)
    excess = burnout_excess(ranks, curve, fit)
    excess[(ranks < fit.rank_min) | (ranks > fit.rank_max)] = np.nan
    if not np.isfinite(excess).any():
        return None
    return int(ranks[int(np.nanargmax(excess))])
