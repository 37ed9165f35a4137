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
from codegraph_ad.engine.device import block_cap_bytes, fp32_matmul
from codegraph_ad.engine.executor import LOCAL, Executor, SlotRows
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.plan import ReferencePlan
from codegraph_ad.engine.window import in_window, tiled_pair_cost, window_bias, window_block
from codegraph_ad.engine.window3d import Lattice3D, as_lattice, kernel_pair_cost_3d, window_block_3d
from codegraph_ad.engine.products import PRECISIONS, make_product
from codegraph_ad.progress import Progress

# Share of the memory budget the similarity block may use; the rest holds features,
# minima and reduction temporaries.
_BLOCK_SHARE = 0.25
# Blocks larger than this stop fitting the caches. Measured on 2 cores: a 16 MB block scored
# N=40, M=256 in 1.25 s against 2.8 s for a 1 GB block (same FLOPs); products of side 1024,
# 2048 and 3072 ran at 233 / 231 / 164 GFLOP/s in fp32 and the int8 engine scored N=32,
# M=1024 at 581 GOPS with 1024-side blocks against 525 with 2048. The dense path's square
# blocks take their product's own cap (``cpu_block_cap``, engine/products.py: 2048-side for
# fp32 and bf16); the listed pairs' strips and the window kernel keep this one.
_BLOCK_CAP_BYTES = 1024 * 1024 * 4


@dataclass
class PairMinima:
    """Nearest-patch results of one (layer, degree) feature stack, in the slots of a plan.

    dist: ``(N, S, M)`` float32; ``dist[q, s, m]`` = distance from patch m of image q to its
        nearest patch in image ``slot_images[q, s]``. Exact plan (``refs`` None): S = N,
        slot j is image j and ``dist[q, q, :] = inf``.
    argmin: ``(N, S, M)`` integer (``argmin_dtype(M)``) or None; index in that image of the
        nearest patch. Read it through ``.long()``: a uint8 tensor would index as a mask.
    refs: ``(N, K)`` sorted reference ids per query (a screened or fixed-K plan), or None.
    """

    dist: torch.Tensor
    argmin: torch.Tensor | None
    refs: torch.Tensor | None = None

    def slot_images(self) -> torch.Tensor:
        if self.refs is not None:
            return self.refs
        rows, slots = self.dist.shape[0], self.dist.shape[1]  # a query shard holds rows < slots
        return torch.arange(slots, device=self.dist.device).view(1, -1).expand(rows, -1)


def argmin_dtype(n_patches: int) -> torch.dtype:
    """The narrowest integer that holds a patch index: CoDeGraph keeps one argmin per stored
    minimum for all 12 maps, so at M = 256 uint8 instead of int16 saves 300 MB at N = 1,000, K = 100."""
    if n_patches <= 256:
        return torch.uint8
    return torch.int16 if n_patches <= 32768 else torch.int32


def images_per_block(n_patches: int, budget_mb: float, itemsize: int = 4,
                     device: str | torch.device = "cpu", cpu_cap: int | None = None) -> int:
    """How many images fit one side of a square similarity block under ``budget_mb``
    (``cpu_cap``: the product's CPU cap, default ``_BLOCK_CAP_BYTES``)."""
    block_bytes = _block_bytes(budget_mb, device, cpu_cap)
    side = int(math.sqrt(block_bytes / itemsize)) // max(n_patches, 1)
    return max(1, side)


def _block_bytes(budget_mb: float, device: str | torch.device, cpu_cap: int | None = None) -> float:
    """A quarter of the budget, capped where the device stops gaining (cache-sized on a CPU)."""
    if torch.device(device).type == "cpu":
        cap = _BLOCK_CAP_BYTES if cpu_cap is None else cpu_cap
    else:
        cap = block_cap_bytes(device)
    return min(budget_mb * 1e6 * _BLOCK_SHARE, cap)


