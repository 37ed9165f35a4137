"""What a benchmark run covers; the scoring itself is configured by ``RunConfig`` per method."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codegraph_ad.evaluation import ConsistencyConfig  # the one definition (re-exported)

METHOD_ORDER = ("musc", "codegraph")  # the default selection; MuSc first: its scores define the consistent patches


def method_order() -> tuple[str, ...]:
    """Every registered batch method (``input == "features"``; a user's too), MuSc first."""
    from codegraph_ad.registry import METHODS

    names = [n for n in METHODS.names() if getattr(METHODS.get(n), "input", "features") == "features"]
    return ("musc", *[n for n in names if n != "musc"])

__all__ = ["METHOD_ORDER", "BenchmarkConfig", "ConsistencyConfig", "method_order"]


@dataclass(frozen=True)
class BenchmarkConfig:
    """One dataset, some of its categories, one or more methods."""

    dataset: str
    root: Path
    categories: tuple[str, ...] | None = None  # None: every category found under root
    methods: tuple[str, ...] = METHOD_ORDER
    eval_size: int = 256  # pixel metrics resolution (the project's protocol)
    save_runs: bool = False  # keep each category's full run folder (maps, overlays, scores)
    overlays: bool = True  # with save_runs: also write overlay PNGs
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
