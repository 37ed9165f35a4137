"""What a benchmark run covers; the scoring itself is configured by ``RunConfig`` per method."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

METHOD_ORDER = ("musc", "codegraph")  # MuSc first: its scores define the consistent patches


@dataclass(frozen=True)
class ConsistencyConfig:
    """Consistent-anomaly analysis (SPEC section 12)."""

    # An anomalous patch is "consistent" when its MuSc score is below this percentile of the
    # normal patches' MuSc scores [thesis].
    musc_percentile: float = 80.0
    # A patch counts as anomalous when at least this share of its pixels is in the mask (the
    # thesis does not say how masks meet the patch grid; half is the unbiased choice).
    anomalous_fraction: float = 0.5


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
