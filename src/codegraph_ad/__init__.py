"""codegraph-ad: zero-shot batch anomaly detection (MuSc, CoDeGraph) for images and volumes."""

from codegraph_ad._version import __version__
from codegraph_ad.api import EvaluationResult, RunResult, detect, evaluate, score_features
from codegraph_ad.config import (
    EngineConfig,
    FeatureConfig,
    GraphConfig,
    LNAMDConfig,
    MSMConfig,
    RsCINConfig,
    RunConfig,
)

__all__ = [
    "EngineConfig",
    "EvaluationResult",
    "FeatureConfig",
    "GraphConfig",
    "LNAMDConfig",
    "MSMConfig",
    "RsCINConfig",
    "RunConfig",
    "RunResult",
    "__version__",
    "detect",
    "evaluate",
    "score_features",
]
