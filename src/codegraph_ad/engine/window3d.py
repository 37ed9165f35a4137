"""Nearest tokens restricted to a position window on a 3D token lattice (volumes, --window).

Co-registered volumes put the same anatomy in the same cube, so token m of a query volume
is compared only with the reference tokens whose centre lies within ``radius`` cells of m's
centre on every axis (Chebyshev distance, clipped at the borders): (2r+1)^3 candidates
instead of M on the cubic grid. The 2D kernel (window.py) cannot serve: volumes flatten their
grid to (g, g^2) for the 2D methods, and a 2D window over that pairs cubes far apart in depth.

Staggered lattices (volumes/lattice.py) hold a second grid shifted by half a cell on every
axis. The window keeps the same meaning there, distance between token centres in cells: a
token meets the tokens of its own grid within r cells, and those of the other grid whose
centres lie within r cells (half-integer offsets: 2r per axis, none at r = 0). So a radius of
g - 1 or more covers every token of both grids, as on the cubic grid alone. Supported rather
than refused: the shifted grid exists to catch lesions centred between cubes, and the
window's meaning (distance between centres) carries over to it without a special case.

Kernel: a Python loop over the window's offsets (never over tokens). The references are
laid in a zero-padded box, so that for one offset o the partners of a run of query tokens
are one contiguous slice of box rows: one batched product ``(P, A, C) x (P, C, B) -> (P, A, B)``
over those P positions, a -inf bias on box rows that hold no token, and a running max (and
argmax) over the offsets. Where the window covers much of the lattice (``use_offsets``) the
full (A M) x (B M) product with a -inf bias outside the window is faster and is used instead.
References, then planes of the first axis, then query volumes are chunked so that the
temporaries stay under ``budget_bytes`` (beyond the fp32 inputs). Runs where the inputs
are, fp32 (on CUDA subject to PyTorch's global TF32 switch, off by default).
"""

from __future__ import annotations

import math
from itertools import product

import torch

from codegraph_ad.engine.window import _CHUNK_CAP_BYTES, _check_radius, in_window
from codegraph_ad.features.lattice import Lattice3D, as_lattice

__all__ = ["Lattice3D", "as_lattice", "kernel_pair_cost_3d", "use_offsets", "window_block_3d",
           "window_pair_cost_3d"]

# Bytes held per (query row, query, reference) of a slab: the running max (fp32) and argmax
# (int16/int32), the product, its comparison mask, and the kept rows' copies at the end.
_PAIR_BYTES = 24
# use_offsets: speed per pair of the offsets' small products relative to the full product's
# GEMM, with one query image and at most (it grows as the square root of the query images).
_OFFSET_SPEED_ONE = 0.1
_OFFSET_SPEED_MAX = 0.3
# Rows the full product keeps at least per chunk (query images x query tokens).
_DENSE_ROWS = 64


