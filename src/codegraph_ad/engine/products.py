"""Block products at different precisions (the kernels; engine/autotune.py times them).

The engine only needs, for each block, every row's and every column's nearest patch: the
products keep their own "nearest" reduction (``nearest``), so no mode needs a second pass.
int8: integer products of vectors quantised with one batch-wide scale, turned back into
similarities by that scale; a fixed random rotation first spreads the few large channels
of ViT tokens over all channels so that the quantisation step stays small. bf16: the
product is ``o - x.y`` (an extra channel), accumulated in fp32 and rounded to bf16 only once
the similarity has been taken from ``o``, so near neighbours come out as small numbers whose
8-bit mantissa is fine (see ``Bf16Product``); bf16x3 splits each operand in two bf16 parts
and keeps about fp32's small distances for three times bf16's work (``Bf16x3Product``, what
CoDeGraph's first pass runs under ``fast`` where it beats fp32). Which reduced precision is fast depends on the
CPU: bf16 needs AVX512-BF16/AMX, int8 needs AVX512-VNNI; ``fast`` picks among them by timing
(engine/autotune.py).

Every product runs on the device of its input. On CUDA the fp32 product runs with TF32 off
(``engine.device.fp32_matmul``), so "fp32" means IEEE fp32 there too; bf16 and int8 need an
sm80+ GPU (``engine.device.precision_available``); ``torch._int_mm`` has the same shape rules
on CUDA as on the CPU (``int8_supported``), and its right operand stays a transposed view
(column-major), the one layout cuBLASLt's int8 kernels take without a copy.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch

from codegraph_ad.engine.device import fp32_matmul, precision_available

PRECISIONS = ("fp32", "bf16", "bf16x3", "int8", "fast")
# The largest similarity block on a CPU, in bytes of an fp32 block of the same side (a side
# of 2048 patches: 16 MB; 1024: 4 MB). Measured with benchmarks/engine/peer_msm.py (N = 51,
# M = 1,024 and 256, 2 cores, AVX-512 with AMX): 2048-side blocks against 1024 made fp32 8%
# and bf16 20-24% faster, int8 25% slower (its int32 block and maxima leave the caches); on an
# earlier AVX-512 VNNI machine fp32 products of side 1024 and 2048 ran alike (233 / 231
# GFLOP/s) and int8 was 10% slower at 2048. AVX2-only machines: not measured (docs/engine.md).
CPU_BLOCK_CAP_LARGE = 2048 * 2048 * 4
CPU_BLOCK_CAP_SMALL = 1024 * 1024 * 4
_PREPARE_ROWS = 65536  # rows rotated and quantised at a time (96 MB of fp32 at C = 384)
# A block whose rows are a multiple of this many bytes apart gets one cache line of padding
# per row (``_padded_product``): its column reductions otherwise walk a stride that maps every row
# onto the same cache sets.
_ALIASED_ROW_BYTES = 1024
_ROW_PAD_BYTES = 64


def _padded_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ right`` on a CPU, written into rows padded by a cache line where their length
    is a multiple of 1 KB (a view of the unpadded shape).

    The products reduce every block along its columns too (the nearest patch of the right
    image's patches), with indices when CoDeGraph's first pass needs argmins. Over rows 4 KB
    apart PyTorch's max with indices took 7.2 ms for a 1024 x 1024 fp32 block (one thread,
    AVX-512 Xeon) and the transposed copy that avoided it 2.0 ms; over rows padded by 64 bytes
    it takes 0.9 ms in place, and the BLAS writes the padded rows at the same speed (its
    leading dimension is the padded row).
    """
    rows, cols, dtype = left.shape[0], right.shape[1], left.dtype
    pad = _ROW_PAD_BYTES // dtype.itemsize if (cols * dtype.itemsize) % _ALIASED_ROW_BYTES == 0 else 0
    out = torch.empty((rows, cols + pad), dtype=dtype, device=left.device)[:, :cols]
    return torch.mm(left, right, out=out)


