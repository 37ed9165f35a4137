"""Memory estimate of a scoring run, checked before any work starts.

A run that cannot fit should fail in a second with a message that names the knob to
turn, not be killed by the operating system after an hour of feature extraction.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from codegraph_ad.errors import MemoryBudgetError

_F32 = 4


def machine_memory_mb() -> float:
    """Physical memory of this machine in MB."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e6
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16_000.0


def default_budget_mb() -> float:
    """70% of physical memory: the rest is left to the OS, the backbone and the caller."""
    return 0.7 * machine_memory_mb()


def argmin_bytes(m: int) -> int:
    """Bytes per stored argmin (engine/mutual.py: argmin_dtype)."""
    return 1 if m <= 256 else (2 if m <= 32768 else 4)


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of the large arrays of a run, by part (MB)."""

    features_mb: float
    per_map_mb: float
    stored_maps_mb: float
    graph_mb: float

    @property
    def total_mb(self) -> float:
        return self.features_mb + self.per_map_mb + self.stored_maps_mb + self.graph_mb


def estimate_memory(n: int, m: int, c: int, n_layers: int, n_degrees: int, method: str,
                    subsets: int = 1, k_fraction: float = 0.3, block_mb: float = 32.0,
                    slots: int | None = None, feature_bytes: int = _F32, sharded: bool = False) -> MemoryEstimate:
    """Peak memory of scoring ``n`` images of ``m`` patches (``c`` channels).

    Subsets are scored one after another, so the per-map arrays scale with the subset
    size ``n_s = ceil(n / subsets)``; features of the whole batch stay in memory.
    slots: entries stored per query and map (engine/plan.py): None for the exact plan
    (n_s, its own slot included), K for fixed-K references or screening.
    MuSc holds one map at a time (minima, argmins, MSM's masked copy and gathered rows, the
    top-K values and indices, one LNAMD stack); CoDeGraph keeps every map's minima and
    argmins; its refinement holds only the changed entries and one map rebuilt at a time.
    sharded: the minima live in query shards on a Ray cluster (docs/ray.md), so the driver
    holds the features, one map's LNAMD stack, a block and a few (N, M) score arrays.
    """
    ns = math.ceil(n / max(1, subsets))
    s = ns if slots is None else min(int(slots), ns)
    population = ns if slots is None else s + 1
    features = n * n_layers * m * c * feature_bytes
    if sharded:
        return MemoryEstimate(features / 1e6, (ns * m * c * _F32 + block_mb * 1e6) / 1e6, 0.0,
                              4 * n * m * _F32 / 1e6)
    pair = ns * s * m
    k = max(1, math.ceil(0.3 * (population - 1)))
    arg = argmin_bytes(m)
    per_map = ns * m * c * _F32 + pair * (_F32 + arg) + 2 * pair * _F32 + ns * k * m * (_F32 + 8) + block_mb * 1e6
    stored = graph = 0.0
    if method == "codegraph":
        maps = n_layers * n_degrees
        stored = maps * pair * (_F32 + arg)  # first pass kept whole
        kk = max(2, math.ceil(k_fraction * population))
        # rank images (int16) per layer; layer-mean vectors, endurance ratios and their sort
        graph = ns * m * kk * (n_layers * 2 + 3 * _F32)
    return MemoryEstimate(features / 1e6, per_map / 1e6, stored / 1e6, graph / 1e6)


def check_memory(estimate: MemoryEstimate, budget_mb: float, n: int, image_size: int, subsets: int) -> None:
    """Raise MemoryBudgetError, naming the knobs, when ``estimate`` exceeds ``budget_mb``."""
    if estimate.total_mb <= budget_mb:
        return
    need = estimate.total_mb
    raise MemoryBudgetError(
        f"scoring {n} images at {image_size} px needs about {need / 1e3:.1f} GB "
        f"(features {estimate.features_mb / 1e3:.1f} GB, minima {estimate.per_map_mb / 1e3 + estimate.stored_maps_mb / 1e3:.1f} GB, "
        f"graph {estimate.graph_mb / 1e3:.1f} GB) but the memory budget is {budget_mb / 1e3:.1f} GB. "
        f"Lower --image-size (memory falls with its 4th power), split the batch with --subsets "
        f"(now {subsets}; minima fall with its square), compare each image with fixed K references "
        f"(--references 100: minima fall from N to K per image), hold the tokens in float16 "
        f"(--token-dtype float16: features fall by half), use --method musc (keeps one map at a time), "
        f"or raise --memory-mb if the machine has the memory."
    )
