"""Tail of the similarity 1/d: Hill estimates and the Beta(alpha, 1) model of normalised distances.

Thesis chapter 4: if the patches near x fill a locally d-dimensional region, the number of
patches within radius r grows like r^d, so the similarity S = 1/d has a regularly varying
tail P(S > s) ~ s^(-alpha) with alpha = d (the Hill plot shows a plateau at alpha), and the
normalised distance u = d / d0 below a scale d0 in that region has CDF u^alpha on [0, 1],
i.e. Beta(alpha, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def smallest_positive(dist: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest positive distances of each row of ``dist: (P, n)``, ascending ``(P, k)``.

    Zero distances (exact duplicates, S = inf) are left out; rows with fewer than ``k``
    positive values are padded with NaN.
    """
    d = np.array(dist, dtype=np.float64, ndmin=2)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    d[~(d > 0) | ~np.isfinite(d)] = np.inf
    k_eff = min(k, d.shape[1])
    part = np.partition(d, k_eff - 1, axis=1)[:, :k_eff] if k_eff < d.shape[1] else d
    out = np.sort(part, axis=1)
    out[~np.isfinite(out)] = np.nan
    if k_eff < k:
        out = np.concatenate([out, np.full((out.shape[0], k - k_eff), np.nan)], axis=1)
    return out


def hill_estimates(sorted_d: np.ndarray) -> np.ndarray:
    """Hill estimates of the tail index of S = 1/d, ``(P, K-1)`` for k = 1..K-1.

    sorted_d: ``(P, K)`` ascending positive distances (the K largest similarities).
    alpha_hat(k) = 1 / H_k with H_k = mean_{j<=k} ln(S_(j) / S_(k+1))
                                    = ln d_(k+1) - mean_{j<=k} ln d_(j).
    NaN where H_k is not positive and finite (ties, padding).
    """
    d = np.array(sorted_d, dtype=np.float64, ndmin=2)
    if d.shape[1] < 2:
        raise ValueError(f"sorted_d needs at least 2 columns, got shape {d.shape}")
    logs = np.log(d)
    k = np.arange(1, d.shape[1])
    h = logs[:, 1:] - np.cumsum(logs[:, :-1], axis=1) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 / h
    alpha[~(h > 0) | ~np.isfinite(alpha)] = np.nan
    return alpha


@dataclass(frozen=True)
class HillSummary:
    """Hill plot of many reference patches: per-k median and quartiles, and a plateau value.

    k: ``(K,)`` numbers of order statistics; median, q25, q75: ``(K,)`` over references
    (the median, not the mean: 1/H_k explodes for a reference whose first neighbours tie).
    plateau: median of the median curve over ``k_lo <= k <= k_hi`` (the stable middle of a
    Hill plot: small k is noise-dominated, large k leaves the tail).
    """

    k: np.ndarray
    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    plateau: float | None
    k_lo: int
    k_hi: int


def summarize_hill(alpha: np.ndarray, plateau_range: tuple[float, float]) -> HillSummary:
    """Summarise ``alpha: (P, K)`` Hill curves; ``plateau_range`` as fractions of K."""
    alpha = np.array(alpha, dtype=np.float64, ndmin=2)
    n_k = alpha.shape[1]
    lo_f, hi_f = plateau_range
    if not 0.0 <= lo_f < hi_f <= 1.0:
        raise ValueError(f"plateau_range must satisfy 0 <= lo < hi <= 1, got {plateau_range}")
    k = np.arange(1, n_k + 1)
    quart = np.full((3, n_k), np.nan)
    cols = np.isfinite(alpha).any(axis=0)
    if cols.any():
        quart[:, cols] = np.nanpercentile(alpha[:, cols], [25, 50, 75], axis=0)
    k_lo = max(1, int(np.ceil(lo_f * n_k)))
    k_hi = max(k_lo, int(np.floor(hi_f * n_k)))
    window = quart[1, k_lo - 1 : k_hi]
    window = window[np.isfinite(window)]
    plateau = float(np.median(window)) if window.size else None
    return HillSummary(k, quart[1], quart[0], quart[2], plateau, k_lo, k_hi)


def normalised_distances(sorted_d: np.ndarray, k: int) -> np.ndarray:
    """u_i = d^(i) / d^(k) for i < k, ``(P, k-1)``: the endurance ratios of SPEC section 4.

    Given d^(k), the k-1 smaller distances of a Beta-tailed sample are i.i.d. Beta(alpha, 1)
    after this normalisation, which makes them the natural Q-Q sample. NaN where d^(k) is
    not positive.
    """
    d = np.array(sorted_d, dtype=np.float64, ndmin=2)
    if not 2 <= k <= d.shape[1]:
        raise ValueError(f"k must be in [2, {d.shape[1]}], got {k}")
    ref = d[:, k - 1 : k]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = d[:, : k - 1] / ref
    u[~np.isfinite(u)] = np.nan
    return u


def fit_beta_alpha(u: np.ndarray) -> float | None:
    """Maximum-likelihood alpha of Beta(alpha, 1) (density alpha u^(alpha-1) on (0, 1]).

    alpha_hat = n / sum(-ln u). Values outside (0, 1] and NaN are left out; None when no
    value remains or all equal 1 (alpha unbounded).
    """
    u = np.asarray(u, dtype=np.float64).ravel()
    u = u[np.isfinite(u) & (u > 0) & (u <= 1)]
    total = float(-np.log(u).sum()) if u.size else 0.0
    if u.size == 0 or total <= 0:
        return None
    return u.size / total


@dataclass(frozen=True)
class BetaQQ:
    """Q-Q points of a sample against Beta(alpha, 1) and the Kolmogorov-Smirnov distance.

    theoretical, empirical: ``(n_points,)`` quantiles at levels p = (j - 0.5) / n_points.
    ks: sup |F_empirical(u) - u^alpha| over the sample.
    """

    theoretical: np.ndarray
    empirical: np.ndarray
    ks: float
    n: int


def beta_qq(u: np.ndarray, alpha: float, n_points: int = 100) -> BetaQQ:
    """Compare ``u`` (values in (0, 1]) with Beta(alpha, 1), whose quantile is p^(1/alpha)."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    u = np.asarray(u, dtype=np.float64).ravel()
    u = np.sort(u[np.isfinite(u) & (u > 0) & (u <= 1)])
    if u.size == 0:
        raise ValueError("no value in (0, 1] to compare with Beta(alpha, 1)")
    p = (np.arange(1, n_points + 1) - 0.5) / n_points
    theoretical = p ** (1.0 / alpha)
    empirical = np.quantile(u, p)
    cdf = u**alpha
    n = u.size
    ks = float(max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n)))
    return BetaQQ(theoretical, empirical, ks, int(n))
