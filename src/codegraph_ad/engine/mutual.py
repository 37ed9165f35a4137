"""Per-pair nearest-patch distances for a whole batch, from one block product per image pair.

For image pair (i, j) the similarity block ``X_i X_j^T`` (M x M) holds both directions: its
row maxima are i's nearest patches in j, its column maxima j's nearest patches in i. Pairs
are processed in blocks of images sized by a memory budget, so nothing of size
``N x M x N x M`` (nor the ``M x (N-1)M`` block per query of the reference code) exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from codegraph_ad.engine.autotune import fastest_reduced_precision
from codegraph_ad.engine.products import PRECISIONS, make_product
from codegraph_ad.progress import Progress

# Share of the memory budget the similarity block may use; the rest holds features,
# minima and reduction temporaries.
_BLOCK_SHARE = 0.25
# Blocks larger than this stop fitting the caches. Measured on 2 cores: a 16 MB block scored
# N=40, M=256 in 1.25 s against 2.8 s for a 1 GB block (same FLOPs); products of side 1024,
# 2048 and 3072 ran at 233 / 231 / 164 GFLOP/s in fp32 and the int8 engine scored N=32,
# M=1024 at 581 GOPS with 1024-side blocks against 525 with 2048.
_BLOCK_CAP_BYTES = 1024 * 1024 * 4


@dataclass
class PairMinima:
    """Nearest-patch results of one (layer, degree) feature stack.

    dist: ``(N, N, M)`` float32; ``dist[q, j, m]`` = distance from patch m of image q to its
        nearest patch in image j; ``dist[q, q, :] = inf``.
    argmin: ``(N, N, M)`` int16 or None; index in image j of that nearest patch.
    """

    dist: torch.Tensor
    argmin: torch.Tensor | None


def images_per_block(n_patches: int, budget_mb: float, itemsize: int = 4) -> int:
    """How many images fit one side of a square similarity block under ``budget_mb``."""
    block_bytes = min(budget_mb * 1e6 * _BLOCK_SHARE, _BLOCK_CAP_BYTES)
    side = int(math.sqrt(block_bytes / itemsize)) // max(n_patches, 1)
    return max(1, side)


def similarity_to_distance(sim: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of unit vectors from their dot product: sqrt(max(0, 2 - 2 s))."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * sim, min=0.0))


def resolve_precision(precision: str, n_patches: int) -> str:
    """``precision`` itself, or for ``fast`` the mode this engine runs fastest in on this CPU
    at ``n_patches`` patches per image (timed once per process, engine/autotune.py)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return fastest_reduced_precision(n_patches, pair_minima) if precision == "fast" else precision


