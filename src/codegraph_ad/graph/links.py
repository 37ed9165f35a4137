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

The graph is a sparse matrix: it holds at most 2 L n_links entries, where a dense (N, N)
array would hold 10^10 at N = 10^5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class LinkSelection:
    """The suspicious-link set L_s and the graph G it builds.

    weights: scipy.sparse.csr_array (N, N) float64, symmetric, canonical (sorted indices,
        duplicates summed); edge (q, t) counts the per-layer connections of the selected
        links between images q and t. The diagonal is empty unless ``rank_images`` names a
        query image among its own ranks (each such link then adds 2, as a + a.T would).
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

    weights: sparse.csr_array
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


# Flat candidate positions the low 32 bits of a uint64 sort key can hold; above it the
# candidates are ordered by value comparisons instead (same order, slower rounds).
KEY_INDEX_LIMIT = 2**32


# Candidates whose index bits are set at a time (8 MB of uint64 temporaries).
_KEY_SLICE = 1 << 20


class _KeyOrder:
    """Candidates in (value, flat index) order, a prefix at a time, from uint64 keys
    (float32 bits << 32 | flat index): unique, so ordering them is a stable argsort by
    value, and a partition of them is exact (no ties at the boundary)."""

    def __init__(self, flat: np.ndarray, valid: np.ndarray | None) -> None:
        finite = np.isfinite(flat)
        idx = None
        if not finite.all() or valid is not None:
            idx = np.flatnonzero(finite if valid is None else finite & valid)
            vals = flat[idx]
        else:
            vals = flat
        del finite
        # built in place, a slice of indices at a time: at N = 1,000, M = 256, k = 51 each
        # 8-byte temporary of the one-line form is 100 MB, and they were the run's peak
        keys = np.empty(vals.size, dtype=np.uint64)
        keys[:] = vals.view(np.uint32)
        keys <<= np.uint64(32)
        for s in range(0, keys.size, _KEY_SLICE):
            e = min(s + _KEY_SLICE, keys.size)
            keys[s:e] |= np.arange(s, e, dtype=np.uint64) if idx is None else idx[s:e].astype(np.uint64)
        self.keys = keys
        self.n_candidates = int(keys.size)
        self._lo = 0

    def next_chunk(self, count: int) -> np.ndarray:
        """Flat indices of the next ``count`` candidates (fewer at the end), in order."""
        lo, size = self._lo, min(self._lo + count, self.n_candidates)
        if size <= lo:
            return np.zeros(0, dtype=np.int64)
        if size < self.n_candidates:
            self.keys[lo:].partition(size - lo - 1)  # smallest (size - lo) remaining keys first
        chunk = np.sort(self.keys[lo:size])
        self._lo = size
        return (chunk & np.uint64(0xFFFFFFFF)).astype(np.int64)


class _ValueOrder:
    """The same order as :class:`_KeyOrder` for any number of candidates, without keys.

    Non-candidates are set to +inf in the float32 copy it is given (and owns), so a position's flat index is its
    place in the array and ties need no index array. Each round takes the remaining
    candidates (after the last one taken, in (value, index) order), finds the value of the
    ``count``-th smallest by partition, and orders everything up to it, ties included, by
    value and then index; a pass over the array per round, and rounds grow geometrically.
    """

    def __init__(self, flat: np.ndarray, valid: np.ndarray | None) -> None:
        values = flat  # owned: the caller passes a fresh array
        if valid is not None:
            values[~valid] = np.inf
        self.values = values
        self.n_candidates = int(np.count_nonzero(np.isfinite(values)))
        self._taken = 0
        self._last: tuple[np.float32, int] | None = None

    def next_chunk(self, count: int) -> np.ndarray:
        """Flat indices of the next ``count`` candidates (fewer at the end), in order."""
        count = min(count, self.n_candidates - self._taken)
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        v = self.values
        if self._last is None:
            remaining = np.isfinite(v)
        else:
            last_value, last_pos = self._last
            remaining = (v > last_value) & (v < np.inf)
            remaining[last_pos + 1 :] |= v[last_pos + 1 :] == last_value
        pool = v[remaining]
        bound = np.partition(pool, count - 1)[count - 1] if count < pool.size else pool.max()
        del pool
        remaining &= v <= bound
        pos = np.flatnonzero(remaining)  # ascending, so a stable sort by value breaks ties by index
        del remaining
        out = pos[np.argsort(v[pos], kind="stable")[:count]].astype(np.int64)
        self._taken += count
        self._last = (v[out[-1]], int(out[-1]))
        return out


def _candidate_order(zeta: np.ndarray, valid: np.ndarray | None) -> _KeyOrder | _ValueOrder:
    """Lazy (value, flat index) order of the finite, valid candidates of ``zeta``."""
    flat = zeta.reshape(-1) + np.float32(0.0)  # -0.0 -> +0.0 so bit order = value order
    valid_flat = None if valid is None else valid.reshape(-1)
    if flat.size >= KEY_INDEX_LIMIT:
        return _ValueOrder(flat, valid_flat)
    return _KeyOrder(flat, valid_flat)


def link_graph(n: int, sources: np.ndarray, targets: np.ndarray) -> sparse.csr_array:
    """Symmetric (n, n) float64 counts: each (source, target) pair adds 1 to both of its
    entries (2 to a diagonal one), built from coordinates, never as a dense array."""
    rows = np.concatenate([sources, targets]).astype(np.int64, copy=False)
    cols = np.concatenate([targets, sources]).astype(np.int64, copy=False)
    graph = sparse.coo_array((np.ones(rows.size, dtype=np.float64), (rows, cols)), shape=(n, n))
    out = sparse.csr_array(graph)  # sums duplicates
    out.sum_duplicates()
    return out


class LocalCandidates:
    """The candidate links of ``zeta`` in (value, flat index) order, with their target images.

    offset: added to every flat index, so a holder of the query rows ``q0 : q1`` (a query
    shard) reports positions in the whole batch's (N, M, k-1) array (offset q0 M (k-1)).
    """

    def __init__(self, zeta: np.ndarray, rank_images: np.ndarray, valid: np.ndarray | None = None,
                 offset: int = 0) -> None:
        self.zeta = zeta
        self.rank_images = rank_images
        self.offset = int(offset)
        self._order = _candidate_order(zeta, valid)
        self.n_candidates = self._order.n_candidates

    def next_chunk(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``count`` candidates: flat indices (int64), zeta values (float32) and
        target images (L, count) int64."""
        local = self._order.next_chunk(count)
        q, pm, ri = np.unravel_index(local, self.zeta.shape)
        targets = self.rank_images[:, q, pm, ri].astype(np.int64)
        return local + self.offset, self.zeta[q, pm, ri].astype(np.float32), targets


