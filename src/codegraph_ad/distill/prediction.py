"""What every per-image detector returns, and how it runs its head: shared by the distilled
patch head (distill/detector.py) and the CLIP detectors (distill/clip/detector.py), below
both so that neither imports the other for them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class Prediction:
    """probs: ``(h, w)`` anomaly probability per patch; times in seconds for this image."""

    probs: torch.Tensor
    backbone_s: float
    head_s: float


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run a per-image head on one thread: on a few hundred patches a parallel region costs
    more than it saves (0.04 s on one thread vs 0.33 s on two, on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