def offset_range(origin_left: int, origin_right: int, radius: int) -> tuple[int, int]:
    """Integer offsets j - i (right cell j, left cell i, one axis) whose centres lie within
    ``radius`` cells: |j + o_r/2 - i - o_l/2| <= r with origins in half cells."""
    diff = origin_left - origin_right
    return -((2 * radius - diff) // 2), (2 * radius + diff) // 2


def window_pair_cost_3d(grid: tuple[int, int, int] | Lattice3D, radius: int) -> int:
    """Number of (m, m') token pairs inside the window, for cost estimates."""
    lattice, radius = as_lattice(grid), _check_radius(radius)
    total = 0
    for shape_l, org_l, _ in lattice.subgrids():
        for shape_r, org_r, _ in lattice.subgrids():
            lo, hi = offset_range(org_l, org_r, radius)
            count = 1
            for n_l, n_r in zip(shape_l, shape_r):
                count *= sum(max(0, min(n_l, n_r - o) - max(0, -o)) for o in range(lo, hi + 1))
            total += count
    return total


def argmax_dtype(n_tokens: int) -> torch.dtype:
    """int16 while it holds every token index (g <= 32 on a cubic grid), else int32."""
    return torch.int16 if n_tokens <= 32768 else torch.int32


def window_block_3d(left: torch.Tensor, right: torch.Tensor, grid: tuple[int, int, int] | Lattice3D,
                    radius: int, with_argmax: bool = True,
                    budget_bytes: int = 64 << 20) -> tuple[torch.Tensor, torch.Tensor | None]:
    """left: (A, M, C) unit token features of A query volumes, right: (B, M, C) of B references,
    on the lattice ``grid`` (a ``(d, h, w)`` tuple: the cubic grid alone). For every (a, b, m):
    the max dot product of left[a, m] with right[b, m'] over the tokens m' whose centre is
    within ``radius`` cells of m's centre on every axis.
    Returns (best (A, B, M) float32, argmax (A, B, M) flat index m' (``argmax_dtype(M)``), or None)."""
    lattice = as_lattice(grid)
    radius = _check_radius(radius)
    _check_inputs(left, right, lattice)
    left, right = left.float().contiguous(), right.float().contiguous()
    n_a, m, _ = left.shape
    n_b = right.shape[0]
    best = torch.empty((n_a, n_b, m), dtype=torch.float32, device=left.device)
    arg = torch.empty((n_a, n_b, m), dtype=argmax_dtype(m), device=left.device) if with_argmax else None
    if n_a == 0 or n_b == 0:
        return best, arg
    if left.device.type == "cpu":
        budget_bytes = min(budget_bytes, _CHUNK_CAP_BYTES)
    if use_offsets(lattice, radius, n_a):
        _offsets(left, right, _Frame(lattice, radius, left.device), best, arg, budget_bytes)
    else:
        _dense(left, right, lattice, radius, best, arg, budget_bytes)
    return best, arg


def use_offsets(grid: tuple[int, int, int] | Lattice3D, radius: int, n_left: int) -> bool:
    """Whether the loop over offsets is expected to beat the full product with a -inf bias.

    The offsets compute (offsets) x (boxed query rows) pairs in small per-position products,
    the full product M^2 pairs in one large GEMM that runs 3-10 times faster per pair (the
    gap narrows as query images add rows to each small product). Fitted to a few
    timings on 2 AVX2 cores (g = 8 and 16; A = 1, 4, 8; C = 96 and 384; r = 1, 2).
    """
    lattice = as_lattice(grid)
    return kernel_pair_cost_3d(lattice, radius, n_left) < lattice.n_tokens ** 2


def kernel_pair_cost_3d(grid: tuple[int, int, int] | Lattice3D, radius: int, n_left: int) -> float:
    """The kernel's estimated cost of one ordered volume pair, in token pairs of the full
    product: the offsets' pairs over their relative speed, or M^2 where the full product runs."""
    lattice, radius = as_lattice(grid), _check_radius(radius)
    full = float(lattice.n_tokens ** 2)
    if radius >= max(lattice.shape) - 1:  # the window is the whole lattice
        return full
    frame = _Frame(lattice, radius, torch.device("cpu"))
    pairs = sum(len(offs) * frame.slab_rows(k) for (k, _), offs in frame.offsets.items())
    speed = min(_OFFSET_SPEED_MAX, _OFFSET_SPEED_ONE * math.sqrt(max(1, n_left)))
    return min(pairs / speed, full)


def _dense(left: torch.Tensor, right: torch.Tensor, lattice: Lattice3D, radius: int,
           best: torch.Tensor, arg: torch.Tensor | None, budget: int) -> None:
    """Full (A t) x (B M) products over runs of t query tokens, -inf outside the window (no
    bias where it covers the lattice). Each run's bias is built once, for every reference."""
    n_a, m, c = left.shape
    n_b = right.shape[0]
    whole = radius >= max(lattice.shape) - 1
    a_step, b_step, t_step = _dense_steps(n_a, n_b, m, budget)
    for t0 in range(0, m, t_step):
        t1 = min(t0 + t_step, m)
        bias = None
        if not whole:
            near = in_window(lattice, radius, slice(t0, t1), left.device)
            bias = torch.zeros(near.shape, device=left.device).masked_fill_(~near, float("-inf"))
            bias = bias.view(1, t1 - t0, 1, m)
        for b0 in range(0, n_b, b_step):
            b1 = min(b0 + b_step, n_b)
            right_t = right[b0:b1].reshape(-1, c).T
            for a0 in range(0, n_a, a_step):
                a1 = min(a0 + a_step, n_a)
                sim = (left[a0:a1, t0:t1].reshape(-1, c) @ right_t).view(a1 - a0, t1 - t0, b1 - b0, m)
                if bias is not None:
                    sim.add_(bias)
                if arg is None:
                    best[a0:a1, b0:b1, t0:t1] = sim.amax(dim=3).permute(0, 2, 1)
                    continue
                val, idx = sim.max(dim=3)
                best[a0:a1, b0:b1, t0:t1] = val.permute(0, 2, 1)
                arg[a0:a1, b0:b1, t0:t1] = idx.permute(0, 2, 1).to(arg.dtype)


def _dense_steps(n_a: int, n_b: int, m: int, budget: int) -> tuple[int, int, int]:
    """Chunk sizes (queries, references, query tokens) of the full product under ``budget``.

    8 bytes per similarity (the product and the max's temporaries). The product keeps at
    least _DENSE_ROWS rows where it can (narrower ones run far below GEMM speed), then takes
    every reference, then grows the run of query tokens; references, then queries are split
    where even that does not fit.
    """
    per = 8 * m  # bytes per (query, token, reference)
    t_step = min(m, -(-_DENSE_ROWS // n_a))
    b_step = max(1, min(n_b, budget // (per * n_a * t_step)))
    if b_step == n_b:
        t_step = max(t_step, min(m, budget // (per * n_a * n_b)))
    elif budget < per * n_a * t_step:  # not even one reference at this run length
        t_step = max(1, budget // (per * n_a))
    a_step = n_a if budget >= per * n_a else max(1, budget // per)
    return a_step, b_step, t_step


class _Frame:
    """The lattice's sub-grids laid in one zero-padded box, so that a window offset is one
    constant shift of the flat box index: for offset o the reference rows of every query row
    are a contiguous slice, and the product needs no gather. The box pads each axis by the
    largest offset; rows of the box outside a sub-grid hold zeros, and a -inf bias keeps them
    from being chosen. Query rows in the padding are computed and dropped."""

    def __init__(self, lattice: Lattice3D, radius: int, device: torch.device) -> None:
        self.lattice, self.device = lattice, device
        self.pad = tuple(min(radius, s - 1) for s in lattice.shape)
        self.sides = tuple(s + 2 * p for s, p in zip(lattice.shape, self.pad))
        self.plane = self.sides[1] * self.sides[2]
        self.size = self.sides[0] * self.plane
        self.subgrids = lattice.subgrids()
        self.rows = [self._rows(shape) for shape, _, _ in self.subgrids]
        # per (left, right) sub-grid pair: the offsets (oz, oy, ox) with a pair of cells in the window
        self.offsets = {}
        for i, (shape_l, org_l, _) in enumerate(self.subgrids):
            for j, (shape_r, org_r, _) in enumerate(self.subgrids):
                lo, hi = offset_range(org_l, org_r, radius)
                axes = [range(max(lo, 1 - n_l), min(hi, n_r - 1) + 1) for n_l, n_r in zip(shape_l, shape_r)]
                self.offsets[i, j] = list(product(*axes))

    def _rows(self, shape: tuple[int, int, int]) -> torch.Tensor:
        """Flat box index of every cell of a sub-grid (C order)."""
        axes = [torch.arange(n) + p for n, p in zip(shape, self.pad)]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        return (z * self.plane + y * self.sides[2] + x).reshape(-1).to(self.device)

    def slab_rows(self, k: int) -> int:
        """Box rows spanned by sub-grid k's cells (its query rows over the whole depth)."""
        rows = self.rows[k]
        return int(rows[-1]) - int(rows[0]) + 1

    def shift(self, off: tuple[int, int, int]) -> int:
        return off[0] * self.plane + off[1] * self.sides[2] + off[2]

    def references(self, right: torch.Tensor, planes: tuple[int, int], arg_dtype: torch.dtype | None
                   ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Per sub-grid, box planes ``planes[0]:planes[1]`` only: the boxed references
        (rows, C, B), the bias (rows,) 0 on its cells and -inf elsewhere, and each box row's
        token index (rows,) for the argmax."""
        n_b, _, c = right.shape
        base, n_rows = planes[0] * self.plane, (planes[1] - planes[0]) * self.plane
        out = []
        for (shape, _, start), rows in zip(self.subgrids, self.rows):
            cells = shape[1] * shape[2]
            # the cells of this sub-grid on those planes: a contiguous run of its tokens
            c0 = min(shape[0], max(0, planes[0] - self.pad[0])) * cells
            c1 = min(shape[0], max(0, planes[1] - self.pad[0])) * cells
            local = rows[c0:c1] - base
            box = torch.zeros((n_rows, c, n_b), dtype=torch.float32, device=self.device)
            box[local] = right[:, start + c0 : start + c1].permute(1, 2, 0)
            bias = torch.full((n_rows,), float("-inf"), device=self.device)
            bias[local] = 0.0
            index = None
            if arg_dtype is not None:
                index = torch.zeros(n_rows, dtype=arg_dtype, device=self.device)
                index[local] = torch.arange(start + c0, start + c1, device=self.device).to(arg_dtype)
            out.append((box, bias, index))
        return out


def _offsets(left: torch.Tensor, right: torch.Tensor, frame: _Frame, best: torch.Tensor,
             arg: torch.Tensor | None, budget: int) -> None:
    """Every offset of the window as one batched product over the query rows of a slab."""
    n_a, _, c = left.shape
    n_b = right.shape[0]
    a_step, b_step, z_step = _steps(n_a, n_b, frame, c, budget)
    pz = frame.pad[0]
    for b0 in range(0, n_b, b_step):
        b1 = min(b0 + b_step, n_b)
        for z0 in range(0, frame.lattice.shape[0], z_step):
            z1 = min(z0 + z_step, frame.lattice.shape[0])
            # query cells z0:z1 sit on box planes z0+pz:z1+pz and reach pz planes either side
            refs = frame.references(right[b0:b1], (z0, z1 + 2 * pz), None if arg is None else arg.dtype)
            for a0 in range(0, n_a, a_step):
                a1 = min(a0 + a_step, n_a)
                for k, (shape, _, start) in enumerate(frame.subgrids):
                    cells = shape[1] * shape[2]
                    c0, c1 = min(z0, shape[0]) * cells, min(z1, shape[0]) * cells
                    if c0 == c1:
                        continue
                    tokens = slice(start + c0, start + c1)
                    rows = frame.rows[k][c0:c1] - z0 * frame.plane
                    vals, idx = _slab(left[a0:a1, tokens], rows, frame, refs, k, arg is not None)
                    best[a0:a1, b0:b1, tokens] = vals
                    if arg is not None:
                        arg[a0:a1, b0:b1, tokens] = idx


def _slab(left: torch.Tensor, rows: torch.Tensor, frame: _Frame,
          refs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], k: int,
          with_arg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Query tokens ``left: (A, P, C)`` at ``rows`` of the reference boxes (one slab of
    sub-grid k) against every offset of their window in every reference sub-grid: (A, B, P)
    maxima and argmax."""
    n_a, _, c = left.shape
    n_b = refs[0][0].shape[2]
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    query = torch.zeros((hi - lo, n_a, c), dtype=torch.float32, device=left.device)
    query[rows - lo] = left.permute(1, 0, 2)
    run_best = torch.full((hi - lo, n_a, n_b), float("-inf"), dtype=torch.float32, device=left.device)
    run_arg = torch.zeros(run_best.shape, dtype=refs[0][2].dtype, device=left.device) if with_arg else None
    sim = torch.empty_like(run_best)
    better = torch.empty(run_best.shape, dtype=torch.bool, device=left.device)
    for j, (box, bias, index) in enumerate(refs):
        for off in frame.offsets[k, j]:
            s = frame.shift(off)
            torch.bmm(query, box[lo + s : hi + s], out=sim)
            sim.add_(bias[lo + s : hi + s].view(-1, 1, 1))
            if run_arg is None:
                torch.maximum(run_best, sim, out=run_best)
                continue
            assert index is not None
            torch.gt(sim, run_best, out=better)
            torch.where(better, sim, run_best, out=run_best)
            torch.where(better, index[lo + s : hi + s].view(-1, 1, 1), run_arg, out=run_arg)
    keep = rows - lo
    vals = run_best[keep].permute(1, 2, 0)
    return vals, None if run_arg is None else run_arg[keep].permute(1, 2, 0)


def _steps(n_a: int, n_b: int, frame: _Frame, c: int, budget: int) -> tuple[int, int, int]:
    """Chunk sizes (queries, references, cell planes of the first axis) under ``budget`` bytes.

    A chunk of a queries, b references and z planes holds the boxed references of every
    sub-grid on z + 2 pad planes (``n_sub * (z + 2 pad) * plane * b * C * 4`` bytes) and, per
    plane of query rows, ``a * C * 4 + a * b * _PAIR_BYTES`` bytes per row. All queries and
    references are kept if one plane allows it (the product's rows and columns: its
    efficiency grows with both), then as many planes as fit; else references are split,
    then queries. At least one of each.
    """
    n_sub, depth, pz = len(frame.subgrids), frame.lattice.shape[0], frame.pad[0]

    def size(a: int, b: int, z: int) -> int:
        return n_sub * (z + 2 * pz) * frame.plane * b * c * 4 + z * frame.plane * (a * c * 4 + a * b * _PAIR_BYTES)

    if size(n_a, n_b, 1) <= budget:
        per_plane = size(n_a, n_b, 2) - size(n_a, n_b, 1)
        return n_a, n_b, max(1, min(depth, 1 + (budget - size(n_a, n_b, 1)) // per_plane))
    if size(n_a, 1, 1) <= budget:
        per_ref = size(n_a, 2, 1) - size(n_a, 1, 1)
        return n_a, max(1, min(n_b, 1 + (budget - size(n_a, 1, 1)) // per_ref)), 1
    per_query = size(2, 1, 1) - size(1, 1, 1)
    return max(1, min(n_a, 1 + (budget - size(1, 1, 1)) // per_query)), 1, 1


def _check_inputs(left: torch.Tensor, right: torch.Tensor, lattice: Lattice3D) -> None:
    """A ValueError that names what does not fit, or nothing."""
    if left.dim() != 3 or right.dim() != 3:
        raise ValueError(f"left and right must be (volumes, tokens, channels), got shapes "
                         f"{tuple(left.shape)} and {tuple(right.shape)}")
    if left.shape[2] != right.shape[2]:
        raise ValueError(f"left has {left.shape[2]} channels, right {right.shape[2]}")
    m = lattice.n_tokens
    for name, x in (("left", left), ("right", right)):
        if x.shape[1] != m:
            raise ValueError(f"{name} has {x.shape[1]} tokens per volume, the lattice {lattice} holds {m}")
    if left.device != right.device:
        raise ValueError(f"left is on {left.device}, right on {right.device}")