class MergedCandidates:
    """Candidate streams of disjoint query ranges merged into the one global order.

    fetch(counts) -> one chunk per stream (``next_chunk(counts[s])`` of stream s; a count of
    0 asks nothing): a cluster asks all of its shards at once. The ``count`` smallest of what
    remains lie within each stream's next ``count``, so a round fetches at most that many
    per stream and keeps what it did not take for the next round: the driver holds O(count
    x streams) candidates, never the (N, M, k-1) ratios.
    """

    def __init__(self, sizes: list[int], fetch) -> None:
        self.n_candidates = int(sum(sizes))
        self._left = [int(x) for x in sizes]  # not yet fetched, per stream
        self._fetch = fetch
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32), None)
        self._held: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = [empty] * len(sizes)

    def next_chunk(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        want = [min(self._left[s], max(0, count - self._held[s][0].size)) for s in range(len(self._left))]
        if any(want):
            for s, chunk in enumerate(self._fetch(want)):
                if want[s]:
                    self._held[s] = _join(self._held[s], chunk)
                    self._left[s] -= chunk[0].size
        flat = np.concatenate([h[0] for h in self._held])
        vals = np.concatenate([h[1] for h in self._held])
        held_targets = [h[2] for h in self._held if h[2] is not None]
        targets = np.concatenate(held_targets, axis=1) if held_targets else np.zeros((0, 0), np.int64)
        stream = np.repeat(np.arange(len(self._held)), [h[0].size for h in self._held])
        take = np.lexsort((flat, vals))[:count]  # value, then flat index: the global order
        # each stream's taken candidates are a prefix of what it held: cut them off
        per_stream = np.bincount(stream[take], minlength=len(self._held))
        self._held = [(h[0][k:], h[1][k:], None if h[2] is None else h[2][:, k:])
                      for h, k in zip(self._held, per_stream)]
        return flat[take], vals[take], targets[:, take]


def _join(a: tuple[np.ndarray, np.ndarray, np.ndarray | None],
          b: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    targets = b[2] if a[2] is None else np.concatenate([a[2], b[2]], axis=1)
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]), targets


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
    zeta, rank_images, valid = check_link_inputs(zeta, rank_images, patch_mask)
    n, m, k1 = zeta.shape
    return select_links_from(LocalCandidates(zeta, rank_images, valid), (n, m, k1), target_coverage,
                             links_per_batch)


