"""Nearest patches restricted to a position window, for aligned products (issue 27, --window).

For aligned objects a patch's nearest neighbour in another image sits near the same grid
position, so patch m of a query is compared only with the reference patches within
``radius`` cells of m (Chebyshev distance, clipped at the borders): (2r+1)^2 candidates
instead of M.

Kernel: the query grid is cut into th x tw tiles; each tile meets the (th+2r) x (tw+2r)
reference window around it in one matrix product, batched over tiles and over all
(query, reference) image pairs at once (GEMM-shaped: A*th*tw rows, B*(th+2r)*(tw+2r)
columns per tile). A static bias of -inf removes the candidates outside each patch's exact
window and outside the grid; a max over the window's last axis gives the maxima. That costs
(th+2r)(tw+2r)/(2r+1)^2 times the ideal flops, and is still far fewer than the M x M product
(measured in benchmarks/window_kernel.py). Where the window covers (nearly) the whole grid,
the plain M x M product with the bias is used instead. Reference images, then rows of
tiles, then query images are chunked so that the temporaries stay under ``budget_bytes``
(beyond an fp32 copy of the inputs and a tiled copy of ``left``).

Devices: everything runs where the inputs are. On CUDA the fp32 products follow PyTorch's
global TF32 switch (off by default), and chunks grow to the whole budget.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from codegraph_ad.features.lattice import Lattice3D

_INT16_MAX = 32767


def window_pair_cost(grid: tuple[int, int], radius: int) -> int:
    """Number of (m, m') patch pairs inside the window: sum over m of its clipped window's size."""
    h, w = _check_grid(grid)
    radius = _check_radius(radius)
    return _axis_pairs(h, radius) * _axis_pairs(w, radius)


def window_block(left: torch.Tensor, right: torch.Tensor, grid: tuple[int, int], radius: int,
                 with_argmax: bool = True, budget_bytes: int = 64 << 20) -> tuple[torch.Tensor, torch.Tensor | None]:
    """left: (A, M, C) unit patch features of A query images, right: (B, M, C) of B reference images,
    M = grid[0]*grid[1] (row-major patch grid). For every (a, b, m): the max dot product of
    left[a, m] with right[b, m'] over the patches m' whose grid position is within `radius`
    cells of m's position in BOTH axes (Chebyshev distance <= radius, clipped at the borders).
    Returns (best (A, B, M) float32, argmax (A, B, M) int16 flat index m' into right's patches, or None)."""
    h, w, radius = _check_inputs(left, right, grid, radius, with_argmax)
    return _window_block(left.float().contiguous(), right.float().contiguous(), h, w, radius, with_argmax,
                         budget_bytes, choose_tile(left.shape[0], h, w, radius))


def tiled_pair_cost(n_left: int, h: int, w: int, radius: int) -> float:
    """The kernel's estimated cost of one ordered image pair in its cheapest tiling (or its
    full product), in the units of ``choose_tile``: patch pairs computed, weighted for small
    products. The engine compares it with a symmetric full product (engine/mutual.py)."""
    return _best_tiling(n_left, h, w, radius)[1]


def choose_tile(n_left: int, h: int, w: int, radius: int) -> tuple[int, int] | None:
    """Tile shape (th, tw) of the tiled product, or None for the full M x M product.

    Estimated cost of a tiling: the pairs it computes, Mpad * (th+2r)(tw+2r), times
    1 + kappa / rows, where rows = n_left * th * tw are the rows of its matrix products (small
    products and the copied reference windows cost more per pair). Small tiles waste fewest
    pairs, large ones make better products; with one query image only large tiles pay. The
    full product (rows n_left * M) is taken where it is estimated cheaper. kappa was fitted to
    a sweep of tile shapes on 2 AVX2 cores (M = 256 and 1024, A = 1 and 16, r = 1..4).
    """
    return _best_tiling(n_left, h, w, radius)[0]


def _best_tiling(n_left: int, h: int, w: int, radius: int) -> tuple[tuple[int, int] | None, float]:
    ry, rx = min(radius, h - 1), min(radius, w - 1)
    n_left = max(1, n_left)
    best, best_cost = None, h * w * h * w * (1.0 + _KAPPA / (n_left * h * w))
    for th in sorted({min(s, h) for s in _TILE_SIDES}):
        for tw in sorted({min(s, w) for s in _TILE_SIDES}):
            pairs = math.ceil(h / th) * th * math.ceil(w / tw) * tw * (th + 2 * ry) * (tw + 2 * rx)
            cost = pairs * (1.0 + _KAPPA / (n_left * th * tw))
            if cost < best_cost:
                best, best_cost = (th, tw), cost
    return best, best_cost


# On the CPU chunks are kept under this size whatever the budget: larger temporaries are
# fresh mmap allocations whose page faults cost more than the extra chunk loop (measured on
# 2 AVX2 cores: 64 MB chunks ran 10-50% slower than 32 MB ones).
_CHUNK_CAP_BYTES = 32 << 20
# Tile sides tried by choose_tile, and its per-row overhead of small products.
_TILE_SIDES = (1, 2, 4, 8)
_KAPPA = 40.0


def _window_block(left: torch.Tensor, right: torch.Tensor, h: int, w: int, radius: int,
                  with_argmax: bool, budget_bytes: int,
                  tile: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The kernel behind window_block with the tile shape given (None: banded full product)."""
    n_a, m, _ = left.shape
    n_b = right.shape[0]
    best = torch.empty((n_a, n_b, m), dtype=torch.float32, device=left.device)
    arg = torch.empty((n_a, n_b, m), dtype=torch.int16, device=left.device) if with_argmax else None
    if n_a == 0 or n_b == 0:
        return best, arg
    if left.device.type == "cpu":
        budget_bytes = min(budget_bytes, _CHUNK_CAP_BYTES)
    if tile is None:
        _dense(left, right, h, w, radius, best, arg, budget_bytes)
    else:
        _tiled(left, right, h, w, radius, tile, best, arg, budget_bytes)
    return best, arg


def _dense(left: torch.Tensor, right: torch.Tensor, h: int, w: int, radius: int,
           best: torch.Tensor, arg: torch.Tensor | None, budget_bytes: int) -> None:
    """Full (A M) x (B M) product with -inf outside the window (none when it covers the grid)."""
    n_a, m, c = left.shape
    n_b = right.shape[0]
    bias = None
    if radius < max(h, w) - 1:
        bias = window_bias((h, w), radius, left.device).view(1, m, 1, m)
    a_step, b_step, _ = _steps(n_a, n_b, 1, per_pair_row=m * m * 4, per_ref_row=0, per_ref=0,
                               budget=budget_bytes)
    flat_l = left.reshape(n_a * m, c)
    sim_buf = torch.empty(a_step * m * b_step * m, dtype=torch.float32, device=left.device)
    for b0 in range(0, n_b, b_step):
        b1 = min(b0 + b_step, n_b)
        right_t = right[b0:b1].reshape((b1 - b0) * m, c).T
        for a0 in range(0, n_a, a_step):
            a1 = min(a0 + a_step, n_a)
            sim = sim_buf[: (a1 - a0) * m * (b1 - b0) * m].view((a1 - a0) * m, (b1 - b0) * m)
            torch.mm(flat_l[a0 * m : a1 * m], right_t, out=sim)
            sim = sim.view(a1 - a0, m, b1 - b0, m)
            if bias is not None:
                sim.add_(bias)
            _reduce(sim, best[a0:a1, b0:b1], None if arg is None else arg[a0:a1, b0:b1])


def _tiled(left: torch.Tensor, right: torch.Tensor, h: int, w: int, radius: int, tile: tuple[int, int],
           best: torch.Tensor, arg: torch.Tensor | None, budget_bytes: int) -> None:
    """One batched product per chunk: every query tile against its reference window, all image pairs."""
    n_a, m, c = left.shape
    n_b = right.shape[0]
    th, tw = tile
    ry, rx = min(radius, h - 1), min(radius, w - 1)
    nth, ntw = math.ceil(h / th), math.ceil(w / tw)
    hp, wp = nth * th, ntw * tw
    n_t, p, wy, wx = nth * ntw, th * tw, th + 2 * ry, tw + 2 * rx
    n_win = wy * wx
    dev = left.device
    bias, lut = _tile_tables(h, w, ry, rx, th, tw, dev)
    bias = bias.view(n_t, 1, p, 1, n_win)  # broadcast over query and reference images
    # query tiles: (T, A*P, C), padded queries are computed and dropped
    grid_l = left.view(n_a, h, w, c)
    if (hp, wp) != (h, w):
        grid_l = torch.nn.functional.pad(grid_l, (0, 0, 0, wp - w, 0, hp - h))
    tiles_l = grid_l.view(n_a, nth, th, ntw, tw, c).permute(1, 3, 0, 2, 4, 5).contiguous().view(n_t, n_a * p, c)
    del grid_l
    right_rows = right.reshape(n_b * m, c)
    a_step, b_step, row_step = _steps(n_a, n_b, nth, per_pair_row=ntw * p * n_win * 4,
                                      per_ref_row=ntw * n_win * (c * 4 + 8), per_ref=0,
                                      budget=budget_bytes)
    best_grid = best.view(n_a, n_b, h, w)
    arg_grid = None if arg is None else arg.view(n_a, n_b, h, w)
    # one buffer each for the windows and the products, reused by every chunk: fresh large
    # allocations are page-faulted in again each time, which cost as much as the copy itself
    tiles_max = min(row_step, nth) * ntw
    win_buf = torch.empty(tiles_max * b_step * n_win * c, dtype=torch.float32, device=dev)
    sim_buf = torch.empty(tiles_max * a_step * p * b_step * n_win, dtype=torch.float32, device=dev)
    for b0 in range(0, n_b, b_step):
        b1 = min(b0 + b_step, n_b)
        nb = b1 - b0
        first_row = (torch.arange(b0, b1, device=dev) * m).view(1, nb, 1)
        for t0 in range(0, nth, row_step):  # chunks of tile rows
            t1 = min(t0 + row_step, nth)
            n_tc = (t1 - t0) * ntw
            tiles = slice(t0 * ntw, t1 * ntw)
            # windows (T, B*W, C): one gather of whole channel rows; slots outside the grid
            # hold a clamped patch that the bias removes
            rows_r = (first_row + lut[tiles].view(n_tc, 1, n_win)).view(-1)
            win_r = torch.index_select(right_rows, 0, rows_r, out=win_buf[: rows_r.numel() * c].view(-1, c))
            win_r = win_r.view(n_tc, nb * n_win, c)
            del rows_r
            for a0 in range(0, n_a, a_step):
                a1 = min(a0 + a_step, n_a)
                na = a1 - a0
                sim = sim_buf[: n_tc * na * p * nb * n_win].view(n_tc, na * p, nb * n_win)
                torch.bmm(tiles_l[tiles, a0 * p : a1 * p], win_r.transpose(1, 2), out=sim)
                sim = sim.view(n_tc, na, p, nb, n_win)
                sim.add_(bias[tiles])
                val, idx = (sim.max(dim=4) if arg is not None else (sim.amax(dim=4), None))
                rows = slice(t0 * th, min(t1 * th, h))
                best_grid[a0:a1, b0:b1, rows] = _untile(val, t1 - t0, ntw, th, tw, rows.stop - rows.start, w)
                if idx is not None:
                    glob = torch.gather(lut[tiles], 1, idx.view(n_tc, -1)).view(idx.shape)
                    arg_grid[a0:a1, b0:b1, rows] = _untile(glob, t1 - t0, ntw, th, tw, rows.stop - rows.start, w)


def _untile(x: torch.Tensor, n_rows: int, ntw: int, th: int, tw: int, keep: int, w: int) -> torch.Tensor:
    """(T, A, P, B) results of ``n_rows`` tile rows -> (A, B, keep, w): grid order, padding cropped."""
    _, n_a, _, n_b = x.shape
    x = x.view(n_rows, ntw, n_a, th, tw, n_b).permute(2, 5, 0, 3, 1, 4).reshape(n_a, n_b, n_rows * th, ntw * tw)
    return x[:, :, :keep, :w]


def _reduce(sim: torch.Tensor, best: torch.Tensor, arg: torch.Tensor | None) -> None:
    """(A, M, B, M') masked similarities -> maxima (and argmax) over M' into (A, B, M) slices."""
    if arg is None:
        best.copy_(sim.amax(dim=3).permute(0, 2, 1))
        return
    val, idx = sim.max(dim=3)
    best.copy_(val.permute(0, 2, 1))
    arg.copy_(idx.permute(0, 2, 1))


def _steps(n_a: int, n_b: int, n_rows: int, per_pair_row: int, per_ref_row: int, per_ref: int,
           budget: int) -> tuple[int, int, int]:
    """Chunk sizes (queries, references, tile rows) whose temporaries fit ``budget`` bytes.

    A chunk holds ``b * per_ref + rows * (a * b * per_pair_row + b * per_ref_row)`` bytes.
    All queries are kept (they are the product's rows) while references can be split;
    then tile rows are split, and queries last. At least one of each.
    """
    one_ref = per_ref + n_rows * (n_a * per_pair_row + per_ref_row)
    if one_ref <= budget:
        return n_a, max(1, min(n_b, budget // one_ref)), n_rows
    room = budget - per_ref
    rows = room // max(1, n_a * per_pair_row + per_ref_row)
    if rows >= 1:
        return n_a, 1, int(rows)
    return max(1, min(n_a, (room - per_ref_row) // max(1, per_pair_row))), 1, 1


@lru_cache(maxsize=32)
def _tile_tables(h: int, w: int, ry: int, rx: int, th: int, tw: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per tile: bias (T, P, W) with 0 for candidates in the patch's window and in the grid,
    -inf elsewhere; and lut (T, W) int64, each window slot's flat index in the reference grid
    (clamped into the grid where the slot lies outside it). Cached per device.
    """
    nth, ntw = math.ceil(h / th), math.ceil(w / tw)
    wy, wx = th + 2 * ry, tw + 2 * rx
    ty = torch.arange(nth).view(nth, 1, 1, 1, 1, 1) * th
    tx = torch.arange(ntw).view(1, ntw, 1, 1, 1, 1) * tw
    py = torch.arange(th).view(1, 1, th, 1, 1, 1)
    px = torch.arange(tw).view(1, 1, 1, tw, 1, 1)
    qy = torch.arange(wy).view(1, 1, 1, 1, wy, 1)
    qx = torch.arange(wx).view(1, 1, 1, 1, 1, wx)
    ref_y, ref_x = ty + qy - ry, tx + qx - rx  # reference position of each window slot
    inside = ((qy - py - ry).abs() <= ry) & ((qx - px - rx).abs() <= rx)
    in_grid = (ref_y >= 0) & (ref_y < h) & (ref_x >= 0) & (ref_x < w)
    ok = inside & in_grid
    bias = torch.zeros(ok.shape, dtype=torch.float32).masked_fill_(~ok, float("-inf"))
    lut = (ref_y.clamp(0, h - 1) * w + ref_x.clamp(0, w - 1)).expand(nth, ntw, 1, 1, wy, wx)
    bias = bias.reshape(nth * ntw, th * tw, wy * wx).to(device)
    return bias, lut.reshape(nth * ntw, wy * wx).contiguous().to(device)


def in_window(grid: tuple[int, int] | Lattice3D, radius: int, rows: torch.Tensor | slice,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """(R, M) bool: which patches lie within ``radius`` of each patch ``rows`` (Chebyshev).

    One neighbourhood for every user (the kernels' biases, the refinement): grid cells on a
    2D patch grid; on a 3D lattice token centres in half cells, so the limit is 2 radius."""
    if isinstance(grid, Lattice3D):
        pos, limit = grid.centres(), 2 * radius
    else:
        h, w = grid
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pos, limit = torch.stack([yy, xx], dim=-1).reshape(-1, 2), radius
    pos = pos.to(device)
    return (pos[rows][:, None] - pos[None]).abs().amax(dim=2) <= limit


@lru_cache(maxsize=4)  # a 3D bias may be a sixteenth of the memory budget: keep few
def window_bias(grid: tuple[int, int] | Lattice3D, radius: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(M, M) symmetric bias: 0 where the patches (tokens) lie within the window, -inf elsewhere.
    Built in row chunks: ``in_window`` holds (rows, M, 3) position differences."""
    m = grid.n_tokens if isinstance(grid, Lattice3D) else grid[0] * grid[1]
    bias = torch.zeros((m, m), dtype=torch.float32, device=device)
    step = max(1, (1 << 22) // m)
    for r0 in range(0, m, step):
        rows = slice(r0, min(r0 + step, m))
        bias[rows].masked_fill_(~in_window(grid, radius, rows, device), float("-inf"))
    return bias


def _axis_pairs(n: int, radius: int) -> int:
    """Pairs (i, j) of positions on one axis of length n with |i - j| <= radius."""
    r = min(radius, n - 1)
    return n * (2 * r + 1) - r * (r + 1)


def _check_grid(grid: tuple[int, int]) -> tuple[int, int]:
    if len(grid) != 2 or int(grid[0]) < 1 or int(grid[1]) < 1:
        raise ValueError(f"grid must be two positive sides (h, w), got {grid!r}")
    return int(grid[0]), int(grid[1])


def _check_radius(radius: int) -> int:
    try:
        ok = int(radius) == radius and radius >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(radius, bool):
        raise ValueError(f"window radius must be a non-negative integer, got {radius!r}")
    return int(radius)


def _check_inputs(left: torch.Tensor, right: torch.Tensor, grid: tuple[int, int], radius: int,
                  with_argmax: bool) -> tuple[int, int, int]:
    """(h, w, radius) as ints, or a ValueError that names what does not fit."""
    h, w = _check_grid(grid)
    radius = _check_radius(radius)
    if left.dim() != 3 or right.dim() != 3:
        raise ValueError(f"left and right must be (images, patches, channels), got shapes "
                         f"{tuple(left.shape)} and {tuple(right.shape)}")
    if left.shape[2] != right.shape[2]:
        raise ValueError(f"left has {left.shape[2]} channels, right {right.shape[2]}")
    for name, x in (("left", left), ("right", right)):
        if x.shape[1] != h * w:
            raise ValueError(f"{name} has {x.shape[1]} patches per image, grid {h}x{w} needs {h * w}")
    if left.device != right.device:
        raise ValueError(f"left is on {left.device}, right on {right.device}")
    if with_argmax and h * w > _INT16_MAX + 1:
        raise ValueError(f"int16 argmax holds at most {_INT16_MAX + 1} patches per image, grid has {h * w}")
    return h, w, radius
