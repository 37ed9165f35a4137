"""Stage 2 (Algorithm 1): coverage-based link selection and the anomaly similarity graph.

Definition (SPEC section 5): sort the candidate links (x, i) by zeta~ ascending (ties by
flat index (q, m, i), i.e. a stable sort), add them ``links_per_batch`` at a time, and
stop after the first batch whose graph covers ``target_coverage`` of the images.

Coverage only grows, and a node's degree becomes positive at the first link that touches
it. So the batch loop is computed exactly without running it: record each image's first-
touch position in the sorted order, find where the required count of images is reached,
and round up to the end of that batch. The order itself is produced lazily: the smallest
keys are partitioned off and sorted in geometrically growing prefixes, so a run that
stops after a few thousand links never sorts the tens of millions of candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinkSelection:
    """The suspicious-link set L_s and the graph G it builds.

    weights: (N, N) float64, symmetric, zero diagonal; edge (q, t) counts the per-layer
        connections of the selected links between images q and t.
    n_links: links in L_s (a whole number of batches, or all candidates).
    coverage: fraction of images with degree > 0 at the end.
    coverage_history: (n_batches,) coverage after each batch.
    links_per_batch: the batch size used.
    n_candidates: candidate links (patches in ``patch_mask`` times k-1 ranks).
    zeta_cutoff: zeta~ of the last selected link (nan when none selected).
    link_image, link_patch, link_rank: (n_links,) int32, image q, patch m and 1-based
        rank i of each selected link, in selection order.
    reached_target: whether coverage >= target (false when candidates ran out first).
    """

    weights: np.ndarray
    n_links: int
    coverage: float
    coverage_history: np.ndarray
    links_per_batch: int
    n_candidates: int
    zeta_cutoff: float
    link_image: np.ndarray
    link_patch: np.ndarray
    link_rank: np.ndarray
    reached_target: bool


def required_touched(n_images: int, target_coverage: float) -> int:
    """Smallest image count c with c / N >= target, with the same float test as the loop."""
    counts = np.arange(n_images + 1)
    ok = counts / n_images >= target_coverage
    return int(np.argmax(ok)) if ok.any() else n_images + 1


def _sort_keys(zeta: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, int]:
    """uint64 keys (float32 bits << 32 | flat index): unique, so ordering them is a stable
    argsort by value, and a partition of them is exact (no ties at the boundary)."""
    flat = zeta.reshape(-1) + np.float32(0.0)  # -0.0 -> +0.0 so bit order = value order
    if flat.size >= 2**32:
        raise ValueError(f"{flat.size} candidate links exceed the 2**32 the sort keys can index")
    finite = np.isfinite(flat)
    if not finite.all() or valid is not None:
        idx = np.flatnonzero(finite if valid is None else finite & valid.reshape(-1))
        vals = flat[idx]
    else:
        idx = np.arange(flat.size)
        vals = flat
    keys = vals.view(np.uint32).astype(np.uint64) << np.uint64(32)
    keys |= idx.astype(np.uint64)
    return keys, int(keys.size)


def select_links(
    zeta: np.ndarray,
    rank_images: np.ndarray,
    target_coverage: float,
    links_per_batch: int | None = None,
    patch_mask: np.ndarray | None = None,
) -> LinkSelection:
    """Algorithm 1 on weighted endurance ratios ``zeta: (N, M, k-1)``.

    rank_images: (L, N, M, R >= k-1), the per-layer image at each rank; a link (x, i)
    adds 1 to edge (q, rank_images[l, q, m, i-1]) for each layer l. patch_mask: (N, M)
    bool, query patches that may form links (e.g. non-void cubes); None means all.
    Non-finite ratios never form links. links_per_batch None means N.
    """
    zeta = np.asarray(zeta, dtype=np.float32)
    if zeta.ndim != 3:
        raise ValueError(f"zeta must be (N, M, k-1), got shape {zeta.shape}")
    n, m, k1 = zeta.shape
    rank_images = np.asarray(rank_images)
    n_layers = rank_images.shape[0] if rank_images.ndim else 0
    if rank_images.ndim != 4 or rank_images.shape[1:3] != (n, m) or rank_images.shape[3] < k1:
        raise ValueError(
            f"rank_images must be (L, {n}, {m}, R >= {k1}) to match zeta, got {rank_images.shape}"
        )
    if np.isnan(zeta).any() or (zeta < 0).any():
        raise ValueError("zeta must be >= 0 and free of NaN (see endurance_ratios)")
    if not 0.0 < target_coverage <= 1.0:
        raise ValueError(f"target_coverage must be in (0, 1], got {target_coverage}")
    batch = n if links_per_batch is None else int(links_per_batch)
    if batch < 1:
        raise ValueError(f"links_per_batch must be >= 1 or None, got {links_per_batch}")
    if patch_mask is not None:
        patch_mask = np.asarray(patch_mask, dtype=bool)
        if patch_mask.shape != (n, m):
            raise ValueError(f"patch_mask must be ({n}, {m}), got {patch_mask.shape}")
        valid = np.broadcast_to(patch_mask[:, :, None], zeta.shape)
    else:
        valid = None

    keys, n_cand = _sort_keys(zeta, valid)
    needed = required_touched(n, target_coverage)
    never = np.iinfo(np.int64).max
    first_touch = np.full(n, never, dtype=np.int64)
    lo = 0
    size = min(n_cand, max(16 * batch, 64 * n))
    chunks: list[np.ndarray] = []  # flat link indices, in order
    n_links = 0
    while lo < n_cand:
        if size < n_cand:
            keys[lo:].partition(size - lo - 1)  # smallest (size - lo) remaining keys first
        chunk = np.sort(keys[lo:size])
        flat_idx = (chunk & np.uint64(0xFFFFFFFF)).astype(np.int64)
        chunks.append(flat_idx)
        q, pm, ri = np.unravel_index(flat_idx, (n, m, k1))
        nodes = np.empty((flat_idx.size, n_layers + 1), dtype=np.int64)
        nodes[:, 0] = q
        nodes[:, 1:] = rank_images[:, q, pm, ri].T
        uniq, first = np.unique(nodes.reshape(-1), return_index=True)
        pos = lo + first // (n_layers + 1)
        first_touch[uniq] = np.minimum(first_touch[uniq], pos)
        touched = np.sort(first_touch[first_touch != never])
        lo = size
        if touched.size >= needed:
            p_star = int(touched[needed - 1])  # 0-based link at which the target is met
            n_links = min(n_cand, math.ceil((p_star + 1) / batch) * batch)
            if n_links <= size:
                break
            size = min(n_cand, max(n_links, 4 * size))
        else:
            n_links = n_cand
            size = min(n_cand, 4 * size)

    order = np.concatenate(chunks)[:n_links] if chunks else np.zeros(0, dtype=np.int64)
    q, pm, ri = np.unravel_index(order, (n, m, k1))
    targets = rank_images[:, q, pm, ri].astype(np.int64)  # (L, n_links)
    pair = (q[None, :] * n + targets).reshape(-1)
    a = np.bincount(pair, minlength=n * n).reshape(n, n).astype(np.float64)
    weights = a + a.T

    ft = np.sort(first_touch)
    n_batches = math.ceil(n_links / batch)
    ends = np.minimum(np.arange(1, n_batches + 1, dtype=np.int64) * batch, n_links)
    history = np.searchsorted(ft, ends, side="left") / n  # touched before each batch end
    coverage = float(history[-1]) if n_batches else 0.0
    cutoff = float(zeta.reshape(-1)[order[-1]]) if n_links else math.nan
    return LinkSelection(
        weights=weights,
        n_links=int(n_links),
        coverage=coverage,
        coverage_history=history.astype(np.float64),
        links_per_batch=batch,
        n_candidates=n_cand,
        zeta_cutoff=cutoff,
        link_image=q.astype(np.int32),
        link_patch=pm.astype(np.int32),
        link_rank=(ri + 1).astype(np.int32),
        reached_target=bool(coverage >= target_coverage),
    )