def check_link_inputs(zeta: np.ndarray, rank_images: np.ndarray, patch_mask: np.ndarray | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``select_links``'s inputs checked; returns zeta (float32), rank_images and the valid mask."""
    zeta = np.asarray(zeta, dtype=np.float32)
    if zeta.ndim != 3:
        raise ValueError(f"zeta must be (N, M, k-1), got shape {zeta.shape}")
    n, m, k1 = zeta.shape
    rank_images = np.asarray(rank_images)
    if rank_images.ndim != 4 or rank_images.shape[1:3] != (n, m) or rank_images.shape[3] < k1:
        raise ValueError(
            f"rank_images must be (L, {n}, {m}, R >= {k1}) to match zeta, got {rank_images.shape}"
        )
    if np.isnan(zeta).any() or (zeta < 0).any():
        raise ValueError("zeta must be >= 0 and free of NaN (see endurance_ratios)")
    if patch_mask is None:
        return zeta, rank_images, None
    patch_mask = np.asarray(patch_mask, dtype=bool)
    if patch_mask.shape != (n, m):
        raise ValueError(f"patch_mask must be ({n}, {m}), got {patch_mask.shape}")
    return zeta, rank_images, np.broadcast_to(patch_mask[:, :, None], zeta.shape)


def select_links_from(
    candidates: LocalCandidates | MergedCandidates,
    shape: tuple[int, int, int],
    target_coverage: float,
    links_per_batch: int | None = None,
) -> LinkSelection:
    """Algorithm 1 over a candidate stream of the (N, M, k-1) ratios ``shape`` names: the
    whole array here (``select_links``) or query shards merged (``MergedCandidates``)."""
    n, m, k1 = shape
    if not 0.0 < target_coverage <= 1.0:
        raise ValueError(f"target_coverage must be in (0, 1], got {target_coverage}")
    batch = n if links_per_batch is None else int(links_per_batch)
    if batch < 1:
        raise ValueError(f"links_per_batch must be >= 1 or None, got {links_per_batch}")

    n_cand = candidates.n_candidates
    needed = required_touched(n, target_coverage)
    never = np.iinfo(np.int64).max
    first_touch = np.full(n, never, dtype=np.int64)
    lo = 0
    size = min(n_cand, max(16 * batch, 64 * n))
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # flat index, value, targets; in order
    n_links = 0
    while lo < n_cand:
        flat_idx, values, targets = candidates.next_chunk(size - lo)
        chunks.append((flat_idx, values, targets))
        q = flat_idx // (m * k1)
        nodes = np.empty((flat_idx.size, targets.shape[0] + 1), dtype=np.int64)
        nodes[:, 0] = q
        nodes[:, 1:] = targets.T
        uniq, first = np.unique(nodes.reshape(-1), return_index=True)
        pos = lo + first // nodes.shape[1]
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

    if chunks:
        order = np.concatenate([c[0] for c in chunks])[:n_links]
        values = np.concatenate([c[1] for c in chunks])[:n_links]
        targets = np.concatenate([c[2] for c in chunks], axis=1)[:, :n_links]
    else:
        order, values, targets = np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 0), np.int64)
    q, pm, ri = np.unravel_index(order, (n, m, k1))
    if targets.size and (targets.min() < 0 or targets.max() >= n):
        raise ValueError(f"rank_images of the selected links must be image ids in [0, {n})")
    weights = link_graph(n, np.broadcast_to(q, targets.shape).reshape(-1), targets.reshape(-1))

    ft = np.sort(first_touch)
    n_batches = math.ceil(n_links / batch)
    ends = np.minimum(np.arange(1, n_batches + 1, dtype=np.int64) * batch, n_links)
    history = np.searchsorted(ft, ends, side="left") / n  # touched before each batch end
    coverage = float(history[-1]) if n_batches else 0.0
    cutoff = float(values[-1]) if n_links else math.nan
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
