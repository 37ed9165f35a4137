"""One thread budget for PyTorch, NumPy's BLAS and ONNX Runtime, so they never oversubscribe."""

from __future__ import annotations

import os
from contextlib import contextmanager
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits


def resolve_threads(threads: int | None) -> int:
    """None or 0 means every core this process may use."""
    if threads is None or threads <= 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)
    return int(threads)


@contextmanager
def thread_budget(threads: int | None) -> Iterator[int]:
    """Limit torch intra-op threads and BLAS pools for the duration of a run."""
    n = resolve_threads(threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(previous)
