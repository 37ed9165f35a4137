"""Block products at different precisions, and the choice of the fastest on this CPU.

The engine only needs each block's row and column maxima (which patch is nearest), so any
product that ranks neighbours like the fp32 one will do; exact similarities of the chosen
neighbours are recomputed in fp32 afterwards. Which reduced precision is fast depends on
the CPU: bf16 needs AVX512-BF16/AMX, int8 needs AVX512-VNNI. ``fast`` times the whole
engine in each mode once per process and keeps the fastest, so it never picks a mode that
is slower than fp32 on the machine at hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import torch

PRECISIONS = ("fp32", "bf16", "int8", "fast")


@dataclass(frozen=True)
class Fp32Product:
    exact: bool = True
    out_dtype: torch.dtype = torch.float32

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        return flat

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.T

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return left @ right


@dataclass(frozen=True)
class Bf16Product:
    exact: bool = False
    out_dtype: torch.dtype = torch.bfloat16

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.to(torch.bfloat16)

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.T

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return left @ right


@dataclass(frozen=True)
class Int8Product:
    """Symmetric int8 quantisation with one scale for the batch; int32 accumulation (VNNI).

    One global scale keeps the integer products comparable across reference patches, so
    their maxima pick the same neighbours as the float products up to rounding.
    """

    exact: bool = False
    out_dtype: torch.dtype = torch.int32

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        c = flat.shape[1]
        pad = (-c) % 8  # _int_mm wants the inner size a multiple of 8
        if pad:
            flat = torch.nn.functional.pad(flat, (0, pad))
        scale = 127.0 / float(flat.abs().max().clamp(min=1e-12))
        return torch.round(flat * scale).to(torch.int8)

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.T.contiguous()

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch._int_mm(left, right)


def int8_supported(rows: int) -> bool:
    """torch._int_mm needs more than 16 rows and sizes that are multiples of 8."""
    return rows > 16 and rows % 8 == 0


@lru_cache(maxsize=1)
def fastest_reduced_precision() -> str:
    """The fastest of fp32, bf16 and int8 for the whole engine on this CPU, measured once.

    Timed end to end (block products, maxima with indices and the fp32 recomputation
    of the chosen neighbours) on a small batch: on the 2-core development machine (AVX-512
    VNNI, no BF16) int8 products alone ran 2x fp32, yet the full engine was 2x slower in
    int8 and 4x slower in bf16, so ``fast`` resolves to fp32 there.
    """
    from codegraph_ad.engine.mutual import pair_minima

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(6, 256, 384, generator=g), dim=-1)
    timings = {}
    for name in ("fp32", "bf16", "int8"):
        try:
            pair_minima(x, budget_mb=256, precision=name)
            t0 = time.perf_counter()
            pair_minima(x, budget_mb=256, precision=name)
            timings[name] = time.perf_counter() - t0
        except RuntimeError:  # a mode this build cannot run
            continue
    return min(timings, key=timings.get)


def make_product(precision: str, n_patches: int):
    """The product object for ``precision``; int8 falls back to fp32 where sizes don't fit."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fast":
        precision = fastest_reduced_precision()
        if precision == "fast":  # pragma: no cover - defensive
            precision = "fp32"
    if precision == "int8" and not int8_supported(n_patches):
        precision = "fp32"
    return {"fp32": Fp32Product, "bf16": Bf16Product, "int8": Int8Product}[precision]()
