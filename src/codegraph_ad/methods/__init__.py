"""Scoring methods: MuSc (baseline) and CoDeGraph (consistent-anomaly aware)."""

from __future__ import annotations

from codegraph_ad.config import RunConfig
from codegraph_ad.methods.base import ScoreResult
from codegraph_ad.methods.musc import MuSc


def make_method(config: RunConfig, progress: bool = True):
    """The method object a run configuration asks for."""
    if config.method == "musc":
        return MuSc(config.lnamd, config.msm, config.rscin, config.engine, progress)
    if config.method == "codegraph":
        from codegraph_ad.methods.codegraph import CoDeGraph

        return CoDeGraph(config.lnamd, config.graph, config.rscin, config.engine, progress,
                         blocks=tuple(config.features.layers))
    raise ValueError(f"method must be 'codegraph' or 'musc', got {config.method!r}")


__all__ = ["MuSc", "ScoreResult", "make_method"]
