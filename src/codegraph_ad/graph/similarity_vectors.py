"""Mutual similarity vectors D(x) per layer and their rank-wise layer mean (SPEC section 3).

The graph stages only look at the first k ranks of D(x), so the vectors are truncated to
``max_rank`` columns: an (L, N, M, N-1) tensor for a 200-image batch of 1369 patches is
close to 1 GB per array, its first 0.3N ranks a third of that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from codegraph_ad.errors import BatchTooSmallError


@dataclass(frozen=True)
class MutualSimilarity:
    """Sorted per-image minima of every patch, truncated to R ranks.

    sorted_per_layer: (L, N, M, R) float32, ``[l, q, m, i]`` = d_l^(i+1)(x) for patch m of
        image q (ascending in i; the image itself is never among them); None when not kept.
    rank_images: (L, N, M, R) integer (int16 when N < 2**15, else int32), the image C_l^(i+1)(x).
    dbar: (N, M, R) float32, the rank-wise mean over layers (non-decreasing in i, because
        each layer's vector is).
    """

    sorted_per_layer: np.ndarray | None
    rank_images: np.ndarray
    dbar: np.ndarray

    @property
    def n_images(self) -> int:
        return int(self.dbar.shape[0])

    @property
    def n_patches(self) -> int:
        return int(self.dbar.shape[1])

    @property
    def max_rank(self) -> int:
        return int(self.dbar.shape[2])


# Entries (query patch x reference) sorted at a time.
_CHUNK_ENTRIES = 4 * 1024 * 1024


def _index_dtype(n_images: int) -> type:
    """Image indices fit int16 for any realistic batch; halves the largest array here."""
    return np.int16 if n_images < 2**15 else np.int32


def validate_minima(mins_per_layer: Sequence[np.ndarray], refs: np.ndarray | None = None) -> tuple[int, int, int]:
    """Check the layer stack has one shape (N, S, M), S = N for the exact plan's dense slots
    or S = K with ``refs (N, K)`` reference ids, and N >= 3; return (L, N, M)."""
    if len(mins_per_layer) == 0:
        raise ValueError("mins_per_layer is empty: need at least one layer of (N, N, M) minima")
    shape = np.shape(mins_per_layer[0])
    for l, mins in enumerate(mins_per_layer):
        square = len(shape) == 3 and (shape[0] == shape[1] if refs is None else np.shape(refs) == shape[:2])
        if np.shape(mins) != shape or not square:
            want = "(N, N, M)" if refs is None else f"(N, K, M) with refs {np.shape(refs)}"
            raise ValueError(
                f"mins_per_layer[{l}] has shape {np.shape(mins)}; every layer must be {want} "
                f"with the shape of layer 0 {shape}"
            )
    n, m = int(shape[0]), int(shape[2])
    if n < 3:
        raise BatchTooSmallError(f"the graph stages need a batch of at least 3 images, got {n}")
    if m < 1:
        raise ValueError(f"mins_per_layer has no patches (M = {m})")
    if refs is not None and shape[1] < 2:
        raise ValueError(f"the graph stages need at least 2 references per image, got {shape[1]}")
    return len(mins_per_layer), n, m


def mutual_similarity_vectors(
    mins_per_layer: Sequence[np.ndarray], max_rank: int | None = None, refs: np.ndarray | None = None,
    keep_per_layer: bool = True,
    query_offset: int | None = None,
) -> MutualSimilarity:
    """Sort each patch's per-image minima, keeping the first ``max_rank`` ranks.

    mins_per_layer: L arrays (N, N, M), ``[q, j, m]`` = distance from patch m of image q to
    its nearest patch in image j; or, with ``refs (N, K)`` (a screened or fixed-K plan,
    each row sorted), L arrays (N, K, M) over the listed images, so the vectors have length
    K instead of N - 1. The dense diagonal ``[q, q, :]`` is ignored (treated as +inf)
    whatever it holds, so a caller that forgot to mask it cannot make an image its own
    nearest neighbour. NaN is rejected. Ties are broken deterministically by the lower
    image index. keep_per_layer=False leaves ``sorted_per_layer`` None: the graph stages read
    only the layer mean and the rank images, and the per-layer array is the largest here
    (200 MB at N = 1,000, M = 256, R = 51).

    query_offset: the arrays hold only the query rows ``query_offset :`` of the batch (a query
    shard: dense arrays are (rows, N, M), ``refs`` its (rows, K) rows); every row's vectors
    are the whole batch's. The batch-size checks are then the caller's.
    """
    if query_offset is None:
        n_layers, n, m = validate_minima(mins_per_layer, refs)
        n_total, offset = n, 0
    else:
        n_layers, (n, n_total, m), offset = len(mins_per_layer), np.shape(mins_per_layer[0]), int(query_offset)
        if refs is None and offset + n > n_total:
            raise ValueError(f"query rows {offset}:{offset + n} lie outside the {n_total} images")
    n_valid = n_total - 1 if refs is None else int(np.shape(refs)[1])
    r = n_valid if max_rank is None else int(max_rank)
    if not 1 <= r <= n_valid:
        raise ValueError(f"max_rank must be in [1, {n_valid}] (the references per image), got {max_rank}")

    sorted_pl = np.empty((n_layers, n, m, r), dtype=np.float32) if keep_per_layer else None
    if query_offset is not None and refs is not None:  # image ids up to the largest listed
        n_total = int(np.max(refs, initial=0)) + 1
    index_dtype = _index_dtype(n_total)
    rank_img = np.empty((n_layers, n, m, r), dtype=index_dtype)
    dbar = np.empty((n, m, r), dtype=np.float32)
    slot_ids = None if refs is None else np.asarray(refs)[:, None, :]  # (N, 1, K)
    # rows of query images at a time, every layer of them before the next rows: the sort's
    # copies and int64 indices stay ~16 MB each, and the layer mean is taken per chunk, so no
    # (L, N, M, R) float array is held unless the caller asks for it
    step = max(1, _CHUNK_ENTRIES // max(1, m * np.shape(mins_per_layer[0])[1]))
    for q0 in range(0, n, step):
        q1 = min(q0 + step, n)
        total = None
        for l, mins in enumerate(mins_per_layer):
            vals, idx = _sorted_rows(mins, l, q0, q1, r, n_valid, refs is None, offset)
            if sorted_pl is not None:
                sorted_pl[l, q0:q1] = vals
            rank_img[l, q0:q1] = idx if slot_ids is None else np.take_along_axis(
                np.broadcast_to(slot_ids[q0:q1], (q1 - q0, m, slot_ids.shape[2])), idx, axis=-1)
            # float64 sum in layer order, then / L: the same values as mean(axis=0, dtype=float64)
            total = vals.astype(np.float64) if total is None else np.add(total, vals, out=total)
            del vals, idx
        dbar[q0:q1] = (total / n_layers).astype(np.float32)
    return MutualSimilarity(sorted_per_layer=sorted_pl, rank_images=rank_img, dbar=dbar)


def _sorted_rows(mins: np.ndarray, layer: int, q0: int, q1: int, r: int, n_valid: int,
                 dense: bool, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The r smallest per-image minima of query rows q0:q1, ascending, with their slots."""
    # (rows, M, S): the per-image distances of one patch are contiguous for the sort.
    a = np.ascontiguousarray(np.moveaxis(np.asarray(mins[q0:q1], dtype=np.float32), 2, 1))
    if np.isnan(a).any():
        raise ValueError(f"mins_per_layer[{layer}] contains NaN")
    if dense:
        rows = np.arange(q1 - q0)
        a[rows, :, rows + q0 + offset] = np.inf
    if r < n_valid:
        part = np.argpartition(a, r - 1, axis=-1)[..., :r]
        vals = np.take_along_axis(a, part, axis=-1)
        order = np.argsort(vals, axis=-1, kind="stable")
        idx = np.take_along_axis(part, order, axis=-1)
        return np.take_along_axis(vals, order, axis=-1), idx
    idx = np.argsort(a, axis=-1, kind="stable")[..., :r]
    return np.take_along_axis(a, idx, axis=-1), idx
