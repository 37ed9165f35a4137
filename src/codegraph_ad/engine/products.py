"""Block products at different precisions (the kernels; engine/autotune.py times them).

The engine only needs each block's row and column maxima. bf16 ranks neighbours in low
precision and the chosen neighbour's similarity is recomputed in fp32 (that needs the
argmax indices, whose bookkeeping costs more than the product itself on this CPU). int8
keeps its own maxima: integer products of vectors quantised with one batch-wide scale,
turned back into similarities by that scale, so it needs neither indices nor a second pass;
a fixed random rotation first spreads the few large channels of ViT tokens over all
channels so that the quantisation step stays small. Which reduced precision is fast depends
on the CPU: bf16 needs AVX512-BF16/AMX, int8 needs AVX512-VNNI; ``fast`` picks among them
by timing (engine/autotune.py).

Every product runs on the device of its input. On CUDA the fp32 product runs with TF32 off
(``engine.device.fp32_matmul``), so "fp32" means IEEE fp32 there too; bf16 and int8 need an
sm80+ GPU (``engine.device.precision_available``); ``torch._int_mm`` has the same shape rules
on CUDA as on the CPU (``int8_supported``), and its right operand stays a transposed view
(column-major), the one layout cuBLASLt's int8 kernels take without a copy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch

from codegraph_ad.engine.device import fp32_matmul, precision_available

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
        if left.is_cuda:  # TF32 would round the operands to a 10-bit mantissa
            with fp32_matmul(left.device):
                return left @ right
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

    def to_similarity(self, best: torch.Tensor) -> torch.Tensor:
        return best.float().div_(self.scale * self.scale)


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
    """The product object for ``precision`` (fp32, bf16 or int8); int8 falls back to fp32
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
    return {"fp32": Fp32Product, "bf16": Bf16Product, "int8": Int8Product}[precision]()