def pair_minima(
    feats: torch.Tensor,
    budget_mb: float = 4096,
    precision: str = "fp32",
    with_argmin: bool = False,
    progress: bool | Progress = False,
    desc: str = "mutual scoring",
) -> PairMinima:
    """Nearest-patch distances between every ordered image pair of ``feats: (N, M, C)`` (unit rows).

    ``bf16`` only chooses the nearest patch; its similarity is then recomputed in fp32 from
    the two vectors (N^2 M dot products, 1/M of the work), so the minima stay fp32-accurate
    unless rounding swaps two near-tied neighbours. ``int8`` keeps its own maxima, dequantised
    (similarity error about 1e-3 on unit vectors; see products.py). ``fast`` is whichever of
    the three runs fastest here.

    progress: a stage's Progress, whose bar the image blocks advance (one unit of it), or a
    bool for a bar of its own named ``desc``.
    """
    n, m, c = feats.shape
    feats = feats.float().contiguous()
    product = make_product(resolve_precision(precision, m), m)
    best_sim = torch.full((n, n, m), -2.0 if product.exact else torch.iinfo(torch.int32).min,
                          dtype=product.out_dtype, device=feats.device)
    need_arg = with_argmin or product.recompute
    best_arg = (torch.zeros((n, n, m), dtype=torch.int16 if m < 32768 else torch.int32, device=feats.device)
                if need_arg else None)
    low = product.prepare(feats.reshape(n * m, c))
    b = min(n, images_per_block(m, budget_mb))
    starts = list(range(0, n, b))
    pairs = [(i0, j0) for i0 in starts for j0 in starts if j0 >= i0]
    right = {}
    with Progress.of(progress).stage(desc, len(pairs), "blocks") as bar:
        for i0, j0 in pairs:
            i1, j1 = min(i0 + b, n), min(j0 + b, n)
            bi, bj = i1 - i0, j1 - j0
            if j0 not in right:
                right.clear()  # blocks arrive row by row: keep one row's right operands
            if j0 not in right:
                right[j0] = product.right(low[j0 * m : j1 * m])
            sim = product.block(low[i0 * m : i1 * m], right[j0]).view(bi, m, bj, m)
            # i -> j: max over the patches of j; j -> i: max over the patches of i
            if best_arg is None:  # values only: amax skips the index bookkeeping
                best_sim[i0:i1, j0:j1] = sim.amax(dim=3).permute(0, 2, 1)
                if j0 != i0:
                    best_sim[j0:j1, i0:i1] = sim.amax(dim=1).permute(1, 0, 2)
            else:
                s_ij, a_ij = sim.max(dim=3)  # (bi, m, bj)
                best_sim[i0:i1, j0:j1] = s_ij.permute(0, 2, 1)
                best_arg[i0:i1, j0:j1] = a_ij.permute(0, 2, 1).to(best_arg.dtype)
                if j0 != i0:
                    s_ji, a_ji = sim.max(dim=1)  # (bi, bj, m)
                    best_sim[j0:j1, i0:i1] = s_ji.permute(1, 0, 2)
                    best_arg[j0:j1, i0:i1] = a_ji.permute(1, 0, 2).to(best_arg.dtype)
            del sim
            bar.advance()
    best_sim = _exact_similarity(feats, best_arg) if product.recompute else product.to_similarity(best_sim)
    # in place: at N = 500, M = 1024 each (N, N, M) temporary is 1 GB
    dist = best_sim.mul_(-2.0).add_(2.0).clamp_(min=0.0).sqrt_()
    idx = torch.arange(n, device=feats.device)
    dist[idx, idx] = float("inf")
    return PairMinima(dist=dist, argmin=best_arg if with_argmin else None)


def _exact_similarity(feats: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
    """fp32 dot product of every patch with the neighbour chosen in each other image."""
    n, m, c = feats.shape
    out = torch.empty((n, n, m), dtype=torch.float32, device=feats.device)
    flat = feats.reshape(n * m, c)
    offsets = (torch.arange(n, device=feats.device) * m).view(1, n, 1)
    for q in range(n):  # one query image at a time bounds the (N, M, C) gather
        rows = (arg[q].long() + offsets[0]).reshape(-1)  # (N*M,) indices into flat
        neigh = flat[rows].view(n, m, c)
        out[q] = (neigh * feats[q].unsqueeze(0)).sum(-1)
    return out


def refine_minima(
    feats: torch.Tensor,
    minima: PairMinima,
    excluded: torch.Tensor,
    budget_mb: float = 4096,
) -> torch.Tensor:
    """Distances against a reference set with some patch positions removed.

    ``excluded: (N, M)`` bool. Only reference images that lost patches are recomputed,
    and only for queries whose stored nearest patch was removed when argmins exist; the
    rest of the first pass is reused as is. An image with every patch excluded is at
    infinite distance.
    """
    n, m, c = feats.shape
    dist = minima.dist.clone()
    feats = feats.float()
    flat = feats.reshape(n * m, c)
    rows_per_chunk = max(1, int(budget_mb * 1e6 * _BLOCK_SHARE / 4 / max(m, 1)))
    for j in torch.nonzero(excluded.any(dim=1)).flatten().tolist():
        keep = ~excluded[j]
        if not bool(keep.any()):
            dist[:, j, :] = float("inf")
            dist[j, j, :] = float("inf")
            continue
        if minima.argmin is not None:
            hit = excluded[j][minima.argmin[:, j, :].long()]  # (N, M): nearest patch removed
            hit[j] = False
            query_idx = torch.nonzero(hit.reshape(-1)).flatten()
        else:
            query_idx = torch.arange(n * m)
            query_idx = query_idx[(query_idx // m) != j]
        refs = feats[j][keep]
        for s in range(0, query_idx.numel(), rows_per_chunk):
            chunk = query_idx[s : s + rows_per_chunk]
            sim = (flat[chunk] @ refs.T).max(dim=1).values
            dist.view(n, n, m)[chunk // m, j, chunk % m] = similarity_to_distance(sim)
    return dist
