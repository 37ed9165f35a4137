"""Where torch work runs: ``--device cpu|cuda|auto`` and the precision rules that go with it.

These are the device primitives every layer needs: the backbones (rank 2) run their torch
models on the chosen device and the engine (rank 4) runs its block products there, so they
live at the lowest rank that uses them; ``engine/device.py`` re-exports them with the engine's
own rules (block sizes, which precisions a device can run).

"fp32" must mean IEEE fp32 on a GPU too: Ampere and later GPUs may run fp32 matmuls and
convolutions as TF32 (10-bit mantissa), which would make a "fp32" GPU run differ from the CPU
in the third decimal of every distance. ``fp32_matmul`` turns TF32 off for its duration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

from codegraph_ad.errors import ConfigError

DEVICE_NAMES = ("cpu", "cuda", "auto")
BackbonePrecision = Literal["fp32", "bf16"]


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device of ``--device``: ``cpu``; ``cuda`` (or ``cuda:N``), refused with a
    ConfigError naming --device when this machine has no usable CUDA device; ``auto``: cuda
    when available, else cpu."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise ConfigError(f"--device must be one of {', '.join(DEVICE_NAMES)}, got {name!r}")
    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        try:
            device = torch.device(text)
        except RuntimeError as exc:
            raise ConfigError(f"--device {name!r} is not a device name: {exc}") from exc
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name} asks for a GPU, but this machine has no usable CUDA device "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                "use --device cpu, or --device auto to take a GPU only when there is one")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise ConfigError(f"--device must be one of {', '.join(DEVICE_NAMES)}, got {name!r}")


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously; a timer that does
    not wait measures the launch, not the work). No-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def fp32_matmul(device: str | torch.device) -> Iterator[None]:
    """IEEE fp32 matmuls and convolutions (TF32 off) on CUDA inside; the previous settings after.

    Inside, ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``
    read False. The matmul switch is set through ``torch.set_float32_matmul_precision``: since
    torch 2.9 the legacy ``allow_tf32`` setter leaves the legacy and the new (``fp32_precision``)
    settings disagreeing, and torch then raises when anything reads them. No-op on the CPU.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    restore_matmul = _force_ieee_matmul()
    cudnn = torch.backends.cudnn
    previous_cudnn = cudnn.allow_tf32
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32 = previous_cudnn
        restore_matmul()


def _force_ieee_matmul():
    """Set fp32 matmuls to IEEE and return the function that puts back what was there."""
    matmul = torch.backends.cuda.matmul
    try:
        previous = torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller set the new API itself: the legacy getter refuses to answer
        previous = None
    if previous is not None:
        torch.set_float32_matmul_precision("highest")
        return lambda: torch.set_float32_matmul_precision(previous)
    before = matmul.fp32_precision
    matmul.fp32_precision = "ieee"

    def restore() -> None:
        matmul.fp32_precision = before

    return restore


def autocast_context(device: torch.device, precision: BackbonePrecision) -> contextlib.AbstractContextManager:
    """The context a backbone's forward runs in: fp32 with TF32 off, or bf16 autocast (matmuls
    and convolutions in bf16, normalisations and the residual stream in fp32)."""
    if precision == "fp32":
        return fp32_matmul(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ConfigError(f"backbone precision must be 'fp32' or 'bf16', got {precision!r}")
