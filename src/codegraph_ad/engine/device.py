"""The engine on a device: block sizes and the precisions a device can run.

``resolve_device`` / ``synchronize`` / ``fp32_matmul`` are the package's device primitives
(``backbones/device.py``, where the backbones can reach them too); this module adds what only
the engine needs:

- ``block_cap_bytes``: on a CPU a similarity block larger than a few MB stops fitting the
  caches (mutual.py's measurements); on a GPU a block that small is one image pair per kernel
  launch, so the cap follows the free GPU memory instead (1-4 GiB).
- ``precision_available``: bf16 and int8 (``torch._int_mm``) need an Ampere (sm80) or later
  GPU; on the CPU every mode runs (slowly without the matching instructions, which the
  ``fast`` autotuner finds out by timing).
"""

from __future__ import annotations

import torch

from codegraph_ad.backbones.device import DEVICE_NAMES, fp32_matmul, resolve_device, synchronize

__all__ = [
    "CPU_BLOCK_CAP_BYTES", "CUDA_BLOCK_CAP_FALLBACK", "CUDA_BLOCK_CAP_MAX", "DEVICE_NAMES",
    "block_cap_bytes", "cuda_capability", "fp32_matmul", "precision_available", "resolve_device",
    "synchronize",
]

# Measured on 2 cores (engine/mutual.py): a 16 MB block scored N=40, M=256 in 1.25 s against
# 2.8 s for a 1 GB block; the int8 engine ran 581 GOPS with 1024-side blocks, 525 with 2048.
CPU_BLOCK_CAP_BYTES = 4 * 1024 * 1024
CUDA_BLOCK_CAP_MAX = 4 * 1024**3
CUDA_BLOCK_CAP_FALLBACK = 1024**3  # when the free memory cannot be read
_CUDA_FREE_SHARE = 1 / 8  # the block, its max/argmax temporaries and the minima share the rest
_CUDA_BLOCK_CAP_MIN = 16 * 1024 * 1024


def block_cap_bytes(device: str | torch.device) -> int:
    """Largest similarity block (bytes) worth computing at once on ``device``.

    CPU: 4 MiB (cache-sized). CUDA: an eighth of the free GPU memory, between 16 MiB and
    4 GiB (1 GiB when the free memory cannot be read). The caller still takes the smaller of
    this and its share of the memory budget.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BLOCK_CAP_BYTES
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):  # no driver answer (e.g. a CPU-only build)
        return CUDA_BLOCK_CAP_FALLBACK
    return int(min(CUDA_BLOCK_CAP_MAX, max(_CUDA_BLOCK_CAP_MIN, free * _CUDA_FREE_SHARE)))


def cuda_capability(device: str | torch.device) -> tuple[int, int] | None:
    """(major, minor) compute capability of a CUDA device; None off CUDA or when unreadable."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    try:
        return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]
    except (RuntimeError, AssertionError):
        return None


def precision_available(precision: str, device: str | torch.device) -> bool:
    """Whether the engine can run ``precision`` on ``device``.

    fp32 and ``fast`` (which picks among the available ones): always. On CUDA, bf16 (and bf16x3) needs
    native bf16 (sm80+, ``torch.cuda.is_bf16_supported``) and int8 needs ``torch._int_mm``'s
    cuBLASLt int8 kernels (sm80+). On the CPU bf16 and int8 always run; whether they are fast
    is the autotuner's question, and int8's shape rules are ``products.int8_supported``.
    """
    if precision in ("fp32", "fast"):
        return True
    if precision not in ("bf16", "bf16x3", "int8"):
        raise ValueError(f"precision must be one of fp32, bf16, bf16x3, int8, fast, got {precision!r}")
    device = torch.device(device)
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    capability = cuda_capability(device)
    if capability is None or capability < (8, 0):
        return False
    if precision in ("bf16", "bf16x3"):
        return bool(torch.cuda.is_bf16_supported())
    return hasattr(torch, "_int_mm")
