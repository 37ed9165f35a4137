"""Similarity scaling: how fast the mutual similarity vector grows with neighbour rank.

For a patch x with sorted per-image distances d^(1) <= ... <= d^(N-1), the log growth rate
is tau^(i)(x) = ln(d^(i+1)(x) / d^(i)(x)) (SPEC section 3). For normal patches its mean
over patches decays with rank as a power law, tau^(i) ~ c * i^b with b close to -1
(thesis section 2.2.2): if the distances near x have P(d < r) ~ r^alpha, the log-spacings
of the order statistics are independent exponentials of rate alpha * i (Renyi), so
E[tau^(i)] = 1 / (alpha * i). These functions measure that curve and fit the power law.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def sorted_similarity_vectors(dist: np.ndarray, select: np.ndarray | None = None) -> np.ndarray:
    """Mutual similarity vectors ``(P, N-1)`` of the selected patches, ascending.

    dist: ``(N, N, M)`` per-pair minima with ``dist[q, q] = inf`` (the engine's layout).
    select: ``(N, M)`` bool, the patches to keep (all when None); rows come in (image,
    patch) order.
    """
    dist = np.asarray(dist, dtype=np.float32)
    if dist.ndim != 3 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be (N, N, M) per-pair minima, got shape {dist.shape}")
    n, _, m = dist.shape
    per_patch = dist.transpose(0, 2, 1)  # (N, M, N): [q, m, j]
    if select is not None:
        select = np.asarray(select, dtype=bool)
        if select.shape != (n, m):
            raise ValueError(f"select must be (N, M) = {(n, m)}, got shape {select.shape}")
        rows = per_patch[select]
    else:
        rows = per_patch.reshape(n * m, n)
    # The image itself sits at +inf and sorts last; drop that column.
    return np.sort(rows, axis=1)[:, : n - 1]


def log_growth_rates(sorted_d: np.ndarray) -> np.ndarray:
    """tau ``(P, K-1)`` from ascending distances ``(P, K)``; column i-1 holds rank i.

    A zero or non-finite distance makes ln undefined: those entries are NaN, so that an
    exact duplicate image (distance 0) drops out of the means instead of making them inf.
    """
    d = np.asarray(sorted_d, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 2:
        raise ValueError(f"sorted_d must be (P, K) with K >= 2, got shape {d.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.log(d[:, 1:]) - np.log(d[:, :-1])
    tau[~np.isfinite(tau)] = np.nan
    return tau


def mean_growth_curve(tau: np.ndarray) -> np.ndarray:
    """Mean log growth rate per rank ``(K-1,)``, ignoring NaN; NaN where a rank has no value."""
    tau = np.asarray(tau, dtype=np.float64)
    counts = np.sum(np.isfinite(tau), axis=0)
    sums = np.nansum(tau, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares line in log-log space: ln y = ln(prefactor) + exponent * ln(rank).

    exponent: the slope b of y ~ prefactor * rank^b (about -1 for the scaling law).
    r2: coefficient of determination of the fit in log-log space.
    rank_min, rank_max: the rank range the fit used; n_points: how many ranks had y > 0.
    """

    exponent: float
    prefactor: float
    r2: float
    rank_min: int
    rank_max: int
    n_points: int

    def predict(self, ranks: np.ndarray) -> np.ndarray:
        return self.prefactor * np.asarray(ranks, dtype=np.float64) ** self.exponent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_power_law(
    ranks: np.ndarray, values: np.ndarray, rank_min: int = 1, rank_max: int | None = None
) -> PowerLawFit | None:
    """OLS fit of ln(values) on ln(ranks) over ``rank_min <= rank <= rank_max``.

    Non-positive or non-finite values are left out (ln is undefined there). Returns None
    when fewer than 2 points remain: no line can be fitted.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if ranks.shape != values.shape:
        raise ValueError(f"ranks {ranks.shape} and values {values.shape} differ in shape")
    hi = np.inf if rank_max is None else rank_max
    keep = (ranks >= rank_min) & (ranks <= hi) & np.isfinite(values) & (values > 0) & (ranks > 0)
    if keep.sum() < 2:
        return None
    x, y = np.log(ranks[keep]), np.log(values[keep])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - float(np.sum(resid**2) / total) if total > 0 else 1.0
    return PowerLawFit(
        exponent=float(slope),
        prefactor=float(np.exp(intercept)),
        r2=r2,
        rank_min=int(ranks[keep].min()),
        rank_max=int(ranks[keep].max()),
        n_points=int(keep.sum()),
    )


def growth_curve(sorted_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks 1..K-1, mean tau per rank) of ascending vectors ``sorted_d: (P, K)``.

    With no patch (P = 0) the curve is all NaN.
    """
    n_rank = sorted_d.shape[1] - 1
    ranks = np.arange(1, n_rank + 1)
    if sorted_d.shape[0] == 0 or n_rank < 1:
        return ranks, np.full(n_rank, np.nan)
    return ranks, mean_growth_curve(log_growth_rates(sorted_d))
