"""The ``fast`` precision's choice: time the engine in each precision and keep the fastest.

Which reduced precision is fast depends on the CPU (bf16 needs AVX512-BF16/AMX, int8 needs
AVX512-VNNI), so ``fast`` times the engine in each mode once per process and patch count
and keeps the fastest; it never picks a mode that is slower than fp32 on the machine at
hand. The kernels themselves are in products.py; the bare-product timings here are also the
benchmarks' peak measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

import torch

from codegraph_ad.engine.products import Bf16Product, Fp32Product, Int8Product

Engine = Callable[..., object]

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
def fastest_reduced_precision(n_patches: int, engine: Engine) -> str:
    """The fastest of fp32, bf16 and int8 for ``engine`` on this CPU at this patch count.

    engine: the function being tuned, called as ``engine(x, budget_mb=..., precision=...)``
        with ``x: (N, M, C)`` unit rows and a concrete precision (in practice
        ``engine.mutual.pair_minima``; it is passed in because it resolves ``fast`` through
        this function, and the tuner must not import what imports it).

    Modes whose bare product is far slower than fp32's are dropped first (``_plausible_modes``);
    the rest are timed end to end (block products, maxima, bf16's fp32 recomputation) on
    4,096 patches in images of ``n_patches`` patches, best of three interleaved repeats (well
    under a second, once per process and patch count).
    On a 2-core machine with AVX-512 VNNI (no BF16) bf16 is 4x slower than fp32 and int8
    about 3x faster at M = 1024 (benchmarks/results/engine.json); on an AVX2-only one int8
    runs at 5 GOPS and fp32 wins (engine_avx2.json).
    """
    g = torch.Generator().manual_seed(0)
    m = min(max(int(n_patches), 64), 1024)
    n = max(4, 4096 // m)  # 4096 patches: blocks as large as the real run's
    x = torch.nn.functional.normalize(torch.randn(n, m, 384, generator=g), dim=-1)
    timings: dict[str, float] = {}
    modes = _plausible_modes()
    for name in list(modes):  # warm-up, and drop what this build cannot run
        try:
            engine(x, budget_mb=256, precision=name)
        except RuntimeError:
            modes.remove(name)
    # interleaved repeats, best of each: a burst of load from another process hits all
    # modes alike instead of deciding the choice (one timing each picked fp32 under load)
    for _ in range(3):
        for name in modes:
            t0 = time.perf_counter()
            engine(x, budget_mb=256, precision=name)
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - t0)
        best = min(timings.values())
        modes = [name for name in modes if timings[name] < 2 * best]  # a clear loser is not retimed
    return min(timings, key=timings.get)
