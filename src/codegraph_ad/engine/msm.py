"""Mutual scoring (MSM): a patch is normal when many other images hold a look-alike."""

from __future__ import annotations

import math

import torch


def msm_k(n_refs: int, q: float) -> int:
    """K = max(1, ceil(q * n_refs)) smallest image distances are averaged (SPEC section 3)."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    return max(1, math.ceil(q * n_refs - 1e-9))


def msm_scores(
    dist: torch.Tensor,
    q: float,
    reference_images: torch.Tensor | None = None,
    refs: torch.Tensor | None = None,
    query_offset: int = 0,
) -> torch.Tensor:
    """Patch scores ``(N, M)`` from per-slot minima ``dist: (N, S, M)`` (engine/plan.py).

    refs: ``(N, K)`` reference ids of a screened or fixed-K plan (S = K), or None for the
    exact plan's dense slots (S = N, self at inf).
    reference_images: ``(N,)`` bool, the images that may serve as references (all when
    None), or ``(N, S)`` bool, per query and slot. K is taken per query from its own number
    of references, so a query inside a removed group and one outside it are both averaged
    over the same share q. Images at infinite distance (fully excluded) are never among the
    K smallest unless nothing is left, in which case the score is 2.0 (the largest unit distance).
    query_offset: ``dist`` holds the rows of queries ``query_offset :`` of the batch (a query
    shard); each row's scores are those of the whole array's row.
    """
    n, s_count = dist.shape[0], dist.shape[1]
    if reference_images is None:
        allowed = torch.ones((n, s_count), dtype=torch.bool, device=dist.device)
    elif reference_images.dim() == 1:
        ref = reference_images.to(dist.device)
        allowed = ref.view(1, -1).expand(n, ref.numel()) if refs is None else ref[refs.to(dist.device)]
    else:
        allowed = reference_images.to(dist.device)
    d = dist
    if not bool(allowed.all()):
        d = dist.masked_fill(~allowed.unsqueeze(2), float("inf"))
    real = allowed
    if refs is None:  # the dense layout holds each query's own slot
        own = torch.zeros((n, s_count), dtype=torch.bool, device=dist.device)
        rows = torch.arange(n, device=dist.device)
        own[rows, rows + query_offset] = True
        real = allowed & ~own
    n_refs = real.sum(dim=1)  # (N,)
    scores = torch.empty(n, dist.shape[2], dtype=torch.float32, device=dist.device)
    most = s_count - 1 if refs is None else s_count
    for k_val in torch.unique(n_refs).tolist():
        rows = torch.nonzero(n_refs == k_val).flatten()
        k = min(msm_k(max(int(k_val), 1), q), most)
        group = d if rows.numel() == n else d[rows]  # one group: no (N, S, M) gather copy
        smallest = torch.topk(group, k, dim=1, largest=False).values  # (r, k, M)
        scores[rows] = _finite_mean(smallest)
    return scores


def _finite_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 ignoring inf; all-inf columns fall back to 2.0 (max unit distance)."""
    finite = torch.isfinite(values)
    total = torch.where(finite, values, torch.zeros_like(values)).sum(dim=1)
    count = finite.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, 2.0))


def msm_scores_to_references(
    dist: torch.Tensor,
    q: float,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Patch scores ``(B, M)`` of query images from their minima ``dist: (B, N, M)`` to N
    reference images that do not include the queries themselves.

    allowed: ``(B, N)`` bool, the references each query may use ([CLS] screening); all when
    None. K = ``msm_k(number of allowed references, q)``: every reference is an "other image",
    so a new image scored against N references averages as a batch member of N + 1 images
    does (its N others). Fully excluded references (inf) count as in ``msm_scores``.
    """
    b, n, _ = dist.shape
    d = dist
    if allowed is None:
        n_refs = torch.full((b,), n, dtype=torch.long)
    else:
        allowed = allowed.to(dist.device)
        if not bool(allowed.all()):
            d = dist.masked_fill(~allowed.unsqueeze(2), float("inf"))
        n_refs = allowed.sum(dim=1).cpu()
    scores = torch.empty(b, dist.shape[2], dtype=torch.float32, device=dist.device)
    for k_val in torch.unique(n_refs).tolist():
        rows = torch.nonzero(n_refs == k_val).flatten().to(dist.device)
        k = min(msm_k(max(int(k_val), 1), q), n)
        smallest = torch.topk(d[rows], k, dim=1, largest=False).values  # (r, k, M)
        scores[rows] = _finite_mean(smallest)
    return scores