def _best(sim: torch.Tensor, dim: int, with_arg: bool, smallest: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Max (or min) over ``dim``; amax/amin alone when no index is needed: it skips the
    bookkeeping, which costs more than the product itself on a CPU.

    With indices on a CPU, a long reduction whose stride is a multiple of 4 KB goes through
    ``_best_over_rows``: PyTorch's max/min with indices over such a dimension ran 4-14x slower
    than over a contiguous one (448 px blocks, 1024 x 1024 fp32: 7.4 ms against 1.8 ms for the
    transposed copy and its row reduction; measured 1 thread, AVX-512 Xeon). Shorter or
    otherwise strided reductions are faster in place (M = 256 blocks: 1.4 ms against 1.8 ms).
    The fp32 and bf16 products write padded rows (``_padded_product``), so their blocks never take
    that path; int8's ``_int_mm`` writes only contiguous blocks and still does.
    """
    if not with_arg:
        return (sim.amin(dim=dim) if smallest else sim.amax(dim=dim)), None
    dim = dim % sim.dim()
    if sim.device.type == "cpu" and _aliased_reduction(sim, dim):
        v, i = _best_over_rows(sim, dim, smallest)
    else:
        v, i = sim.min(dim=dim) if smallest else sim.max(dim=dim)
    return v, i.to(torch.int16 if sim.shape[dim] < 32768 else torch.int32)


_ALIAS_BYTES = 4096  # strides that map every row of a reduction onto the same cache sets
_ALIAS_MIN_ROWS = 512  # below this many rows the cache's ways hold them anyway (measured: 256 is fine)


def _aliased_reduction(sim: torch.Tensor, dim: int) -> bool:
    """Whether a max/min with indices over ``dim`` walks a long, 4 KB-aliased stride."""
    if dim == sim.dim() - 1 or sim.shape[dim] < _ALIAS_MIN_ROWS:
        return False
    return (sim.stride(dim) * sim.element_size()) % _ALIAS_BYTES == 0


def _best_over_rows(sim: torch.Tensor, dim: int, smallest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``sim.max(dim)`` (or min) with indices, as contiguous row reductions of transposed
    2D slices. The copy goes slice by slice because PyTorch's fast transpose copy is 2D only:
    a (1024, 1024) slice took 1.1 ms, the same permutation of a 3D or 4D view 8-9 ms. Both
    paths return the first index of a tie."""
    lead, reduced = sim.shape[:dim], sim.shape[dim]
    trail = sim.shape[dim + 1 :]
    slices = sim.reshape(-1, reduced, math.prod(trail))  # (B, reduced, T): a view for the engine's blocks
    values, indices = [], []
    for part in slices:
        rows = part.T.contiguous()  # (T, reduced)
        v, i = rows.min(dim=1) if smallest else rows.max(dim=1)
        values.append(v)
        indices.append(i)
    shape = (*lead, *trail)
    return torch.stack(values).reshape(shape), torch.stack(indices).reshape(shape)


@dataclass
class Fp32Product:
    exact: bool = True
    out_dtype: torch.dtype = torch.float32
    empty_value: float = -2.0  # below every similarity of unit vectors
    cpu_block_cap: ClassVar[int] = CPU_BLOCK_CAP_LARGE
    # whether the distances between near-identical patches keep their digits (else a first
    # pass with argmins recomputes the small ones in fp32: engine/mutual.py)
    small_distances_exact: ClassVar[bool] = True

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        return flat

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.T

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        if left.is_cuda:  # TF32 would round the operands to a 10-bit mantissa
            with fp32_matmul(left.device):
                return left @ right
        return _padded_product(left, right)

    def nearest(self, sim: torch.Tensor, dim: int, with_arg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _best(sim, dim, with_arg, smallest=False)

    def to_similarity(self, best: torch.Tensor) -> torch.Tensor:
        return best


_BF16_POSITIVE_INF = 0x7F80  # the int16 bit pattern of bf16 +inf: no block value is above it
_BF16_WIDTH_MULTIPLE = 32  # the padded channel count: AMX takes bf16 in 32-element tiles


@dataclass
class Bf16Product:
    """bf16 operands, fp32 accumulation, and a result that is small where precision matters.

    The block holds ``o - x.y`` instead of ``x.y``: the left rows carry an extra channel 1,
    the right rows ``-y`` and ``o``, a bf16 number just above the batch's largest squared
    norm, so every value is positive. The accumulator (fp32) subtracts the similarity from
    ``o`` before the result is rounded to bf16, so a near neighbour (s near 1) comes out near
    0 with bf16's relative step of 2^-9, where s itself would be rounded in steps of 2^-8
    (about 2e-3 in similarity; measured on clustered unit vectors, C = 384: row-maxima error
    7e-4 here against 2e-3 for a plain bf16 product and 3e-3 for int8). Positive bf16 values
    order like their int16 bit patterns, so the nearest patch is the int16 minimum, which a CPU
    reduces 4x faster than bf16 values. Both operand forms sit side by side in one prepared
    row (``[x, 1 | -x, o]``), so the engine slices rows as for any other product.
    """

    exact: bool = False
    out_dtype: torch.dtype = torch.int16
    empty_value: int = _BF16_POSITIVE_INF
    cpu_block_cap: ClassVar[int] = CPU_BLOCK_CAP_LARGE
    small_distances_exact: ClassVar[bool] = False
    offset: torch.Tensor | None = None  # o, a 0-dim tensor on the operands' device (no host sync)
    width: int = 0  # padded channels of one operand form

    # how far above the largest squared norm ``o`` sits: room for the fp32 accumulator's rounding
    offset_margin: ClassVar[float] = 2**-8
    n_groups: ClassVar[int] = 1  # channel groups per operand (``operand_groups``)
    n_offset_parts: ClassVar[int] = 1  # channels that carry ``o`` (``offset_parts``)

    def operand_groups(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Left channel groups, right channel groups (their dot product is x.y) and the rows
        as the product sees them (for the largest squared norm)."""
        b = x.to(torch.bfloat16)
        return [b], [-b], b.float()

    def offset_parts(self, target: torch.Tensor) -> list[torch.Tensor]:
        """bf16 numbers whose sum is ``o`` >= ``target``, one channel each: here the next bf16 up."""
        o = target.to(torch.bfloat16)
        return [torch.where(o.float() < target, (o.view(torch.int16) + 1).view(torch.bfloat16), o)]

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        rows, c = flat.shape
        groups = self.n_groups
        w = self.width = -(-(groups * c + self.n_offset_parts) // _BF16_WIDTH_MULTIPLE) * _BF16_WIDTH_MULTIPLE
        out = torch.zeros((rows, 2 * w), dtype=torch.bfloat16, device=flat.device)
        largest = torch.zeros((), dtype=torch.float32, device=flat.device)
        for i in range(0, rows, _PREPARE_ROWS):  # in chunks: a bf16 copy of a whole large batch is half its size again
            left, right, seen = self.operand_groups(flat[i : i + _PREPARE_ROWS].float())
            part = out[i : i + _PREPARE_ROWS]
            for g, (lg, rg) in enumerate(zip(left, right)):
                part[:, g * c : (g + 1) * c] = lg
                part[:, w + g * c : w + (g + 1) * c] = rg
            largest = torch.maximum(largest, seen.square().sum(dim=1).amax())
        # above every x.y of the rows as multiplied (Cauchy-Schwarz); bf16 parts, so that o
        # itself is exact in the operands
        parts = self.offset_parts(largest * (1 + self.offset_margin) + 1e-6)
        self.offset = sum(p.float() for p in parts)
        out[:, groups * c : groups * c + len(parts)] = 1.0
        for j, p in enumerate(parts):
            out[:, w + groups * c + j] = p
        return out

    def right(self, rows: torch.Tensor) -> torch.Tensor:
        return rows[:, self.width :].T

    def block(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        left = left[:, : self.width]
        return (left @ right if left.is_cuda else _padded_product(left, right)).view(torch.int16)

    def nearest(self, sim: torch.Tensor, dim: int, with_arg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _best(sim, dim, with_arg, smallest=True)

    def to_similarity(self, best: torch.Tensor) -> torch.Tensor:
        return best.view(torch.bfloat16).float().neg_().add_(self.offset.to(best.device))


@dataclass
class Bf16x3Product(Bf16Product):
    """``Bf16Product`` with each operand split into two bf16 parts, x = x_hi + x_lo, for the
    maps whose small distances matter (CoDeGraph's first pass under ``fast``).

    One product over three channel groups, ``o - (x_hi.y_hi + x_lo.y_hi + x_hi.y_lo)``, leaves
    out only x_lo.y_lo (relative 2^-18): the operands' rounding, bf16's error of 7e-4 in
    similarity, is gone. What is left is the result's own rounding to bf16, up to 2^-8 of
    ``o - s``; so ``o`` is carried in two channels (hi + lo) just above the largest squared
    norm (2^-12 margin for the fp32 accumulator) instead of bf16's ``o``, which rounds up to
    1.0078 for unit rows and puts a floor of 0.008 under every near neighbour. A distance
    d = sqrt(2 - 2 s) of 0.02 then carries about 0.2% relative error instead of bf16's 5-25%,
    with no fp32 recompute. Three times bf16's multiply-adds, with its int16 reductions.
    """

    small_distances_exact: ClassVar[bool] = True
    offset_margin: ClassVar[float] = 2**-12
    n_groups: ClassVar[int] = 3
    n_offset_parts: ClassVar[int] = 2

    def operand_groups(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        hi = x.to(torch.bfloat16)
        lo = (x - hi.float()).to(torch.bfloat16)
        return [hi, lo, hi], [-hi, -hi, -lo], hi.float() + lo.float()

    def offset_parts(self, target: torch.Tensor) -> list[torch.Tensor]:
        return list(_bf16_pair_at_least(target))


def _bf16_pair_at_least(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two bf16 numbers whose fp32 sum is at least ``target`` and above it by about 2^-16 of it."""
    hi = target.to(torch.bfloat16)
    rest = target - hi.float()
    lo = rest.to(torch.bfloat16)
    lo = torch.where(lo.float() < rest, torch.nextafter(lo.float(), torch.full_like(rest, math.inf)
                                                        ).to(torch.bfloat16), lo)
    for _ in range(8):  # nextafter in fp32 may round back to the same bf16: step up by bf16's own step
        if not bool(hi.float() + lo.float() < target):
            return hi, lo
        lo = (lo.float() + lo.float().abs().clamp_min(target.abs() * 2**-24) * 2**-7).to(torch.bfloat16)
    raise ArithmeticError(f"no bf16 pair reaches {float(target)}")


@dataclass
class Int8Product:
    """Symmetric int8 quantisation with one scale for the batch; int32 accumulation (VNNI).

    One global scale keeps the integer products comparable across reference patches (their
    maxima pick the same neighbours as the float products up to rounding) and turns the
    kept maxima back into similarities. The rotation is orthogonal, so it changes no dot
    product; seeded, so runs repeat.
    """

    exact: bool = False
    out_dtype: torch.dtype = torch.int32
    empty_value: int = torch.iinfo(torch.int32).min
    cpu_block_cap: ClassVar[int] = CPU_BLOCK_CAP_SMALL
    small_distances_exact: ClassVar[bool] = False
    scale: float = 1.0

    def prepare(self, flat: torch.Tensor) -> torch.Tensor:
        rot = _rotation(flat.shape[1]).to(flat.device)
        c = flat.shape[1]
        pad = (-c) % 8  # _int_mm wants the inner size a multiple of 8
        # in row chunks: the rotated fp32 copy of a whole large batch would be its size again.
        # Each chunk is rotated twice (once for the scale, once to quantise): C/(N M) of the
        # engine's work each time, cheaper than holding the rotated batch.
        chunks = range(0, flat.shape[0], _PREPARE_ROWS)
        with fp32_matmul(flat.device):  # the rotation in IEEE fp32 on a GPU as on the CPU
            peak = (max(float((flat[i : i + _PREPARE_ROWS] @ rot).abs().max()) for i in chunks)
                    if flat.shape[0] else 0.0)
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

    def nearest(self, sim: torch.Tensor, dim: int, with_arg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _best(sim, dim, with_arg, smallest=False)

    def to_similarity(self, best: torch.Tensor) -> torch.Tensor:
        return best.float().div_(self.scale * self.scale)


# the product class of each concrete precision (``fast`` is resolved to one of them)
PRODUCTS = {"fp32": Fp32Product, "bf16": Bf16Product, "bf16x3": Bf16x3Product, "int8": Int8Product}


@lru_cache(maxsize=8)
def _rotation(channels: int) -> torch.Tensor:
    """A fixed random orthogonal matrix (QR of a seeded Gaussian)."""
    g = torch.Generator().manual_seed(0)
    q, r = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def int8_supported(rows: int) -> bool:
    """torch._int_mm needs more than 16 rows and sizes that are multiples of 8 (the CPU and
    the CUDA kernels alike). ``rows``: patches per image; blocks hold whole images, so every
    block side is a multiple of it, and the channels are padded to a multiple of 8."""
    return rows > 16 and rows % 8 == 0


def make_product(precision: str, n_patches: int, device: str | torch.device | None = None):
    """The product object for ``precision`` (fp32, bf16, bf16x3 or int8); int8 falls back to fp32
    where sizes don't fit. ``fast`` is the autotuner's to resolve (engine/autotune.py).

    device: where the product will run; a reduced precision the device cannot run (bf16 or
    int8 on a GPU older than sm80) falls back to fp32 with a warning. None: no device check
    (the CPU runs every mode).
    """
    if precision == "fast":
        raise ValueError("precision 'fast' names a choice, not a product: resolve it first with "
                         "codegraph_ad.engine.mutual.resolve_precision")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device is not None and not precision_available(precision, device):
        warnings.warn(f"precision {precision!r} cannot run on {device} (it needs an sm80+ GPU); "
                      "scoring in fp32", RuntimeWarning, stacklevel=2)
        precision = "fp32"
    if precision == "int8" and not int8_supported(n_patches):
        precision = "fp32"
    return PRODUCTS[precision]()
