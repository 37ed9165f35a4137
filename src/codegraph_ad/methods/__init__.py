"""Scoring methods: CoDeGraph (consistent-anomaly aware, the default) and MuSc (baseline).

Each is an estimator registered in ``codegraph_ad.registry.METHODS``; a user adds their own
with ``register_method`` (see ``methods.base.Method`` for what it must provide).
"""

from __future__ import annotations

from codegraph_ad.config import RunConfig
from codegraph_ad.errors import ConfigError
from codegraph_ad.methods.base import Method, ScoreResult, list_methods, register_method
from codegraph_ad.methods.codegraph import CoDeGraph  # registered first: the default method
from codegraph_ad.methods.musc import MuSc
from codegraph_ad.progress import Progress
from codegraph_ad.registry import METHODS


def make_method(config: RunConfig, progress: bool | Progress = True) -> Method:
    """The method ``config.method`` names, built from the configuration (a registry lookup);
    ``progress`` (a bool or the run's Progress) goes to methods that take it."""
    entry = METHODS.get(config.method)
    kind = getattr(entry, "input", "features")
    if kind != "features":
        raise ConfigError(f"method {config.method!r} takes {kind!r} input; detect, evaluate and score_features "
                          "feed batch methods their backbone features only")
    method = entry.from_config(config)
    if "progress" in method.get_params(deep=False):
        method.set_params(progress=progress)
    return method


__all__ = ["CoDeGraph", "Method", "MuSc", "ScoreResult", "list_methods", "make_method", "register_method"]
