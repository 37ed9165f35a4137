"""Block products at different precisions, and the choice of the fastest on this CPU.

The engine only needs each block's row and column maxima. bf16 ranks neighbours in low
precision and the chosen neighbour's similarity is recomputed in fp32 (that needs the
argmax indices, whose bookkeeping costs more than the product itself on this CPU). int8
keeps its own maxima: integer products of vectors quantised with one batch-wide scale,
turned back into similarities by that scale, so it needs neither indices nor a second pass;
a fixed random rotation first spreads the few large channels of ViT tokens over all
channels so that the quantisation step stays small. Which reduced precision is fast depends
on the CPU: bf16 needs AVX512-BF16/AMX, int8 needs AVX512-VNNI. ``fast`` times the engine
in each mode once per process and patch count and keeps the fastest, so it never picks a
mode that is slower than fp32 on the machine at hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import torch

PRECISIONS = ("fp32", "bf16", "int8", "fast")
_PREPARE_ROWS = 65536  # rows rotated and quantised at a time (96 MB of fp32 at C = 384)


@dataclass
class Fp32Product:
    exact: bool = True
    recompute: bool = False  # recompute chosen neighbours in fp32 (needs argmax indices)
    out_dtype: torch.dtype = torch.float32

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        return flat

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.T

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return left @ right

    def to_similarity(self, best: torch.Tensor) -> torch.Tensor:
        return best


@dataclass
class Bf16Product:
    exact: bool = False
    recompute: bool = True
    out_dtype: torch.dtype = torch.bfloat16

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.to(torch.bfloat16)

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.T

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return left @ right

    def to_similarity(self, best: torch.Tensor) -> torch.Tensor:
        return best.float()


@dataclass
class Int8Product:
    """Symmetric int8 quantisation with one scale for the batch; int32 accumulation (VNNI).

    One global scale keeps the integer products comparable across reference patches (their
    maxima pick the same neighbours as the float products up to rounding) and turns the
    kept maxima back into similarities. The rotation is orthogonal, so it changes no dot
    product; seeded, so runs repeat.
    """

    exact: bool = False
    recompute: bool = False
    out_dtype: torch.dtype = torch.int32
    scale: float = 1.0

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        rot = _rotation(flat.shape[1]).to(flat.device)
        c = flat.shape[1]
        pad = (-c) % 8  # _int_mm wants the inner size a multiple of 8
        # in row chunks: the rotated fp32 copy of a whole large batch would be its size again.
        # Each chunk is rotated twice (once for the scale, once to quantise): C/(N M) of the
        # engine's work each time, cheaper than holding the rotated batch.
        chunks = range(0, flat.shape[0], _PREPARE_ROWS)
        peak = max(float((flat[i : i + _PREPARE_ROWS] @ rot).abs().max()) for i in chunks) if flat.shape[0] else 0.0
        self.scale = 127.0 / max(peak, 1e-12)
        out = torch.empty((flat.shape[0], c + pad), dtype=torch.int8, device=flat.device)
        out[:, c:] = 0
        for i in chunks:
            out[i : i + _PREPARE_ROWS, :c] = torch.round((flat[i : i + _PREPARE_ROWS] @ rot).mul_(self.scale))
        return out

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.T  # a transposed view: _int_mm ran 1.5x faster on it than on a copy

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch._int_mm(left, right)

    def to_similarity(self, best: torch.Tensor) -> torch.Tensor:
        return best.float().div_(self.scale * self.scale)


@lru_cache(maxsize=8)
def _rotation(channels: int) -> torch.Tensor:
    """A fixed random orthogonal matrix (QR of a seeded Gaussian)."""
    g = torch.Generator().manual_seed(0)
    q, r = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def int8_supported(rows: int) -> bool:
    """torch._int_mm needs more than 16 rows and sizes that are multiples of 8."""
    return rows > 16 and rows % 8 == 0


_SCREEN_SLOWER = 3.0  # a bare product this many times slower than fp32's cannot win


def product_seconds(product, x: torch.Tensor, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of the block product ``x x^T`` in ``product``'s mode (the
    first call, for kernel selection, is not timed). ``x``: unit rows."""
    low = product.prepare(x)
    right = product.right(low)
    product.block(low, right)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        product.block(low, right)
        best = min(best, time.perf_counter() - t0)
    return best


def bare_product_seconds(x: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """``product_seconds`` of every mode this build can run."""
    seconds: dict[str, float] = {}
    for name, product in (("fp32", Fp32Product()), ("bf16", Bf16Product()), ("int8", Int8Product())):
        try:
            seconds[name] = product_seconds(product, x, repeats)
        except RuntimeError:  # this build cannot run the mode at all
            continue
    return seconds


def _plausible_modes(rows: int = 512, channels: int = 384) -> list[str]:
    """fp32 and the reduced precisions whose bare block product is not far slower than fp32's.

    A CPU without the matching instructions runs a mode's product 10-100x slower (AVX2
    only: bf16 16 GFLOP/s, int8 5 GOPS, fp32 160); one small product each tells, in
    milliseconds, what the full timing below would spend seconds on.
    """
    x = torch.nn.functional.normalize(torch.randn(rows, channels, generator=torch.Generator().manual_seed(0)), dim=1)
    seconds = bare_product_seconds(x)
    return [name for name in seconds if name == "fp32" or seconds[name] < _SCREEN_SLOWER * seconds["fp32"]]


@lru_cache(maxsize=8)
def fastest_reduced_precision(n_patches: int = 256) -> str:
    """The fastest of fp32, bf16 and int8 for the engine on this CPU at this patch count.

    Modes whose bare product is far slower than fp32's are dropped first (``_plausible_modes``);
    the rest are timed end to end (block products, maxima, bf16's fp32 recomputation) on
    4,096 patches in images of ``n_patches`` patches, best of three interleaved repeats (well
    under a second, once per process and patch count).
    On a 2-core machine with AVX-512 VNNI (no BF16) bf16 is 4x slower than fp32 and int8
    about 3x faster at M = 1024 (benchmarks/results/engine.json); on an AVX2-only one int8
    runs at 5 GOPS and fp32 wins (engine_avx2.json).
    """
    from codegraph_ad.engine.mutual import pair_minima

    g = torch.Generator().manual_seed(0)
    m = min(max(int(n_patches), 64), 1024)
    n = max(4, 4096 // m)  # 4096 patches: blocks as large as the real run's
    x = torch.nn.functional.normalize(torch.randn(n, m, 384, generator=g), dim=-1)
    timings: dict[str, float] = {}
    modes = _plausible_modes()
    for name in list(modes):  # warm-up, and drop what this build cannot run
        try:
            pair_minima(x, budget_mb=256, precision=name)
        except RuntimeError:
            modes.remove(name)
    # interleaved repeats, best of each: a burst of load from another process hits all
    # modes alike instead of deciding the choice (one timing each picked fp32 under load)
    for _ in range(3):
        for name in modes:
            t0 = time.perf_counter()
            pair_minima(x, budget_mb=256, precision=name)
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - t0)
        best = min(timings.values())
        modes = [name for name in modes if timings[name] < 2 * best]  # a clear loser is not retimed
    return min(timings, key=timings.get)


def make_product(precision: str, n_patches: int):
    """The product object for ``precision``; int8 falls back to fp32 where sizes don't fit."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fast":
        precision = fastest_reduced_precision(n_patches)
        if precision == "fast":  # pragma: no cover - defensive
            precision = "fp32"
    if precision == "int8" and not int8_supported(n_patches):
        precision = "fp32"
    return {"fp32": Fp32Product, "bf16": Bf16Product, "int8": Int8Product}[precision]()