def similarity_to_distance(sim: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of unit vectors from their dot product: sqrt(max(0, 2 - 2 s))."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * sim, min=0.0))


def resolve_precision(precision: str, n_patches: int, device: str | torch.device = "cpu") -> str:
    """``precision`` itself, or for ``fast`` the mode this engine runs fastest in on this
    device at ``n_patches`` patches per image (timed once per process, engine/autotune.py)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return fastest_reduced_precision(n_patches, pair_minima, device) if precision == "fast" else precision


def _product_for(precision: str, m: int, device: torch.device):
    return make_product(resolve_precision(precision, m, device), m, device)


def pair_minima(
    feats: torch.Tensor,
    budget_mb: float = 4096,
    precision: str = "fp32",
    with_argmin: bool = False,
    progress: bool | Progress = False,
    desc: str = "mutual scoring",
    executor: Executor | None = None,
    bias: torch.Tensor | None = None,
) -> PairMinima:
    """Nearest-patch distances between every ordered image pair of ``feats: (N, M, C)`` (unit rows).

    ``bf16`` and ``int8`` keep their own maxima (similarity error below 1e-3 for bf16's near
    neighbours, about 1e-3 for int8, on unit vectors; see products.py). ``fast`` is whichever
    of the three runs fastest here.

    progress: a stage's Progress, whose bar the image blocks advance (one unit of it), or a
    bool for a bar of its own named ``desc``. executor: where the blocks run (engine/executor.py).
    bias: a symmetric (M, M) fp32 mask added to every pair's similarities before the maxima
    (0 where patch m may meet patch m', -inf elsewhere: a position window); fp32 only.
    """
    return _collect(_dense_job(feats, budget_mb, precision, with_argmin, bias), executor, progress, desc)


def pair_minima_with_argmins(feats: torch.Tensor, budget_mb: float = 4096, precision: str = "fp32") -> PairMinima:
    """``pair_minima`` with argmins: what a first pass runs, and so what ``fast`` times for
    CoDeGraph (its argmin bookkeeping costs as much as the product on a CPU)."""
    return pair_minima(feats, budget_mb, precision, with_argmin=True)


def _dense_job(feats: torch.Tensor, budget_mb: float, precision: str, with_argmin: bool,
               bias: torch.Tensor | None, refs: torch.Tensor | None = None) -> "_MapJob":
    """Every ordered pair by square blocks of images; ``refs``: keep only these slots (the
    dense switch of a listed plan)."""
    n, m, c = feats.shape
    feats = feats.float().contiguous()
    product = _product_for(precision, m, feats.device)
    _check_bias(bias, product, m)
    low = product.prepare(feats.reshape(n * m, c))
    b = min(n, images_per_block(m, budget_mb, device=feats.device, cpu_cap=product.cpu_block_cap))
    starts = list(range(0, n, b))
    blocks = [(i0, min(i0 + b, n), j0, min(j0 + b, n)) for i0 in starts for j0 in starts if j0 >= i0]
    layout = SlotLayout(n, n, m, product, with_argmin, dense=True, refs=refs)
    ctx = _BlockContext(low, product, m, with_argmin, bias=bias)
    return _MapJob(_dense_block, ctx, blocks, layout, feats)


@dataclass
class SlotLayout:
    """Where one map's slot rows go and how they become distances: what a holder of the
    minima (this process, or a worker holding a range of queries) needs to know.

    slots: slots the tasks write (the batch's images when ``dense``, else the plan's list).
    product: the pair product (None: the window kernel's fp32 similarities). with_arg: the
    tasks send argmins and the caller gets them back. dense: each query's own slot becomes
    inf. refs: the plan's listed references (the result's slots); with ``dense`` they are cut
    out of the dense slots. exact_small: with argmins and a reduced precision, recompute the
    small distances in fp32 (``_exact_small_distances``); off for the maps whose links the
    graph does not read (CoDeGraph's other degrees: methods/first_pass.py ``exact_degrees``).
    """

    n: int
    slots: int
    m: int
    product: object | None
    with_arg: bool
    dense: bool
    refs: torch.Tensor | None = None
    exact_small: bool = True

    def empty(self, rows: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Minima of ``rows`` queries before any task wrote to them."""
        if self.product is not None:
            return _empty_minima(rows, self.slots, self.m, self.product, self.with_arg, torch.device(device))
        sim = torch.full((rows, self.slots, self.m), -2.0, dtype=torch.float32, device=device)
        arg = torch.zeros((rows, self.slots, self.m), dtype=argmin_dtype(self.m), device=device) if self.with_arg else None
        return sim, arg

    @property
    def recomputes_small(self) -> bool:
        """Whether ``finish`` recomputes small distances in fp32 (then it needs the map's features)."""
        return (self.product is not None and self.with_arg and self.exact_small
                and not self.product.small_distances_exact)

    def finish(self, best_sim: torch.Tensor, best_arg: torch.Tensor | None, q0: int = 0,
               feats: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Distances (and argmins) of queries ``q0 : q0 + rows`` from their written maxima (in place).

        feats: the whole batch's ``(N, M, C)`` unit features of this map; given with argmins
        and a reduced precision, the small distances are recomputed in fp32 at their argmins
        (``_exact_small_distances``)."""
        rows = best_sim.shape[0]
        if self.product is None:
            dist = similarity_to_distance(best_sim)
        else:
            best_sim = self.product.to_similarity(best_sim)
            # in place: at N = 500, M = 1024 each (N, N, M) temporary is 1 GB
            dist = best_sim.mul_(-2.0).add_(2.0).clamp_(min=0.0).sqrt_()
            if feats is not None and best_arg is not None and self.recomputes_small:
                slot_images = self.refs[q0 : q0 + rows] if self.refs is not None and not self.dense else None
                _exact_small_distances(dist, best_arg, feats, q0, slot_images)
        arg = best_arg if self.with_arg else None
        if self.dense:
            idx = torch.arange(rows, device=dist.device)
            dist[idx, idx + q0] = float("inf")
            if self.refs is not None:  # the dense switch: the listed plan's slots
                at = torch.arange(rows, device=dist.device).unsqueeze(1)
                keep = self.refs[q0 : q0 + rows].to(dist.device)
                dist = dist[at, keep]
                arg = None if arg is None else arg[at, keep]
        return dist, arg


@dataclass
class _MapJob:
    """One map's pair tasks (``fn(ctx, task)`` -> slot rows) and their slot layout."""

    fn: object
    ctx: object
    tasks: list
    layout: SlotLayout
    feats: torch.Tensor  # (N, M, C) fp32 unit features


def _collect(job: _MapJob, executor: Executor | None, progress: bool | Progress, desc: str) -> PairMinima:
    """Run a map's tasks where the executor says and hold all its minima here."""
    best_sim, best_arg = job.layout.empty(job.layout.n, job.feats.device)
    _run_tasks(executor, job.fn, job.ctx, job.tasks, best_sim, best_arg, progress, desc)
    dist, arg = job.layout.finish(best_sim, best_arg, 0, job.feats)
    return PairMinima(dist=dist, argmin=arg, refs=job.layout.refs)


# Reduced-precision distances below this are recomputed in fp32 at their argmins (0.2: int8
# reads a true 0.08 as up to 0.11 on near-duplicates, tests/engine/test_mutual.py). A
# similarity error of about 1e-3 is a relative distance error of about 1e-3 / d^2: small
# distances are where it is large (on bottle at 224 px, 21% (bf16) and 45% (int8) median
# below d = 0.05) and where CoDeGraph's endurance ratios divide (docs/codegraph.md). Below
# 0.2 bottle's dark background makes them many: bf16's first pass at 224 px took 84 s with
# the gather against 36 s without (fp32 87 s); a narrower set is the next step.
_EXACT_BELOW = 0.2
_EXACT_ROWS = 16  # query rows whose small entries are found at a time (a bool mask each)


def _exact_small_distances(dist: torch.Tensor, arg: torch.Tensor, feats: torch.Tensor, q0: int,
                           slot_images: torch.Tensor | None) -> None:
    """Overwrite the entries of ``dist (rows, S, M)`` below ``_EXACT_BELOW`` with the fp32
    distance of each query patch to its stored nearest patch ``arg`` in the slot's image
    (dense slots: image s, whose own slot is skipped: it becomes inf; listed slots:
    ``slot_images (rows, S)``)."""
    m, c = feats.shape[1], feats.shape[2]
    flat = feats.reshape(-1, c)
    for r0 in range(0, dist.shape[0], _EXACT_ROWS):
        part = dist[r0 : r0 + _EXACT_ROWS]
        small = part < _EXACT_BELOW
        if slot_images is None:  # a query's own image: distance 0 at every patch, set to inf later
            own = torch.arange(small.shape[0], device=small.device)
            small[own, own + r0 + q0] = False
        r, s, p = torch.nonzero(small, as_tuple=True)
        if r.numel() == 0:
            continue
        images = s if slot_images is None else slot_images[r0 : r0 + _EXACT_ROWS].to(s.device)[r, s]
        query = flat[((r + r0 + q0) * m + p).to(flat.device)]
        neigh = flat[(images * m + arg[r0 : r0 + _EXACT_ROWS][r, s, p].long()).to(flat.device)]
        part[r, s, p] = similarity_to_distance((query * neigh).sum(dim=1)).to(part.device)


@dataclass
class _BlockContext:
    """What every pair task reads: the prepared features, once (a cluster holds one copy)."""

    low: torch.Tensor  # (N*M, C') prepared features
    product: object
    m: int
    with_arg: bool
    pairs: tuple[torch.Tensor, ...] | None = None  # listed plans: (left, right, slot_ab, slot_ba)
    bias: torch.Tensor | None = None  # (M, M) symmetric window mask, added before the maxima


def _empty_minima(n: int, slots: int, m: int, product, with_arg: bool,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    best_sim = torch.full((n, slots, m), product.empty_value, dtype=product.out_dtype, device=device)
    best_arg = (torch.zeros((n, slots, m), dtype=argmin_dtype(m), device=device)
                if with_arg else None)
    return best_sim, best_arg


def _dense_block(ctx: _BlockContext, block: tuple[int, int, int, int]) -> list[SlotRows]:
    """One square block of image pairs: i -> j from the row maxima, j -> i from the columns."""
    i0, i1, j0, j1 = block
    m, bi, bj = ctx.m, i1 - i0, j1 - j0
    sim = ctx.product.block(ctx.low[i0 * m : i1 * m], ctx.product.right(ctx.low[j0 * m : j1 * m]))
    sim = sim.unflatten(1, (bj, m)).unflatten(0, (bi, m))  # a view: CPU blocks have padded rows
    if ctx.bias is not None:
        sim.add_(ctx.bias.view(1, m, 1, m))
    rows_i, rows_j = torch.arange(i0, i1, device=sim.device), torch.arange(j0, j1, device=sim.device)
    v, a = ctx.product.nearest(sim, 3, ctx.with_arg)  # (bi, m, bj)
    out = [SlotRows(rows_i.repeat_interleave(bj), rows_j.repeat(bi), v.permute(0, 2, 1).reshape(bi * bj, m),
                    None if a is None else a.permute(0, 2, 1).reshape(bi * bj, m))]
    if j0 != i0:
        v, a = ctx.product.nearest(sim, 1, ctx.with_arg)  # (bi, bj, m)
        out.append(SlotRows(rows_j.repeat_interleave(bi), rows_i.repeat(bj), v.permute(1, 0, 2).reshape(bj * bi, m),
                            None if a is None else a.permute(1, 0, 2).reshape(bj * bi, m)))
    return out


def _run_tasks(executor: Executor | None, fn, ctx, tasks: list, best_sim: torch.Tensor,
               best_arg: torch.Tensor | None, progress: bool | Progress, desc: str) -> None:
    """Run the tasks where the executor says and write each finished slot row once."""
    with Progress.of(progress).stage(desc, len(tasks), "blocks") as bar:
        for rows in (executor or LOCAL).map(fn, ctx, tasks):
            for r in rows:
                q, sl = r.queries.to(best_sim.device), r.slots.to(best_sim.device)
                best_sim[q, sl] = r.values.to(best_sim.device)
                if best_arg is not None and r.args is not None:
                    best_arg[q, sl] = r.args.to(device=best_arg.device, dtype=best_arg.dtype)
            bar.advance()


@dataclass
class RefinedMinima:
    """A first-pass minima array with the entries that a reduced reference set changed.

    Held as the shared first-pass ``base`` plus the changed entries only, so refining every
    map of a large batch costs a few MB, not a copy of each (N, S, M) array; ``materialize``
    builds the full array when a reader needs it (one map at a time).
    """

    base: torch.Tensor
    queries: torch.Tensor
    slots: torch.Tensor
    patches: torch.Tensor
    values: torch.Tensor

    @classmethod
    def unchanged(cls, base: torch.Tensor) -> "RefinedMinima":
        empty = torch.zeros(0, dtype=torch.long)
        return cls(base, empty, empty, empty, torch.zeros(0))

    def materialize(self) -> torch.Tensor:
        if self.values.numel() == 0:
            return self.base
        out = self.base.clone()
        out[self.queries, self.slots, self.patches] = self.values
        return out


def refine_minima(
    feats: torch.Tensor,
    minima: PairMinima,
    excluded: torch.Tensor,
    budget_mb: float = 4096,
    window: int | None = None,
    grid: tuple[int, ...] | Lattice3D | None = None,
) -> torch.Tensor:
    """Distances against a reference set with some patch positions removed (full array)."""
    refined = refined_entries(feats, minima, excluded, budget_mb, window, grid)
    return refined.materialize() if refined.values.numel() else minima.dist.clone()


def refined_entries(
    feats: torch.Tensor,
    minima: PairMinima,
    excluded: torch.Tensor,
    budget_mb: float = 4096,
    window: int | None = None,
    grid: tuple[int, ...] | Lattice3D | None = None,
    query_offset: int = 0,
) -> RefinedMinima:
    """The entries of ``minima`` that change when the ``excluded: (N, M)`` positions leave the references.

    Only the slots of reference images that lost patches are recomputed, and only for
    queries whose stored nearest patch was removed when argmins exist; the rest of the first
    pass is reused as is. An image with every patch excluded is at infinite distance.
    window, grid: the first pass's position window (``plan_minima``); the recomputed nearest
    patch is searched inside it too, so a refined entry means what the first pass's did (a
    patch whose window holds no remaining patch is at infinite distance).
    query_offset: ``minima`` holds the queries ``query_offset :`` of the batch whose features
    ``feats`` are (a query shard); its entries are refined as the whole array's would be.
    """
    n, m, c = feats.shape
    dev = minima.dist.device
    feats = feats.float().to(dev)
    excluded = excluded.to(dev)
    flat = feats.reshape(n * m, c)
    slot_images = minima.slot_images().to(dev)
    rows_per_chunk = max(1, int(budget_mb * 1e6 * _BLOCK_SHARE / 4 / max(m, 1)))
    window_at = None if window is None else _window_grid(grid, m)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for j in torch.nonzero(excluded.any(dim=1)).flatten().tolist():
        queries, slots = torch.nonzero(slot_images == j, as_tuple=True)  # who holds image j, and where
        own = queries + query_offset != j  # the exact plan's self slot stays at infinity
        queries, slots = queries[own], slots[own]
        keep = ~excluded[j]
        if not bool(keep.any()):
            q_all, s_all = queries.repeat_interleave(m), slots.repeat_interleave(m)
            patch_idx = torch.arange(m, device=dev).repeat(queries.numel())
            parts.append((q_all, s_all, patch_idx, torch.full((q_all.numel(),), float("inf"), device=dev)))
            continue
        if minima.argmin is not None:
            hit = excluded[j][minima.argmin[queries, slots, :].long()]  # (P, M): nearest patch removed
        else:
            hit = torch.ones((queries.numel(), m), dtype=torch.bool, device=dev)
        pair_idx, patch_idx = torch.nonzero(hit, as_tuple=True)
        q_all, s_all = queries[pair_idx], slots[pair_idx]
        rows_all = (q_all + query_offset) * m + patch_idx
        refs = feats[j][keep] if window is None else feats[j]
        values = torch.empty(rows_all.numel(), dtype=torch.float32, device=dev)
        with fp32_matmul(dev):
            for s0 in range(0, rows_all.numel(), rows_per_chunk):
                part = slice(s0, s0 + rows_per_chunk)
                sim = flat[rows_all[part]] @ refs.T
                if window_at is not None:  # remaining patches inside each query patch's window only
                    sim.masked_fill_(~(in_window(window_at, window, patch_idx[part], dev) & keep), float("-inf"))
                values[part] = similarity_to_distance(sim.max(dim=1).values)
        parts.append((q_all, s_all, patch_idx, values))
    if not parts:
        return RefinedMinima.unchanged(minima.dist)
    q_cat, s_cat, p_cat, v_cat = (torch.cat(x) for x in zip(*parts))
    return RefinedMinima(minima.dist, q_cat, s_cat, p_cat, v_cat)


def plan_minima(
    feats: torch.Tensor,
    plan: ReferencePlan | None = None,
    budget_mb: float = 4096,
    precision: str = "fp32",
    with_argmin: bool = False,
    progress: bool | Progress = False,
    desc: str = "mutual scoring",
    window: int | None = None,
    grid: tuple[int, int] | tuple[int, int, int] | Lattice3D | None = None,
    executor: Executor | None = None,
    exact_small: bool = True,
) -> PairMinima:
    """Nearest-patch distances for the image pairs of ``plan`` (None: the exact plan).

    The exact plan is the dense block product of ``pair_minima``; a screened or fixed-K plan
    multiplies only its listed pairs, each unordered pair once for both directions, so the
    cost is (pairs listed) x M^2 C instead of N^2 M^2 C. ``window``: a patch meets only the
    patches within that many grid cells of its own position, fp32; ``grid`` = the patch grid
    ``(h, w)``, or for volume tokens their 3D lattice (a ``(d, h, w)`` tuple or a Lattice3D).
    executor: where the pair tasks run (engine/executor.py; None: this process).
    exact_small: with argmins in bf16 or int8, the distances below ``_EXACT_BELOW`` are
    recomputed in fp32 at their argmins (``SlotLayout.exact_small``; fp32 and bf16x3 keep
    their own, ``small_distances_exact``).
    """
    job = plan_job(feats, plan, budget_mb, precision, with_argmin, window, grid, exact_small)
    return _collect(job, executor, progress, desc)


def map_scores(job: _MapJob, q: float, executor: Executor | None = None, progress: bool | Progress = False,
               desc: str = "mutual scoring") -> torch.Tensor:
    """MSM scores ``(N, M)`` of one map. An executor that holds query shards (Ray) keeps the
    map's minima spread over its workers; otherwise they are held here, as ``plan_minima``'s."""
    shard_scores = getattr(executor, "shard_scores", None)
    if shard_scores is not None:
        return shard_scores(job, q, progress, desc)
    minima = _collect(job, executor, progress, desc)
    return msm_scores(minima.dist, q, refs=job.layout.refs)


def plan_job(feats: torch.Tensor, plan: ReferencePlan | None = None, budget_mb: float = 4096,
             precision: str = "fp32", with_argmin: bool = False, window: int | None = None,
             grid: tuple[int, int] | tuple[int, int, int] | Lattice3D | None = None,
             exact_small: bool = True) -> _MapJob:
    """The pair tasks of ``plan_minima`` and their slot layout, to be run by any executor."""
    job = _plan_job(feats, plan, budget_mb, precision, with_argmin, window, grid)
    job.layout.exact_small = exact_small
    return job


def _plan_job(feats: torch.Tensor, plan: ReferencePlan | None, budget_mb: float, precision: str,
              with_argmin: bool, window: int | None,
              grid: tuple[int, int] | tuple[int, int, int] | Lattice3D | None) -> _MapJob:
    n = feats.shape[0]
    plan = plan if plan is not None else ReferencePlan(n)
    if plan.n_images != n:
        raise ValueError(f"the plan is for {plan.n_images} images, the features hold {n}")
    if window is not None:
        grid = _window_grid(grid, feats.shape[1])
        if symmetric_window_is_cheaper(plan, grid, window, budget_mb, feats.device):
            bias = window_bias(grid, window, feats.device)
            return _product_job(feats, plan, budget_mb, "fp32", with_argmin, bias)
        return _window_job(feats, plan, budget_mb, with_argmin, window, grid)
    return _product_job(feats, plan, budget_mb, precision, with_argmin)


def _product_job(feats: torch.Tensor, plan: ReferencePlan, budget_mb: float, precision: str,
                 with_argmin: bool, bias: torch.Tensor | None = None) -> _MapJob:
    """The plan's pairs by whole-image products (both directions of a pair from one product)."""
    if plan.dense:
        return _dense_job(feats, budget_mb, precision, with_argmin, bias)
    if dense_is_cheaper(plan, feats.shape[1], budget_mb):
        return _dense_job(feats, budget_mb, precision, with_argmin, bias, refs=plan.refs)
    return _listed_job(feats, plan, budget_mb, precision, with_argmin, bias)


# What one patch pair of the symmetric full product with a window bias costs (it serves both
# directions) against one unit of the window kernel's own estimate of an ordered pair (2D:
# engine/window.py tiled_pair_cost; 3D: engine/window3d.py kernel_pair_cost_3d). Measured on 2
# quiet AVX2 cores, random unit tokens, C = 384, exact and fixed-K plans
# (benchmarks/results/window_symmetric.json): 0.9-1.9 against the 2D tiles (M = 256 and
# 1,024, r = 1..8; median 1.4), 0.6-1.25 against the 3D offsets (12^3 tokens, r = 1..4), whose
# estimate is optimistic at r = 2. With these the rule took the faster path in 33 of the 36
# cases of that benchmark; the three others cost 6-11%.
_SYMMETRIC_PAIR_COST_2D = 1.5
_SYMMETRIC_PAIR_COST_3D = 0.8


def symmetric_window_is_cheaper(plan: ReferencePlan, grid: tuple[int, int] | Lattice3D, radius: int,
                                budget_mb: float, device: torch.device | str = "cpu") -> bool:
    """Whether a window runs faster as whole-image products with a -inf bias outside the
    window than in its kernel (2D tiles, 3D offsets). The kernels compute each direction of a
    pair on its own, about (2r+1)^2 (3D: (2r+1)^3) pairs per patch; the full product M^2 for
    both directions at once: wide windows cost less that way (2D: r >= 4 at 16 x 16, r >= 7 at
    32 x 32; 3D: r >= 2 on 12^3 tokens). The (M, M) bias must fit a sixteenth of the budget
    (3D lattices of up to 8,192 tokens at the default 4 GB)."""
    n = plan.n_images
    lattice = grid if isinstance(grid, Lattice3D) else None
    m = lattice.n_tokens if lattice is not None else grid[0] * grid[1]
    if n < 2 or m * m * 4 > budget_mb * 1e6 / 16:
        return False

    def kernel_cost(n_left: int) -> float:
        if lattice is not None:
            return kernel_pair_cost_3d(lattice, radius, n_left)
        return tiled_pair_cost(n_left, grid[0], grid[1], radius)

    if plan.dense:
        kernel = n * (n - 1) * kernel_cost(_window_queries_per_task(plan, grid, m, budget_mb, device))
        full_pairs = n * (n - 1) / 2
    else:
        kernel = plan.refs.numel() * kernel_cost(1)
        full_pairs = n * (n - 1) / 2 if dense_is_cheaper(plan, m, budget_mb) else plan.n_pairs()
    per_pair = _SYMMETRIC_PAIR_COST_3D if lattice is not None else _SYMMETRIC_PAIR_COST_2D
    return full_pairs * m * m * per_pair < kernel


def _check_bias(bias: torch.Tensor | None, product, m: int) -> None:
    if bias is None:
        return
    if not product.exact:
        raise ValueError("a window bias needs the fp32 product (the reduced precisions keep integer maxima)")
    if tuple(bias.shape) != (m, m):
        raise ValueError(f"the window bias must be ({m}, {m}), got {tuple(bias.shape)}")


# What a listed pair costs against an exact-plan pair (both directions from one product):
# measured on 2 AVX2 cores, 1.6x at M = 256 (one 256-row product per left image and the
# gathers of non-adjacent partners, against square blocks) and 1.0x at M = 1,024
# (benchmarks/results/screening_224.md: p = 80 took 1.20x the time of p = 100 for 92% of the
# pairs). Above 1 / cost of the pairs, the exact plan's blocks are cheaper.
_LISTED_PAIR_COST_SMALL_M = 1.6
_SMALL_M = 384
# The dense minima may take this share of the budget when they replace a listed plan's.
_DENSE_SHARE_OF_BUDGET = 0.25


def dense_is_cheaper(plan: ReferencePlan, m: int, budget_mb: float) -> bool:
    """Whether a listed plan's pairs are computed faster as the exact plan's dense blocks
    (then cut to the listed slots): at M <= 384 once the list holds more than 1 / 1.6 of all
    pairs and the dense (N, N, M) minima fit a quarter of the memory budget."""
    n = plan.n_images
    if plan.dense or m > _SMALL_M or n < 2:
        return False
    if n * n * m * (4 + argmin_dtype(m).itemsize) > _DENSE_SHARE_OF_BUDGET * budget_mb * 1e6:
        return False
    return plan.n_pairs() * _LISTED_PAIR_COST_SMALL_M > n * (n - 1) / 2


def _listed_job(feats: torch.Tensor, plan: ReferencePlan, budget_mb: float, precision: str,
                with_argmin: bool, bias: torch.Tensor | None = None) -> _MapJob:
    """The sparse plan's pairs, grouped by their left image: one product of that image's
    patches against a run of its partners' patches serves both directions of every pair."""
    n, m, c = feats.shape
    feats = feats.float().contiguous()
    product = _product_for(precision, m, feats.device)
    _check_bias(bias, product, m)
    layout = SlotLayout(n, plan.n_slots, m, product, with_argmin, dense=False, refs=plan.refs)
    low = product.prepare(feats.reshape(n * m, c))
    pairs = plan.unordered_pairs()
    block_bytes = _block_bytes(budget_mb, feats.device)
    per_block = max(1, int(block_bytes // (4 * m * m)))
    ends = torch.unique_consecutive(pairs[0], return_counts=True)[1].cumsum(0).tolist()
    chunks = []
    lo = 0
    for hi in ends:  # runs of one left image, cut to the block size
        chunks.extend((s0, min(s0 + per_block, hi)) for s0 in range(lo, hi, per_block))
        lo = hi
    ctx = _BlockContext(low, product, m, with_argmin, tuple(t.to(feats.device) for t in pairs), bias)
    return _MapJob(_listed_chunk, ctx, chunks, layout, feats)


def _listed_chunk(ctx: _BlockContext, chunk: tuple[int, int]) -> list[SlotRows]:
    """Pairs ``s0:s1`` of the plan's list, all with the same left image a."""
    s0, s1 = chunk
    left, right, slot_ab, slot_ba = (t[s0:s1] for t in ctx.pairs)
    m, a = ctx.m, int(left[0])
    width = ctx.low.shape[1]
    lo, hi = int(right[0]), int(right[-1]) + 1
    if hi - lo == s1 - s0:  # consecutive partners (always at one per block): a view, no copy
        partners = ctx.low[lo * m : hi * m]
    else:
        partners = ctx.low.view(-1, m, width)[right].reshape(-1, width)
    sim = ctx.product.block(ctx.low[a * m : (a + 1) * m], ctx.product.right(partners)).unflatten(1, (s1 - s0, m))
    if ctx.bias is not None:
        sim.add_(ctx.bias.view(m, 1, m))
    out = []
    # reduce the whole block, then keep the directions the plan lists: cheaper than copying
    # the block's listed columns out first
    fwd = torch.nonzero(slot_ab >= 0).flatten()  # a lists the partner: a -> partner
    if fwd.numel():
        v, i = ctx.product.nearest(sim, 2, ctx.with_arg)  # (m, partners)
        out.append(SlotRows(torch.full((fwd.numel(),), a, device=sim.device), slot_ab[fwd], v.T[fwd],
                            None if i is None else i.T[fwd]))
    bwd = torch.nonzero(slot_ba >= 0).flatten()  # the partner lists a: partner -> a
    if bwd.numel():
        v, i = ctx.product.nearest(sim, 0, ctx.with_arg)  # (partners, m)
        out.append(SlotRows(right[bwd], slot_ba[bwd], v[bwd], None if i is None else i[bwd]))
    return out


def _window_grid(grid: tuple[int, ...] | Lattice3D | None, m: int) -> tuple[int, int] | Lattice3D:
    """The positions a window measures: a 2D patch grid, or a 3D lattice (3-tuples become the
    cubic grid alone); a ValueError where they do not hold the M patches."""
    if grid is not None and (isinstance(grid, Lattice3D) or len(grid) == 3):
        lattice = as_lattice(grid)  # type: ignore[arg-type]
        if lattice.n_tokens != m:
            raise ValueError(f"a window needs the grid of the {m} patches, the lattice {lattice} holds "
                             f"{lattice.n_tokens}")
        return lattice
    if grid is None or len(grid) != 2 or grid[0] * grid[1] != m:
        raise ValueError(f"a window needs the patch grid of the {m} patches, got {grid}")
    return (int(grid[0]), int(grid[1]))


# Query volumes per task of the exact plan with a 3D window. Its products are per token
# position, (queries x C) x (C x references): with one query they stream the references at
# memory speed. Measured (g = 16, C = 384, 32 references, r = 1, 1 thread): 1.04 s per query
# volume one at a time, 0.26 s in blocks of 8. The kernel chunks its temporaries itself.
_LATTICE_QUERY_BLOCK = 8


@dataclass
class _WindowContext:
    feats: torch.Tensor  # (N, M, C) unit features, fp32
    refs: torch.Tensor | None
    grid: tuple[int, int] | Lattice3D  # a 3D lattice takes the volume kernel
    radius: int
    with_arg: bool
    budget_bytes: int


def _window_job(feats: torch.Tensor, plan: ReferencePlan, budget_mb: float, with_argmin: bool,
                radius: int, grid: tuple[int, int] | Lattice3D) -> _MapJob:
    """Position-restricted minima: each query block against its slots' images, in fp32."""
    n, m, _ = feats.shape
    feats = feats.float().contiguous()
    layout = SlotLayout(n, plan.n_slots, m, None, with_argmin, dense=plan.dense,
                        refs=None if plan.dense else plan.refs)
    step = _window_queries_per_task(plan, grid, m, budget_mb, feats.device)
    tasks = [(q0, min(q0 + step, n)) for q0 in range(0, n, step)]
    refs = None if plan.refs is None else plan.refs.to(feats.device)
    ctx = _WindowContext(feats, refs, grid, radius, with_argmin,
                         int(min(budget_mb * 1e6 * _BLOCK_SHARE, 64 << 20)))
    return _MapJob(_window_task, ctx, tasks, layout, feats)


def _window_queries_per_task(plan: ReferencePlan, grid: tuple[int, int] | Lattice3D, m: int, budget_mb: float,
                             device: torch.device | str) -> int:
    """Query images per window-kernel task (the rows of its products, so also what its cost
    estimate assumes): the exact plan's image blocks, at least 8 volumes on a 3D lattice (its
    small products gain rows with each query); a list plan one query against its list."""
    if not plan.dense:
        return 1
    step = images_per_block(m, budget_mb, device=device)
    if isinstance(grid, Lattice3D):
        step = max(step, _LATTICE_QUERY_BLOCK)
    return max(1, min(plan.n_images, step))


def _window_task(ctx: _WindowContext, task: tuple[int, int]) -> list[SlotRows]:
    q0, q1 = task
    right = ctx.feats if ctx.refs is None else ctx.feats[ctx.refs[q0]]
    kernel = window_block_3d if isinstance(ctx.grid, Lattice3D) else window_block
    best, arg = kernel(ctx.feats[q0:q1], right, ctx.grid, ctx.radius, with_argmax=ctx.with_arg,
                       budget_bytes=ctx.budget_bytes)
    bq, k, m = best.shape
    dev = best.device
    return [SlotRows(torch.arange(q0, q1, device=dev).repeat_interleave(k), torch.arange(k, device=dev).repeat(bq),
                     best.reshape(bq * k, m), None if arg is None else arg.reshape(bq * k, m))]
