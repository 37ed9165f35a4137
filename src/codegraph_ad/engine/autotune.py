"""The ``fast`` precision's choice: time the engine in each precision and keep the fastest.

Which reduced precision is fast depends on the machine (on a CPU bf16 needs AVX512-BF16/AMX,
int8 needs AVX512-VNNI; on a GPU both need sm80+), so ``fast`` times the engine in each mode
the device can run, once per process, device type and patch count, and keeps the fastest; it
never picks a mode that is slower than fp32 on the machine at hand. The kernels themselves
are in products.py; the bare-product timings here are also the benchmarks' peak measurements.

Timings are taken on the device of the tensors; CUDA kernels run asynchronously, so every
timer waits for the device (``synchronize``) before it starts and before it stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

import torch

from codegraph_ad.engine.device import precision_available, synchronize
from codegraph_ad.engine.products import PRODUCTS

Engine = Callable[..., object]

_SCREEN_SLOWER = 3.0  # a bare product this many times slower than fp32's cannot win
# what ``fast`` chooses among: MuSc's maps; CoDeGraph's first pass chooses between fp32 and
# bf16x3 (methods/first_pass.py: first_pass_precision)
MUSC_MODES = ("fp32", "bf16", "int8")
# Patches timed end to end and the budget they run under, per device type: on the CPU 4,096
# patches make blocks as large as the real run's; a GPU needs more work per timing than a
# kernel launch costs, and its blocks follow the free GPU memory (engine/device.py).
_TIMED_PATCHES = {"cpu": 4096, "cuda": 65536}
_TIMED_BUDGET_MB = {"cpu": 256, "cuda": 8192}


def product_seconds(product, x: torch.Tensor, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of the block product ``x x^T`` in ``product``'s mode (the
    first call, for kernel selection, is not timed). ``x``: unit rows, on the device timed."""
    low = product.prepare(x)
    right = product.right(low)
    product.block(low, right)
    best = float("inf")
    for _ in range(repeats):
        synchronize(x.device)
        t0 = time.perf_counter()
        product.block(low, right)
        synchronize(x.device)
        best = min(best, time.perf_counter() - t0)
    return best


def bare_product_seconds(x: torch.Tensor, repeats: int = 3, modes: tuple[str, ...] = MUSC_MODES) -> dict[str, float]:
    """``product_seconds`` of every mode of ``modes`` this build and ``x``'s device can run."""
    seconds: dict[str, float] = {}
    for name in modes:
        if not precision_available(name, x.device):
            continue
        try:
            seconds[name] = product_seconds(PRODUCTS[name](), x, repeats)
        except RuntimeError:  # this build cannot run the mode at all
            continue
    return seconds


def _plausible_modes(rows: int = 512, channels: int = 384, device: str | torch.device = "cpu",
                     modes: tuple[str, ...] = MUSC_MODES) -> list[str]:
    """fp32 and the reduced precisions whose bare block product is not far slower than fp32's.

    A CPU without the matching instructions runs a mode's product 10-100x slower (AVX2
    only: bf16 16 GFLOP/s, int8 5 GOPS, fp32 160); one small product each tells, in
    milliseconds, what the full timing below would spend seconds on.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(rows, channels, generator=g), dim=1).to(device)
    seconds = bare_product_seconds(x, modes=tuple(dict.fromkeys(("fp32", *modes))))
    return [name for name in seconds if name in modes
            and (name == "fp32" or seconds[name] < _SCREEN_SLOWER * seconds["fp32"])]


def fastest_reduced_precision(n_patches: int, engine: Engine, device: str | torch.device = "cpu",
                              modes: tuple[str, ...] = MUSC_MODES) -> str:
    """The fastest of ``modes`` (fp32, bf16 and int8 by default; fp32 is always among them)
    for ``engine`` on ``device`` at this patch count.

    engine: the function being tuned, called as ``engine(x, budget_mb=..., precision=...)``
        with ``x: (N, M, C)`` unit rows on ``device`` and a concrete precision (in practice
        ``engine.mutual.pair_minima``; it is passed in because it resolves ``fast`` through
        this function, and the tuner must not import what imports it). It must run on the
        device of ``x``.
    device: where the engine will run; the choice is cached per (device type, patch count).

    Modes the device cannot run are left out (``precision_available``), then modes whose bare
    product is far slower than fp32's (``_plausible_modes``); the rest are timed end to end
    (block products and their maxima) on 4,096 patches (65,536 on a GPU) in
    images of ``n_patches`` patches, best of three interleaved repeats (well under a second,
    once per process, device type and patch count).
    On a 2-core machine with AVX-512 VNNI (no BF16) bf16 is 4x slower than fp32 and int8
    about 3x faster at M = 1024 (benchmarks/results/engine.json); with AMX bf16 wins (3.7x
    fp32, 1.5x int8: peer_msm_avx512.json); on an AVX2-only one int8 runs at 5 GOPS and
    fp32 wins (engine_avx2.json).
    """
    return _fastest(torch.device(device).type, int(n_patches), engine, tuple(dict.fromkeys(("fp32", *modes))))


@lru_cache(maxsize=16)
def _fastest(device_type: str, n_patches: int, engine: Engine, modes: tuple[str, ...] = MUSC_MODES) -> str:
    """``fastest_reduced_precision``, cached per (device type, patch count, engine, modes)."""
    return _time_modes(torch.device(device_type), n_patches, engine, modes)


def _time_modes(device: torch.device, n_patches: int, engine: Engine, modes: tuple[str, ...] = MUSC_MODES) -> str:
    """Time ``engine`` in every plausible mode of ``modes`` on ``device``; the fastest mode's name."""
    g = torch.Generator().manual_seed(0)
    m = min(max(int(n_patches), 64), 1024)
    n = max(4, _TIMED_PATCHES.get(device.type, 4096) // m)  # blocks as large as the real run's
    budget = _TIMED_BUDGET_MB.get(device.type, 256)
    x = torch.nn.functional.normalize(torch.randn(n, m, 384, generator=g), dim=-1).to(device)
    timings: dict[str, float] = {}
    modes = _plausible_modes(device=device, modes=modes)
    for name in list(modes):  # warm-up, and drop what this build cannot run
        try:
            engine(x, budget_mb=budget, precision=name)
        except RuntimeError:
            modes.remove(name)
    # interleaved repeats, best of each: a burst of load from another process hits all
    # modes alike instead of deciding the choice (one timing each picked fp32 under load)
    for _ in range(3):
        for name in modes:
            synchronize(device)
            t0 = time.perf_counter()
            engine(x, budget_mb=budget, precision=name)
            synchronize(device)
            timings[name] = min(timings.get(name, float("inf")), time.perf_counter() - t0)
        best = min(timings.values())
        modes = [name for name in modes if timings[name] < 2 * best]  # a clear loser is not retimed
    return min(timings, key=timings.get)
