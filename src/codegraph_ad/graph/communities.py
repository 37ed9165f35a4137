"""Stage 3a: Leiden CPM communities and Tukey outliers by density (SPEC section 6.1-6.3).

CPM rather than modularity: modularity's degree null model splits a dense anomaly clique
with a few weak internal edges; CPM's absolute resolution keeps it whole (thesis 3.3.3).

The graph is read as a scipy sparse matrix (a dense array is converted): every step works
on its stored edges, so memory follows the edge count, not N^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import igraph
import leidenalg
import numpy as np
from scipy import sparse


# Below four values Tukey's Q3 is interpolated from the largest one, so a candidate would set
# its own fence; a stricter size bound then falls back to pairs and larger (the SPEC's rule).
MIN_TUKEY_COMMUNITIES = 4


@dataclass(frozen=True)
class CommunityResult:
    """Communities of the anomaly similarity graph and the outliers among them.

    membership: (N,) int, community id of each image; ids index ``communities``.
    communities: image indices of each community (ids in leidenalg's order: size desc).
    sizes: (C,) int. densities: (C,) float, rho(c) for |c| >= 2, 0.0 for singletons.
    eligible: (C,) bool, |c| >= min_size (only these enter the quartiles and can be outliers).
    min_size: the size bound applied: the requested one, or 2 when fewer than
        ``MIN_TUKEY_COMMUNITIES`` communities reach it.
    resolution: the CPM gamma used (scale x percentile of positive weights; 0 if none).
    q1, q3, iqr, fence: Tukey statistics over eligible densities; with no eligible
        community q1 = q3 = iqr = 0 and fence = inf.
    outliers: ids of outlier communities (rho > fence), densest first.
    """

    membership: np.ndarray
    communities: list[np.ndarray]
    sizes: np.ndarray
    densities: np.ndarray
    eligible: np.ndarray
    min_size: int
    resolution: float
    q1: float
    q3: float
    iqr: float
    fence: float
    outliers: list[int]

    @property
    def outlier_communities(self) -> list[np.ndarray]:
        """Image indices of each outlier community, densest first."""
        return [self.communities[c] for c in self.outliers]


Weights = np.ndarray | sparse.sparray | sparse.spmatrix


def as_sparse(weights: Weights) -> sparse.csr_array:
    """``weights`` as a canonical float64 csr_array (sorted indices, duplicates summed,
    explicit zeros dropped); a dense (N, N) input is converted, a sparse one is not densified."""
    if sparse.issparse(weights):
        out = sparse.csr_array(weights, dtype=np.float64, copy=True)
    else:
        dense = np.asarray(weights, dtype=np.float64)
        if dense.ndim != 2:
            raise ValueError(f"weights must be a square (N, N) matrix, got shape {dense.shape}")
        out = sparse.csr_array(dense)
    if out.shape[0] != out.shape[1]:
        raise ValueError(f"weights must be a square (N, N) matrix, got shape {out.shape}")
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def upper_edges(weights: Weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, w) of the positive entries with i < j, row-major (i, then j ascending): the
    order ``np.triu_indices`` gives, so graphs built from it match the dense code's."""
    w = as_sparse(weights).tocoo()  # canonical csr -> row-major, columns sorted
    keep = (w.row < w.col) & (w.data > 0)
    return w.row[keep].astype(np.int64), w.col[keep].astype(np.int64), w.data[keep]


def cpm_resolution(weights: Weights, percentile: float = 25.0) -> float:
    """gamma = the given percentile of the positive edge weights (upper triangle); 0 if none."""
    w = upper_edges(weights)[2]
    return float(np.percentile(w, percentile)) if w.size else 0.0


def leiden_cpm(weights: Weights, resolution: float, seed: int = 0) -> np.ndarray:
    """Membership (N,) from leidenalg's CPM on the weighted undirected graph.

    Runs to convergence (n_iterations=-1) so the partition does not depend on an
    iteration budget; a graph without edges gives singletons without calling Leiden.
    """
    weights = as_sparse(weights)
    n = weights.shape[0]
    iu, ju, w = upper_edges(weights)
    if not w.size:
        return np.arange(n, dtype=np.int64)
    graph = igraph.Graph(n=n, edges=np.column_stack([iu, ju]).tolist(), directed=False)
    graph.es["weight"] = w.astype(float).tolist()
    partition = leidenalg.find_partition(
        graph,
        leidenalg.CPMVertexPartition,
        weights="weight",
        resolution_parameter=float(resolution),
        n_iterations=-1,
        seed=int(seed),
    )
    return np.asarray(partition.membership, dtype=np.int64)


DENSITIES = ("per_pair", "per_member")


def community_densities(weights: Weights, communities: list[np.ndarray], per: str = "per_pair") -> np.ndarray:
    """Internal weight of each community, per image pair (SPEC) or per member; 0.0 for singletons.

    per_pair: rho(c) = W_in / (|c|(|c|-1)/2), the SPEC's reconstruction. Each image of a
    repeated group sends about the same number of links into the group whatever its size,
    so this falls as 1/|c|: a large group scores below a dense pair.
    per_member: rho(c) = W_in / |c|, the mean weight an image has inside its community
    (half its internal weighted degree): the same for a group of 5 or 50 such images.
    """
    if per not in DENSITIES:
        raise ValueError(f"density must be one of {DENSITIES}, got {per!r}")
    w = as_sparse(weights).tocoo()
    members = [np.asarray(c, dtype=np.int64).reshape(-1) for c in communities]
    sizes = np.array([c.size for c in members], dtype=np.int64)
    label = np.full(w.shape[0], -1, dtype=np.int64)
    flat = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
    label[flat] = np.repeat(np.arange(len(members)), sizes)
    if np.count_nonzero(label >= 0) != flat.size:
        raise ValueError("communities must be disjoint")
    inside = (label[w.row] == label[w.col]) & (label[w.row] >= 0)
    # all stored entries inside each community, both triangles: symmetric, zero diagonal
    internal = np.bincount(label[w.row[inside]], weights=w.data[inside], minlength=len(members)) / 2.0
    dens = np.zeros(len(members), dtype=np.float64)
    big = sizes >= 2
    s = sizes[big].astype(np.float64)
    dens[big] = internal[big] / (s * (s - 1) / 2.0 if per == "per_pair" else s)
    return dens


def tukey_fence(values: np.ndarray, kappa: float) -> tuple[float, float, float, float]:
    """(Q1, Q3, IQR, Q3 + kappa IQR) with numpy's linear quantiles; empty -> (0, 0, 0, inf)."""
    if values.size == 0:
        return 0.0, 0.0, 0.0, float("inf")
    q1, q3 = (float(v) for v in np.percentile(values, [25.0, 75.0]))
    iqr = q3 - q1
    return q1, q3, iqr, q3 + kappa * iqr


def leave_one_out_outliers(densities: np.ndarray, eligible: np.ndarray, kappa: float) -> np.ndarray:
    """Eligible communities denser than Q3 + kappa IQR of the *other* eligible communities.

    With few communities a candidate's own density sets Q3 (with 2 or 3 values Tukey can
    never flag anything), and several anomaly communities lift each other's fence; judged
    against the others only, neither happens. Needs two others: with one, any community
    denser than the only other would be flagged.
    """
    idx = np.flatnonzero(eligible)
    out = np.zeros(densities.shape, dtype=bool)
    if idx.size < 3:
        return out
    for c in idx:
        others = densities[idx[idx != c]]
        out[c] = densities[c] > tukey_fence(others, kappa)[3]
    return out


def _check_graph(w: sparse.csr_array) -> None:
    """Symmetric within ``np.allclose`` tolerances, finite and non-negative, on the stored
    entries only (the implicit zeros satisfy all three)."""
    if not np.isfinite(w.data).all() or (w.data < 0).any():
        raise ValueError("weights must be symmetric, finite and non-negative")
    wt = sparse.csr_array(w.T)
    diff = (w - wt).tocoo()
    other = np.asarray(wt[diff.row, diff.col]).reshape(-1) if diff.nnz else np.zeros(0)
    if not (np.abs(diff.data) <= 1e-8 + 1e-5 * np.abs(other)).all():
        raise ValueError("weights must be symmetric, finite and non-negative")


def _without_diagonal(w: sparse.csr_array) -> sparse.csr_array:
    """Copy of ``w`` with its stored diagonal entries removed (self-edges carry no pair)."""
    coo = w.tocoo()
    keep = coo.row != coo.col
    out = sparse.csr_array((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=w.shape)
    out.sum_duplicates()
    return out


def detect_communities(weights: Weights, kappa: float = 3.0, seed: int = 0,
                       min_size: int = 2, density: str = "per_pair",
                       resolution_percentile: float = 25.0, leave_one_out: bool = False,
                       resolution_scale: float = 1.0) -> CommunityResult:
    """Leiden CPM partition, densities, and the Tukey outlier communities of ``weights: (N, N)``,
    a scipy sparse matrix (e.g. ``LinkSelection.weights``) or a dense array (converted).

    A single eligible community, or equal densities, give IQR 0 and fence = Q3: nothing is
    strictly above it, so there is no outlier. Outliers are returned densest first, the
    order in which targeted filtering visits them.
    min_size: smallest community that enters the quartiles and may be flagged (SPEC: 2).
    A pair's density is one link count, not an average over many pairs, so with few
    communities one dense pair can lift Q3 and the IQR over a real anomaly group; 3 keeps
    pairs out of both (``GraphConfig.min_community_size``). When fewer than
    ``MIN_TUKEY_COMMUNITIES`` communities reach it, every community of 2 or more is used.
    density: how rho(c) is normalised (see :func:`community_densities`).
    resolution_percentile: the CPM gamma is this percentile of the positive edge weights.
    resolution_scale: multiplies that gamma. Link counts are integers, so no percentile
    gives a gamma below the smallest count, 1 link per pair; a scale below 1 lets pieces
    joined by fewer links per pair merge.
    leave_one_out: each community is judged against the quartiles of the others
    (:func:`leave_one_out_outliers`); q1/q3/fence still describe all eligible communities.
    """
    graph = as_sparse(weights)
    _check_graph(graph)
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    if min_size < 2:
        raise ValueError(f"min_size must be >= 2 (a singleton has no density), got {min_size}")
    if resolution_scale <= 0:
        raise ValueError(f"resolution_scale must be > 0, got {resolution_scale}")
    graph = _without_diagonal(graph)
    gamma = resolution_scale * cpm_resolution(graph, resolution_percentile)
    membership = leiden_cpm(graph, gamma, seed)
    n_comm = int(membership.max()) + 1 if membership.size else 0
    by_community = np.argsort(membership, kind="stable")  # ascending image ids within each
    communities = np.split(by_community, np.cumsum(np.bincount(membership, minlength=n_comm))[:-1])
    sizes = np.array([c.size for c in communities], dtype=np.int64)
    densities = community_densities(graph, communities, density)
    if min_size > 2 and np.count_nonzero(sizes >= min_size) < MIN_TUKEY_COMMUNITIES:
        min_size = 2
    eligible = sizes >= min_size
    q1, q3, iqr, fence = tukey_fence(densities[eligible], kappa)
    above = leave_one_out_outliers(densities, eligible, kappa) if leave_one_out else densities > fence
    flagged = np.flatnonzero(eligible & above)
    outliers = [int(c) for c in flagged[np.argsort(-densities[flagged], kind="stable")]]
    return CommunityResult(
        membership=membership,
        communities=communities,
        sizes=sizes,
        densities=densities,
        eligible=eligible,
        min_size=int(min_size),
        resolution=gamma,
        q1=q1,
        q3=q3,
        iqr=iqr,
        fence=fence,
        outliers=outliers,
    )
