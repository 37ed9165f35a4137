"""Nearest-patch distances from query images to a fixed set of reference images.

``pair_minima`` compares every image of one batch with every other; scoring new images
against a finished run (methods/reference.py) needs the rectangular case: each patch of
each query image against each reference image, with some reference patches removed
(CoDeGraph's excluded ones). One matrix product per chunk of query patches against all
reference patches, chunked by the memory budget; no loop over patches or image pairs.
"""

from __future__ import annotations

import torch

from codegraph_ad.engine.mutual import similarity_to_distance

# Share of the memory budget one similarity chunk may use, and its cap: beyond ~64 MB a
# larger chunk stops paying (the product is cache-bound, see engine/mutual.py).
_CHUNK_SHARE = 0.25
_CHUNK_CAP_BYTES = 64 * 1024 * 1024


def query_rows_per_chunk(n_ref_patches: int, budget_mb: float) -> int:
    """Query patches per chunk so that a ``(rows, n_ref_patches)`` float32 block fits."""
    block = min(budget_mb * 1e6 * _CHUNK_SHARE, _CHUNK_CAP_BYTES)
    return max(1, int(block // (4 * max(n_ref_patches, 1))))


def cross_minima(
    queries: torch.Tensor,
    refs: torch.Tensor,
    ref_excluded: torch.Tensor | None = None,
    budget_mb: float = 4096,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(B, N, M)`` float32: distance from patch m of query b to its nearest kept patch of reference n.

    queries: ``(B, M, C)`` unit rows; refs: ``(N, R, C)`` unit rows; ref_excluded: ``(N, R)``
    bool, patches that may not serve as nearest neighbours. A reference image with every
    patch excluded is at distance inf (as ``refine_minima`` leaves it), so MSM skips it.
    bias: ``(M, R)`` added to query patch m's similarities with every reference's patch r
    (a position window: ``engine.window.window_bias``, 0 inside and -inf outside), so new
    images are matched as the run's own images were.
    """
    b, m, c = queries.shape
    n, r, c2 = refs.shape
    if c != c2:
        raise ValueError(f"queries have {c} channels, references {c2}")
    flat_q = queries.float().reshape(b * m, c)
    flat_r_t = refs.float().reshape(n * r, c).T.contiguous()
    drop = None if ref_excluded is None or not bool(ref_excluded.any()) else ref_excluded.reshape(1, n * r)
    out = torch.empty((b * m, n), dtype=torch.float32, device=queries.device)
    step = query_rows_per_chunk(n * r, budget_mb)
    for s in range(0, b * m, step):
        sim = flat_q[s : s + step] @ flat_r_t  # (rows, N * R)
        if bias is not None:  # query rows s.. are patches (s % M).. of consecutive images
            rows = torch.arange(s, s + sim.shape[0], device=sim.device) % m
            sim.view(-1, n, r).add_(bias.to(sim.device)[rows].unsqueeze(1))
        if drop is not None:
            sim.masked_fill_(drop, -float("inf"))
        out[s : s + step] = similarity_to_distance(sim.view(-1, n, r).amax(dim=2))
    return out.view(b, m, n).permute(0, 2, 1).contiguous()
